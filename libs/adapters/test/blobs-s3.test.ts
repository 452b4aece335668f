import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type RequestListener,
  type Server,
} from 'node:http';
import { createServer as createHttpsServer, globalAgent as httpsAgent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3BlobStore, type S3BlobStoreOptions } from '@facesearch/adapters';
import { Client } from 'minio';
import { describe, expect, it } from 'vitest';
import { describeBlobStoreContract } from './blobs.contract';
import { startSilentServer } from './silent-server';

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

/** minio's own client on the test server, to look behind the adapter. */
function rawClient(): Client {
  const url = new URL(env.S3_ENDPOINT as string);
  return new Client({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: false,
    accessKey: env.S3_ACCESS_KEY,
    secretKey: env.S3_SECRET_KEY,
    region: env.S3_REGION,
    pathStyle: true,
  });
}

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
    const raw = rawClient();
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

  it('keeps the content type it was given', async () => {
    const store = new S3BlobStore(options());
    await store.init();
    const key = `type-${randomBytes(4).toString('hex')}/face.png`;
    await store.put(key, Buffer.from('png bytes'), 'image/png');
    const raw = rawClient();
    expect((await raw.statObject(env.S3_BUCKET as string, key)).metaData['content-type']).toBe('image/png');
    await store.delete(key);
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
    const { port, close } = await startSilentServer(); // a wedged S3 server
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
      await close();
    }
  });
});

/** What a PUT sent: its headers and body. */
interface SeenPut {
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Answers every request 200 and records PUTs (a stand-in S3 that checks nothing: the request's shape is the test). */
function recordingS3(seen: SeenPut[]): RequestListener {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.method === 'PUT') seen.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200, { ETag: '"etag"' }).end();
    });
  };
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

describe('S3BlobStore put: one signed request with one hash of the bytes', () => {
  // The bytes of a view into a larger buffer: only the viewed ones must be sent and hashed.
  const framed = Buffer.concat([Buffer.from('HEAD'), randomBytes(70_000), Buffer.from('TAIL')]);
  const data = framed.subarray(4, framed.length - 4);
  const sha256 = createHash('sha256').update(data).digest('hex');
  const md5 = createHash('md5').update(data).digest('base64');
  /** Puts `data` through a store on `endpoint`; the one request it sent must carry exactly those bytes. */
  const putOnce = async (endpoint: string, seen: SeenPut[]): Promise<IncomingHttpHeaders> => {
    const store = new S3BlobStore({ endpoint, accessKey: 'key', secretKey: 'secret-secret', bucket: 'b-1' });
    await store.put('a/b.jpg', data, 'image/jpeg');
    expect(seen).toHaveLength(1);
    expect(Buffer.compare(seen[0].body, data)).toBe(0);
    return seen[0].headers;
  };

  it('over HTTP signs the payload SHA-256 (SigV4) and sends no Content-MD5', async () => {
    const seen: SeenPut[] = [];
    const server = createHttpServer(recordingS3(seen));
    const port = await listen(server);
    try {
      const headers = await putOnce(`http://127.0.0.1:${port}`, seen);
      expect(headers['x-amz-content-sha256']).toBe(sha256);
      expect(headers.authorization).toMatch(/^AWS4-HMAC-SHA256 .*SignedHeaders=.*x-amz-content-sha256/);
      expect(headers['content-md5']).toBeUndefined();
      expect(headers['content-type']).toBe('image/jpeg');
      expect(headers['content-length']).toBe(String(data.length));
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  const openssl = (() => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  it.skipIf(!openssl)('over HTTPS signs UNSIGNED-PAYLOAD and sends Content-MD5 (skipped without openssl)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 's3-tls-'));
    const previousCa = httpsAgent.options.ca;
    const seen: SeenPut[] = [];
    let server: Server | undefined;
    try {
      // A throwaway self-signed certificate for 127.0.0.1.
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
        ],
        { stdio: 'ignore' },
      );
      server = createHttpsServer(
        { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
        recordingS3(seen),
      );
      const port = await listen(server);
      // minio's HTTPS requests go through Node's global agent: it trusts this certificate until the test ends.
      httpsAgent.options.ca = readFileSync(join(dir, 'cert.pem'));
      const headers = await putOnce(`https://127.0.0.1:${port}`, seen);
      expect(headers['x-amz-content-sha256']).toBe('UNSIGNED-PAYLOAD');
      expect(headers['content-md5']).toBe(md5);
    } finally {
      httpsAgent.options.ca = previousCa;
      if (server) await new Promise((resolve) => server?.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
