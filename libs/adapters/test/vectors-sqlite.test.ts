import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteVecVectorStore } from '@facesearch/adapters';
import type { VectorStore } from '@facesearch/common';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { DIM, atCosine, describeVectorStoreContract } from './vectors.contract';

describeVectorStoreContract('SqliteVecVectorStore (file path)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'facesearch-vec-'));
  const file = join(dir, 'library.db');
  const opened: VectorStore[] = [];
  const open = () => {
    const store = new SqliteVecVectorStore({ database: file });
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
});

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
});
