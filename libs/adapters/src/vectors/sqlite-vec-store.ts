import { resolve } from 'node:path';
import {
  FaceSearchError,
  type VectorHit,
  type VectorPayload,
  type VectorPoint,
  type VectorQuery,
  type VectorStore,
} from '@facesearch/common';
import Database from 'better-sqlite3';
import {
  MAX_SEARCH_LIMIT,
  checkId,
  dimensionMismatch,
  faceKey,
  normalize,
  normalizedVector,
  notInitialized,
} from './points';
import { type KnnQuery, loadVecExtension, prepareKnn, runKnn, toBlob } from './sqlite-vec-knn';
import { SqliteVecReaderPool } from './sqlite-vec-readers';

export interface SqliteVecVectorStoreOptions {
  /** A database file path, or an open better-sqlite3 connection shared with other stores (not closed by us). */
  database: string | Database.Database;
  /** Default `face_vectors`. */
  table?: string;
  /**
   * Threads that run searches, each on its own read-only connection to the database file, so a long vector scan
   * does not hold the caller's thread (better-sqlite3 is synchronous). Default 1; 0 searches on the calling
   * thread. An in-memory or temporary database (no file for a second connection) always searches in-thread.
   */
  searchThreads?: number;
}

type Row = VectorPayload & { embedding: Buffer };

/**
 * Face vectors in a sqlite-vec `vec0` table: exact (brute-force) cosine KNN.
 * `app_id` and `group_id` are partition keys, so a search scans only the chunks of the groups it names (one KNN
 * per group, merged by distance); user and model are metadata columns filtered inside the KNN scan (so `k`
 * counts matching rows only). Tables of the former layout (partitioned by app only) are migrated by `init`.
 * Writes go through the store's connection; searches run on reader threads (`searchThreads`), which WAL lets
 * read while it writes, and each search sees every write that completed before it was made.
 */
export class SqliteVecVectorStore implements VectorStore {
  private readonly db: Database.Database;
  private readonly ownsDb: boolean;
  private readonly table: string;
  private dim = 0;
  private knn: Database.Statement | null = null;
  /** The database file the reader threads open; null: search in-thread. */
  private readonly readerPath: string | null;
  private readonly searchThreads: number;
  private readers: Promise<SqliteVecReaderPool> | null = null;
  private closed = false;

  constructor(options: SqliteVecVectorStoreOptions) {
    this.table = options.table ?? 'face_vectors';
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(this.table)) throw new Error(`Bad table name: ${this.table}`);
    if (typeof options.database === 'string') {
      this.db = new Database(options.database);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.ownsDb = true;
    } else {
      this.db = options.database;
      this.ownsDb = false;
    }
    loadVecExtension(this.db);
    this.searchThreads = options.searchThreads ?? 1;
    if (!Number.isInteger(this.searchThreads) || this.searchThreads < 0) {
      throw new Error(`Bad searchThreads: ${options.searchThreads}`);
    }
    // better-sqlite3's `name` is the path it was opened with; '' is a temporary database, only this connection's.
    const file = this.db.name;
    this.readerPath = this.db.memory || !file || file === ':memory:' ? null : resolve(file);
  }

  async init(dim: number): Promise<void> {
    if (!Number.isInteger(dim) || dim <= 0) throw new Error(`Bad vector dimension: ${dim}`);
    const existing = this.db
      .prepare('SELECT sql FROM sqlite_master WHERE type = ? AND name = ?')
      .get('table', this.table) as { sql: string } | undefined;
    if (existing) {
      const found = Number(/float\[(\d+)\]/i.exec(existing.sql)?.[1]);
      if (found !== dim) throw dimensionMismatch(`SQLite table ${this.table}`, found, dim);
      if (!CURRENT_LAYOUT.test(existing.sql)) this.migrateToCurrentLayout(dim);
    } else {
      this.db.exec(createTableSql(this.table, dim));
    }
    this.knn = prepareKnn(this.db, this.table);
    // The readers prepare their statement on the table, so they start once it exists (and only once).
    if (!this.readers && this.readerPath && this.searchThreads > 0 && !this.closed) {
      const starting = SqliteVecReaderPool.start({
        path: this.readerPath,
        table: this.table,
        threads: this.searchThreads,
      });
      this.readers = starting;
      try {
        await starting;
      } catch (err) {
        this.readers = null;
        throw err;
      }
    }
    this.dim = dim;
  }

  /**
   * Moves the rows of a table of a former layout (partitioned by app only, or by app+group) into the current one,
   * all in one transaction (a crash leaves the old table as it was, and the next init tries again). vec0 cannot be
   * renamed, so the rows go through a plain staging table while the vec0 table is dropped and created again.
   */
  private migrateToCurrentLayout(dim: number): void {
    const staging = `${this.table}__migrating`;
    const columns = 'face_key, app_id, group_id, user_id, model_id, embedding, face_id';
    this.db.transaction(() => {
      this.db.exec(`DROP TABLE IF EXISTS ${staging}`);
      this.db.exec(
        `CREATE TABLE ${staging} (face_key TEXT, app_id TEXT, group_id TEXT, user_id TEXT, model_id TEXT, embedding BLOB, face_id TEXT)`,
      );
      this.db.exec(`INSERT INTO ${staging} (${columns}) SELECT ${columns} FROM ${this.table}`);
      this.db.exec(`DROP TABLE ${this.table}`);
      this.db.exec(createTableSql(this.table, dim));
      // Grouped by partition so each group's chunks fill up in turn.
      this.db.exec(
        `INSERT INTO ${this.table} (${columns}) SELECT ${columns} FROM ${staging} ORDER BY app_id, group_id, model_id, rowid`,
      );
      this.db.exec(`DROP TABLE ${staging}`);
    })();
  }

  async upsert(points: VectorPoint[]): Promise<void> {
    const dim = this.requireDim();
    const rows = points.map((p) => ({
      ...p.payload,
      key: faceKey(p.payload.app_id, p.id),
      vector: normalizedVector(p, dim),
    }));
    const remove = this.db.prepare(`DELETE FROM ${this.table} WHERE face_key = ?`);
    const insert = this.db.prepare(
      `INSERT INTO ${this.table} (face_key, app_id, group_id, user_id, model_id, embedding, face_id) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    // vec0 has no INSERT OR REPLACE: delete then insert, all points in one transaction.
    this.db.transaction(() => {
      for (const r of rows) {
        remove.run(r.key);
        insert.run(r.key, r.app_id, r.group_id, r.user_id, r.model_id, toBlob(r.vector), r.face_id);
      }
    })();
  }

  async search(vector: Float32Array, query: VectorQuery): Promise<VectorHit[]> {
    const dim = this.requireDim();
    const target = normalize(vector, dim);
    if (query.group_ids.length === 0 || query.limit <= 0) return [];
    const knnQuery: KnnQuery = {
      target,
      k: Math.min(Math.floor(query.limit), MAX_SEARCH_LIMIT),
      app_id: query.app_id,
      group_ids: [...new Set(query.group_ids)],
      model_id: query.model_id,
    };
    if (this.readers) return (await this.readers).search(knnQuery);
    // After close, a store that searched on threads must not quietly go on in-thread (its connection may be shut).
    if (this.closed && this.searchThreads > 0 && this.readerPath) {
      throw new FaceSearchError('vector_store_unavailable', 'The SQLite vector store is closed.', 503, true);
    }
    return runKnn(this.knn as Database.Statement, knnQuery);
  }

  async retrieve(appId: string, faceIds: string[]): Promise<Array<VectorPayload & { vector: Float32Array }>> {
    this.requireDim();
    const get = this.db.prepare(
      `SELECT app_id, group_id, user_id, face_id, model_id, embedding FROM ${this.table} WHERE face_key = ?`,
    );
    const out: Array<VectorPayload & { vector: Float32Array }> = [];
    for (const faceId of new Set(faceIds)) {
      const row = get.get(faceKey(appId, faceId)) as Row | undefined;
      if (!row) continue;
      const { embedding, ...payload } = row;
      out.push({ ...payload, vector: fromBlob(embedding) });
    }
    return out;
  }

  async deleteFaces(appId: string, faceIds: string[]): Promise<void> {
    this.requireDim();
    const keys = faceIds.map((id) => faceKey(appId, id));
    const remove = this.db.prepare(`DELETE FROM ${this.table} WHERE face_key = ?`);
    this.db.transaction(() => {
      for (const key of keys) remove.run(key);
    })();
  }

  async deleteWhere(filter: { app_id: string; group_id: string; user_id?: string }): Promise<void> {
    this.requireDim();
    checkId('app_id', filter.app_id);
    checkId('group_id', filter.group_id);
    if (filter.user_id !== undefined) checkId('user_id', filter.user_id);
    const userClause = filter.user_id === undefined ? '' : ' AND user_id = @user_id';
    this.db
      .prepare(`DELETE FROM ${this.table} WHERE app_id = @app_id AND group_id = @group_id${userClause}`)
      .run(filter.user_id === undefined ? { app_id: filter.app_id, group_id: filter.group_id } : { ...filter });
  }

  async count(filter: { app_id?: string; group_id?: string }): Promise<number> {
    this.requireDim();
    const params: Record<string, string> = {};
    if (filter.app_id !== undefined) params.app_id = filter.app_id;
    if (filter.group_id !== undefined) params.group_id = filter.group_id;
    const clauses = Object.keys(params).map((column) => `${column} = @${column}`);
    const where = clauses.length ? ` WHERE ${clauses.join(' AND ')}` : '';
    const row = this.db.prepare(`SELECT count(*) AS n FROM ${this.table}${where}`).get(params) as { n: number };
    return row.n;
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT vec_version()').get();
  }

  async close(): Promise<void> {
    this.closed = true;
    const readers = this.readers;
    this.readers = null;
    // Readers first: the last connection to close checkpoints the WAL and removes it.
    const pool = await readers?.catch(() => null); // a start that failed has stopped its threads already
    await pool?.close();
    if (this.ownsDb && this.db.open) this.db.close();
  }

  private requireDim(): number {
    if (!this.dim) throw notInitialized('SqliteVecVectorStore');
    return this.dim;
  }
}

/** Marks the current layout: a table whose DDL lacks it has a former one (partitioned by app, or app+group). */
const CURRENT_LAYOUT = /\bmodel_id\s+TEXT\s+PARTITION\s+KEY\b/i;

/**
 * The vec0 table. app, group and model are partition keys, so a KNN visits only the chunks of the group and model it
 * asks for and filters no row: as a metadata column, a model id longer than 12 bytes (sqlite-vec keeps longer text
 * out of line) made every row of the scan fetch it, 159 -> 277 ms per search at 100k faces in one group.
 * Every partition gets its own chunks of `chunk_size` vectors, allocated whole
 * (chunk_size x dim x 4 bytes on disk): 64 instead of the default 1024 keeps a group of one face at 128 KiB for
 * 512-d vectors instead of 2 MiB. Measured (40k vectors in one group, k=20, p50): 73 ms at 64, 69 ms at 256,
 * 65 ms at 1024; 200 one-face groups beside them took 25, 100 and 400 MiB more disk.
 */
function createTableSql(table: string, dim: number): string {
  return `CREATE VIRTUAL TABLE ${table} USING vec0(
           face_key TEXT PRIMARY KEY,
           app_id TEXT PARTITION KEY,
           group_id TEXT PARTITION KEY,
           model_id TEXT PARTITION KEY,
           user_id TEXT,
           embedding float[${dim}] distance_metric=cosine,
           +face_id TEXT,
           chunk_size=64
         )`;
}

function fromBlob(b: Buffer): Float32Array {
  // Copy: the Buffer may not be 4-byte aligned inside its pool.
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return new Float32Array(copy.buffer);
}
