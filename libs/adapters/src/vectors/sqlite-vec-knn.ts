/**
 * The KNN search of SqliteVecVectorStore, shared by the store's own connection (searchThreads 0) and its reader
 * threads (sqlite-vec-search-worker.ts), so the SQL and the merge exist once. Imports only types from
 * @facesearch/common, so a reader thread does not load the package index.
 */
import type { VectorHit } from '@facesearch/common';
import type Database from 'better-sqlite3';
import * as sqliteVec from 'sqlite-vec';

/** One search, as the store hands it to a connection: a unit vector and a checked, deduplicated group list. */
export interface KnnQuery {
  target: Float32Array;
  k: number;
  app_id: string;
  group_ids: string[];
  model_id: string;
}

type KnnRow = { face_key: string; user_id: string; distance: number };

/**
 * Only what the filter does not already fix: every extra vec0 column read costs per row (app_id and group_id,
 * the partition keys, cost the most), and a multi-group search reads k rows per group.
 */
export function prepareKnn(db: Database.Database, table: string): Database.Statement {
  return db.prepare(
    `SELECT face_key, user_id, distance FROM ${table}
     WHERE embedding MATCH ? AND k = ? AND app_id = ? AND group_id = ? AND model_id = ?`,
  );
}

/**
 * One KNN per group, each pruned to its partition by `group_id = ?` and sorted by distance; the merge keeps the
 * best k overall. (vec0 0.1.9 takes `=` on a partition key; under IN, SQLite would run the KNN once per value
 * anyway, k rows each, so the merge would be needed all the same.)
 */
export function runKnn(knn: Database.Statement, query: KnnQuery): VectorHit[] {
  const { k, app_id, group_ids, model_id } = query;
  const target = toBlob(query.target);
  const hits: Array<VectorHit & { distance: number }> = [];
  for (const group_id of group_ids) {
    const rows = knn.all(target, k, app_id, group_id, model_id) as KnnRow[];
    for (const { face_key, user_id, distance } of rows) {
      // face_key is `${app_id}/${face_id}` (faceKey); ids never contain '/'.
      const face_id = face_key.slice(app_id.length + 1);
      hits.push({ app_id, group_id, user_id, face_id, model_id, similarity: 1 - distance, distance });
    }
  }
  if (group_ids.length > 1) hits.sort((a, b) => a.distance - b.distance).splice(k);
  return hits.map(({ distance, ...hit }) => hit);
}

/** Loads sqlite-vec once per connection (a shared connection may already have it). */
export function loadVecExtension(db: Database.Database): void {
  try {
    db.prepare('SELECT vec_version()').get();
  } catch {
    sqliteVec.load(db);
  }
}

export function toBlob(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** What a reader thread is started with. */
export interface SearchWorkerData {
  path: string;
  table: string;
}
