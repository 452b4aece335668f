import { randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { S3BlobStore, type S3BlobStoreOptions } from '@facesearch/adapters';
import { Client } from 'minio';
import { describe, expect, it } from 'vitest';
import { describeBlobStoreContract } from './blobs.contract';

const env = process.env;
const configured = Boolean(env.S3_ENDPOINT && env.S3_ACCESS_KEY && env.S3_SECRET_KEY && env.S3_BUCKET);
const skip = configured
  ? undefined
  : 'S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY and S3_BUCKET are not set (start S3, e.g. scripts/services/up.sh s3)';

const options = (over: Partial<S3BlobStoreOptions> = {}): S3BlobStoreOptions => ({
  endpoint: env.S3_ENDPOINT as string,
  accessKey: env.S3_ACCESS_KEY as string,
  secretKey: env.S3_SECRET_KEY as string,
  bucket: env.S3_BUCKET as string,
  region: env.S3_REGION,
  ...over,
});

describeBlobStoreContract(
  'S3BlobStore',
  async () => {
    const store = new S3BlobStore(options());
    await store.init();
    return { store, presigns: true, cleanup: () => store.close() };
  },
  skip,
);

describe.skipIf(!configured)('S3BlobStore specifics', () => {
  it('creates a missing bucket on init, and init is idempotent', async () => {
    const bucket = `contract-${randomBytes(6).toString('hex')}`;
    const store = new S3BlobStore(options({ bucket }));
    await expect(store.ping()).rejects.toMatchObject({ code: 'blob_store_unavailable', status: 503 });
    await store.init();
    await store.init();
    await store.ping();
    await store.put('a/b.jpg', Buffer.from('x'));
    await store.deletePrefix('a/');
    const url = new URL(env.S3_ENDPOINT as string);
    const raw = new Client({
      endPoint: url.hostname,
      port: Number(url.port),
      useSSL: false,
      accessKey: env.S3_ACCESS_KEY,
      secretKey: env.S3_SECRET_KEY,
      region: env.S3_REGION,
      pathStyle: true,
    });
    await raw.removeBucket(bucket);
  });

  it('deletes more than one DeleteObjects batch (1000 keys) by prefix', async () => {
    const store = new S3BlobStore(options());
    await store.init();
    const ns = `bulk-${randomBytes(4).toString('hex')}`;
    const keys = Array.from({ length: 1005 }, (_, i) => `${ns}/u${i % 7}/${i}.jpg`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((key) => store.put(key, Buffer.from('x'))));
    }
    await store.deletePrefix(`${ns}/`);
    expect(await store.exists(keys[0])).toBe(false);
    expect(await store.exists(keys[1004])).toBe(false);
  });

  it('rejects a wrong secret as a non-retryable 503', async () => {
    const store = new S3BlobStore(options({ secretKey: 'wrong-secret' }));
    await expect(store.put('x/y.jpg', Buffer.from('x'))).rejects.toMatchObject({
      code: 'blob_store_unavailable',
      status: 503,
      retryable: false,
    });
  });
});

describe('S3BlobStore against a server that never answers', () => {
  it('fails each call with 503 blob_store_unavailable after timeoutMs instead of hanging', async () => {
    // Accepts connections and reads requests, never answers (a wedged S3 server).
    const sockets: Socket[] = [];
    const server = createServer((socket) => sockets.push(socket.on('data', () => undefined)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const store = new S3BlobStore({
      endpoint: `http://127.0.0.1:${port}`,
      accessKey: 'key',
      secretKey: 'secret-secret',
      bucket: 'silent',
      timeoutMs: 300,
    });
    try {
      for (const call of [
        () => store.ping(),
        () => store.put('a/b.jpg', new Uint8Array(8)),
        () => store.get('a/b.jpg'),
      ]) {
        const started = Date.now();
        await expect(call()).rejects.toMatchObject({ code: 'blob_store_unavailable', status: 503, retryable: true });
        expect(Date.now() - started).toBeLessThan(5000);
      }
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
