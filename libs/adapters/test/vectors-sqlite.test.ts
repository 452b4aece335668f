import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { SqliteVecVectorStore } from '@facesearch/adapters';
import type { VectorStore } from '@facesearch/common';
import Database from 'better-sqlite3';
import * as sqliteVec from 'sqlite-vec';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DIM, atCosine, describeVectorStoreContract, randomVector, seededRandom } from './vectors.contract';

/** A store on a temp database file; `searchThreads` 0 searches in-thread, more on reader threads. */
function fileStoreFixture(searchThreads: number) {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'facesearch-vec-'));
    const file = join(dir, 'library.db');
    const opened: VectorStore[] = [];
    const open = () => {
      const store = new SqliteVecVectorStore({ database: file, searchThreads });
      opened.push(store);
      return store;
    };
    const store = open();
    await store.init(DIM);
    return {
      store,
      reopen: async () => open(),
      cleanup: async () => {
        for (const s of opened) await s.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

describeVectorStoreContract('SqliteVecVectorStore (file path, in-thread search)', fileStoreFixture(0));
describeVectorStoreContract('SqliteVecVectorStore (file path, search on a reader thread)', fileStoreFixture(1));

describeVectorStoreContract('SqliteVecVectorStore (shared connection)', async () => {
  const db = new Database(':memory:');
  const store = new SqliteVecVectorStore({ database: db, table: 'vectors_shared' });
  await store.init(DIM);
  return {
    store,
    reopen: async () => new SqliteVecVectorStore({ database: db, table: 'vectors_shared' }),
    cleanup: async () => {
      await store.close();
      db.close();
    },
  };
});

describe('SqliteVecVectorStore specifics', () => {
  it('leaves a shared connection open on close, and shares it with other tables', async () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE apps (app_id TEXT PRIMARY KEY)');
    const store = new SqliteVecVectorStore({ database: db });
    await store.init(DIM);
    const face = { app_id: 'a', group_id: 'g', user_id: 'u', face_id: 'f', model_id: 'm' };
    await store.upsert([{ id: 'f', vector: atCosine(1), payload: face }]);
    await store.close();
    expect(db.open).toBe(true);
    expect(db.prepare('SELECT count(*) AS n FROM face_vectors').get()).toEqual({ n: 1 });
    db.close();
  });

  it('needs init before use', async () => {
    const store = new SqliteVecVectorStore({ database: ':memory:' });
    await expect(store.count({})).rejects.toMatchObject({ code: 'vector_store_not_initialized' });
    await store.close();
  });

  it('partitions by app, group and model: each gets its own chunks', async () => {
    const db = new Database(':memory:');
    const store = new SqliteVecVectorStore({ database: db });
    await store.init(DIM);
    const face = (app: string, group: string, id: string, model = 'm') => ({
      id,
      vector: atCosine(1),
      payload: { app_id: app, group_id: group, user_id: 'u', face_id: id, model_id: model },
    });
    await store.upsert([
      face('a', 'g1', 'f1'),
      face('a', 'g1', 'f2'),
      face('a', 'g2', 'f3'),
      face('b', 'g1', 'f4'),
      face('a', 'g1', 'f5', 'm2'),
    ]);
    const partitions = db
      .prepare(
        'SELECT partition00 AS app, partition01 AS grp, partition02 AS model FROM face_vectors_chunks ORDER BY 1, 2, 3',
      )
      .all();
    expect(partitions).toEqual([
      { app: 'a', grp: 'g1', model: 'm' },
      { app: 'a', grp: 'g1', model: 'm2' },
      { app: 'a', grp: 'g2', model: 'm' },
      { app: 'b', grp: 'g1', model: 'm' },
    ]);
    await store.close();
    db.close();
  });
});

/** The DDL of the former layout (partitioned by app only), as shipped before the app+group partitions. */
const OLD_LAYOUT = (table: string, dim: number) => `CREATE VIRTUAL TABLE ${table} USING vec0(
           face_key TEXT PRIMARY KEY,
           app_id TEXT PARTITION KEY,
           group_id TEXT,
           user_id TEXT,
           model_id TEXT,
           embedding float[${dim}] distance_metric=cosine,
           +face_id TEXT
         )`;

/** The DDL of the second layout (app+group partitions, model a metadata column). */
const GROUP_LAYOUT = (table: string, dim: number) => `CREATE VIRTUAL TABLE ${table} USING vec0(
           face_key TEXT PRIMARY KEY,
           app_id TEXT PARTITION KEY,
           group_id TEXT PARTITION KEY,
           user_id TEXT,
           model_id TEXT,
           embedding float[${dim}] distance_metric=cosine,
           +face_id TEXT,
           chunk_size=64
         )`;

describe.each([
  ['app-only', OLD_LAYOUT],
  ['app+group', GROUP_LAYOUT],
])('SqliteVecVectorStore migration from the %s layout', (_name, formerLayout) => {
  const rand = seededRandom(99);
  const rows = Array.from({ length: 300 }, (_, i) => ({
    app: i % 5 === 0 ? 'app2' : 'app1',
    group: `g${i % 3}`,
    user: `u${i % 17}`,
    face: `f${i}`,
    model: i % 7 === 0 ? 'm2' : 'm1',
    vector: (() => {
      const v = randomVector(rand);
      const n = Math.hypot(...v);
      return v.map((x) => x / n);
    })(),
  }));

  /** An old-layout database file written the way the former adapter did (raw rows, unit vectors). */
  function writeOldDatabase(file: string): void {
    const db = new Database(file);
    sqliteVec.load(db);
    db.exec(formerLayout('face_vectors', DIM));
    const insert = db.prepare(
      'INSERT INTO face_vectors (face_key, app_id, group_id, user_id, model_id, embedding, face_id) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    db.transaction(() => {
      for (const r of rows) {
        const blob = Buffer.from(r.vector.buffer, r.vector.byteOffset, r.vector.byteLength);
        insert.run(`${r.app}/${r.face}`, r.app, r.group, r.user, r.model, blob, r.face);
      }
    })();
    db.close();
  }

  function tableSql(file: string): string[] {
    const db = new Database(file, { readonly: true });
    try {
      return (
        db
          .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name LIKE 'face_vectors%'")
          .all() as Array<{
          name: string;
          sql: string;
        }>
      )
        .filter((t) => t.name === 'face_vectors' || t.name.includes('migrating'))
        .map((t) => t.sql);
    } finally {
      db.close();
    }
  }

  it('moves every row into the current layout on init, once, and finds them as before', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'facesearch-vec-migrate-'));
    const file = join(dir, 'facesearch.db');
    try {
      writeOldDatabase(file);
      const store = new SqliteVecVectorStore({ database: file });
      await store.init(DIM);
      const [sql, ...leftovers] = tableSql(file);
      expect(sql).toMatch(/group_id TEXT PARTITION KEY/);
      expect(sql).toMatch(/model_id TEXT PARTITION KEY/);
      expect(leftovers).toEqual([]);

      expect(await store.count({})).toBe(rows.length);
      expect(await store.count({ app_id: 'app1' })).toBe(rows.filter((r) => r.app === 'app1').length);
      expect(await store.count({ app_id: 'app1', group_id: 'g2' })).toBe(
        rows.filter((r) => r.app === 'app1' && r.group === 'g2').length,
      );

      const [got] = await store.retrieve('app2', ['f10']);
      expect(got).toMatchObject({ app_id: 'app2', group_id: 'g1', user_id: 'u10', face_id: 'f10', model_id: 'm1' });
      for (const [i, x] of rows[10].vector.entries()) expect(got.vector[i]).toBeCloseTo(x, 6);

      // Exact top-5 in app1, groups g0+g2, model m1, against a brute-force answer over the original rows.
      const probe = randomVector(rand);
      const pn = Math.hypot(...probe);
      const truth = rows
        .filter((r) => r.app === 'app1' && r.group !== 'g1' && r.model === 'm1')
        .map((r) => ({ face: r.face, sim: r.vector.reduce((s, x, i) => s + (x * probe[i]) / pn, 0) }))
        .sort((a, b) => b.sim - a.sim)
        .slice(0, 5);
      const hits = await store.search(probe, { app_id: 'app1', group_ids: ['g0', 'g2'], model_id: 'm1', limit: 5 });
      expect(hits.map((h) => h.face_id)).toEqual(truth.map((t) => t.face));
      for (const [i, h] of hits.entries()) expect(h.similarity).toBeCloseTo(truth[i].sim, 4);

      // Still writable and deletable in the new layout.
      await store.deleteWhere({ app_id: 'app1', group_id: 'g0' });
      await store.deleteFaces('app2', ['f10']);
      const remaining = rows.filter((r) => !(r.app === 'app1' && r.group === 'g0') && r.face !== 'f10').length;
      expect(await store.count({})).toBe(remaining);
      await store.close();

      // A second open finds the new layout and leaves it alone.
      const again = new SqliteVecVectorStore({ database: file });
      await again.init(DIM);
      expect(tableSql(file)).toEqual([sql]);
      expect(await again.count({})).toBe(remaining);
      expect((await again.search(probe, { app_id: 'app1', group_ids: ['g2'], model_id: 'm1', limit: 5 })).length).toBe(
        5,
      );
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses another dimension without touching the old table', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'facesearch-vec-migrate-'));
    const file = join(dir, 'facesearch.db');
    try {
      writeOldDatabase(file);
      const store = new SqliteVecVectorStore({ database: file });
      await expect(store.init(DIM * 2)).rejects.toMatchObject({ code: 'vector_dimension_mismatch' });
      await store.close();
      expect(tableSql(file)).toEqual([formerLayout('face_vectors', DIM)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('migrates a table on a shared connection, beside other tables', async () => {
    const db = new Database(':memory:');
    sqliteVec.load(db);
    db.exec('CREATE TABLE apps (app_id TEXT PRIMARY KEY)');
    db.exec(formerLayout('vectors_shared', DIM));
    db.prepare(
      'INSERT INTO vectors_shared (face_key, app_id, group_id, user_id, model_id, embedding, face_id) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ).run('a/f', 'a', 'g', 'u', 'm', Buffer.from(atCosine(1).buffer), 'f');
    const store = new SqliteVecVectorStore({ database: db, table: 'vectors_shared' });
    await store.init(DIM);
    const hits = await store.search(atCosine(1), { app_id: 'a', group_ids: ['g'], model_id: 'm', limit: 10 });
    expect(hits.map((h) => h.face_id)).toEqual(['f']);
    await store.close();
    expect(db.prepare('SELECT count(*) AS n FROM apps').get()).toEqual({ n: 0 });
    db.close();
  });
});

/** The worker threads of a store's reader pool (test-only peek at private state, to kill one). */
async function readerWorkers(store: SqliteVecVectorStore): Promise<Worker[]> {
  const readers = (store as unknown as { readers: Promise<unknown> | null }).readers;
  if (!readers) return [];
  const pool = (await readers) as { threads: Set<{ worker: Worker }> };
  return [...pool.threads].map((t) => t.worker);
}

describe('SqliteVecVectorStore reader threads', () => {
  let dir: string;
  let file: string;
  const face = (id: string, vector: Float32Array, group = 'g') => ({
    id,
    vector,
    payload: { app_id: 'a', group_id: group, user_id: `u-${id}`, face_id: id, model_id: 'm' },
  });
  const query = (limit = 10) => ({ app_id: 'a', group_ids: ['g'], model_id: 'm', limit });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'facesearch-vec-readers-'));
    file = join(dir, 'facesearch.db');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('sees every write in the next search (WAL: the readers see what the main connection committed)', async () => {
    const store = new SqliteVecVectorStore({ database: file, searchThreads: 1 });
    await store.init(DIM);
    expect(await readerWorkers(store)).toHaveLength(1);
    const rand = seededRandom(7);
    for (let i = 0; i < 20; i++) {
      const v = randomVector(rand);
      await store.upsert([face(`f${i}`, v)]);
      const [best] = await store.search(v, query(1));
      expect(best).toMatchObject({ face_id: `f${i}`, user_id: `u-f${i}` });
      expect(best.similarity).toBeCloseTo(1, 5);
      expect(await store.search(v, query(100))).toHaveLength(i + 1);
    }
    await store.deleteFaces('a', ['f3']);
    expect((await store.search(atCosine(1), query(100))).map((h) => h.face_id)).not.toContain('f3');
    await store.deleteWhere({ app_id: 'a', group_id: 'g' });
    expect(await store.search(atCosine(1), query(100))).toEqual([]);
    await store.close();
  });

  it('a killed thread fails only its own searches (503, retryable) and is replaced', async () => {
    const store = new SqliteVecVectorStore({ database: file, searchThreads: 2 });
    await store.init(DIM);
    const rand = seededRandom(11);
    const points = Array.from({ length: 5000 }, (_, i) => face(`f${i}`, randomVector(rand)));
    for (let i = 0; i < points.length; i += 1000) await store.upsert(points.slice(i, i + 1000));
    const [first, second] = await readerWorkers(store);
    expect(second).toBeDefined();
    const probe = randomVector(rand);
    const expected = await store.search(probe, query());

    // Searches go to the least busy thread, the first on a tie: 1 -> first, 2 -> second, 3 -> first, 4 -> second.
    const calls = Array.from({ length: 4 }, () => store.search(probe, query()));
    void first.terminate();
    const settled = await Promise.allSettled(calls);
    for (const i of [0, 2]) {
      expect(settled[i].status).toBe('rejected');
      expect((settled[i] as PromiseRejectedResult).reason).toMatchObject({
        code: 'vector_store_unavailable',
        status: 503,
        retryable: true,
      });
    }
    for (const i of [1, 3]) expect(settled[i]).toEqual({ status: 'fulfilled', value: expected });

    // The replacement starts at once; the next searches work, on both threads.
    const again = await Promise.all(Array.from({ length: 4 }, () => store.search(probe, query())));
    for (const hits of again) expect(hits).toEqual(expected);
    const workers = await readerWorkers(store);
    expect(workers).toHaveLength(2);
    expect(workers).not.toContain(first);
    await store.close();
    expect(await readerWorkers(store)).toEqual([]);
  });

  it('uses the file of a shared connection, and searches in-thread on an in-memory one', async () => {
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    const shared = new SqliteVecVectorStore({ database: db, searchThreads: 1 });
    await shared.init(DIM);
    expect(await readerWorkers(shared)).toHaveLength(1);
    await shared.upsert([face('f', atCosine(1))]);
    expect((await shared.search(atCosine(1), query()))[0].face_id).toBe('f');
    await shared.close();
    expect(db.open).toBe(true);
    db.close();

    const memory = new SqliteVecVectorStore({ database: ':memory:', searchThreads: 1 });
    await memory.init(DIM);
    expect(await readerWorkers(memory)).toEqual([]);
    await memory.upsert([face('f', atCosine(1))]);
    expect((await memory.search(atCosine(1), query()))[0].face_id).toBe('f');
    await memory.close();
  });

  it('fails a search still running when the store closes, with vector_store_unavailable', async () => {
    const store = new SqliteVecVectorStore({ database: file, searchThreads: 1 });
    await store.init(DIM);
    await store.upsert([face('f', atCosine(1))]);
    const pending = expect(store.search(atCosine(1), query())).rejects.toMatchObject({
      code: 'vector_store_unavailable',
    });
    await store.close();
    await pending;
    await expect(store.search(atCosine(1), query())).rejects.toMatchObject({ code: 'vector_store_unavailable' });
  });
});
