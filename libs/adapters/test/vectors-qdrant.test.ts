import { randomUUID } from 'node:crypto';
import { QdrantVectorStore, qdrantPointId } from '@facesearch/adapters';
import { describe, expect, it } from 'vitest';
import { DIM, describeVectorStoreContract } from './vectors.contract';

const url = process.env.QDRANT_URL;
const skip = url ? undefined : 'QDRANT_URL is not set (start Qdrant, e.g. scripts/services/up.sh qdrant)';

/** Each test gets its own collection, dropped afterwards. */
async function dropCollection(name: string): Promise<void> {
  await fetch(`${url}/collections/${name}`, { method: 'DELETE' });
}

describeVectorStoreContract(
  'QdrantVectorStore',
  async () => {
    const collection = `contract_${randomUUID().replace(/-/g, '')}`;
    const store = new QdrantVectorStore({ url: url as string, collection, batchSize: 128 });
    await store.init(DIM);
    return {
      store,
      reopen: async () => new QdrantVectorStore({ url: url as string, collection }),
      cleanup: () => dropCollection(collection),
    };
  },
  skip,
);

describe.skipIf(!url)('QdrantVectorStore specifics', () => {
  it('creates the collection with cosine distance and payload indexes (app_id as tenant)', async () => {
    const collection = `contract_${randomUUID().replace(/-/g, '')}`;
    try {
      await new QdrantVectorStore({ url: url as string, collection }).init(DIM);
      const info = (await (await fetch(`${url}/collections/${collection}`)).json()).result;
      expect(info.config.params.vectors).toMatchObject({ size: DIM, distance: 'Cosine' });
      expect(info.payload_schema.app_id).toMatchObject({ data_type: 'keyword', params: { is_tenant: true } });
      for (const field of ['group_id', 'user_id', 'model_id'])
        expect(info.payload_schema[field]?.data_type).toBe('keyword');
    } finally {
      await dropCollection(collection);
    }
  });

  it('reports an unreachable server as a retryable 503', async () => {
    const store = new QdrantVectorStore({ url: 'http://127.0.0.1:9', collection: 'x', timeoutMs: 2000 });
    await expect(store.ping()).rejects.toMatchObject({
      code: 'vector_store_unavailable',
      status: 503,
      retryable: true,
    });
    await expect(store.init(DIM)).rejects.toMatchObject({ code: 'vector_store_unavailable' });
  });
});

describe('qdrantPointId', () => {
  it('is a deterministic UUID v5 per (app, face)', () => {
    const id = qdrantPointId('app1', 'face-1');
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(qdrantPointId('app1', 'face-1')).toBe(id);
    expect(qdrantPointId('app2', 'face-1')).not.toBe(id);
    expect(qdrantPointId('app1', 'face-2')).not.toBe(id);
  });
});
