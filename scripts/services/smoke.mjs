#!/usr/bin/env node
// Proves the servers from up.sh really work, with the clients the adapters use (resolved from libs/adapters):
// Redis PING + append-only on; Qdrant create collection, upsert, search; S3 make bucket, put, get, presigned
// PUT, and a wrong secret rejected. Reads the env from services.env (load it first: `. .stack/services.env`).
// Usage: node scripts/services/smoke.mjs [redis] [qdrant] [s3]   (default: all; exits non-zero on the first failure)
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'libs', 'adapters', 'package.json'));
const Redis = require('ioredis');
const { QdrantClient } = require('@qdrant/js-client-rest');
const Minio = require('minio');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: load .stack/services.env first`);
  return value;
};
const check = (ok, message) => {
  if (!ok) throw new Error(`smoke: ${message}`);
};
const timed = async (name, fn) => {
  const started = performance.now();
  await fn();
  console.log(`smoke: ${name} ok (${Math.round(performance.now() - started)} ms)`);
};
const suffix = `${Date.now()}-${process.pid}`;
const selected = process.argv.length > 2 ? process.argv.slice(2) : ['redis', 'qdrant', 's3'];
const unknown = selected.filter((name) => !['redis', 'qdrant', 's3'].includes(name));
if (unknown.length > 0) throw new Error(`smoke: unknown service ${unknown.join(', ')}`);

if (selected.includes('redis'))
  await timed('redis', async () => {
    const redis = new Redis(env('REDIS_URL'), { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      check((await redis.ping()) === 'PONG', 'redis PING');
      const [, appendonly] = await redis.config('GET', 'appendonly');
      const [, policy] = await redis.config('GET', 'maxmemory-policy');
      check(appendonly === 'yes' && policy === 'noeviction', `redis config appendonly=${appendonly} policy=${policy}`);
    } finally {
      redis.disconnect();
    }
  });

if (selected.includes('qdrant'))
  await timed('qdrant', async () => {
    const qdrant = new QdrantClient({ url: env('QDRANT_URL') });
    const collection = `smoke-${suffix}`;
    await qdrant.createCollection(collection, { vectors: { size: 4, distance: 'Cosine' } });
    try {
      await qdrant.upsert(collection, {
        wait: true,
        points: [
          { id: 1, vector: [1, 0, 0, 0], payload: { name: 'a' } },
          { id: 2, vector: [0, 1, 0, 0], payload: { name: 'b' } },
        ],
      });
      const hits = await qdrant.search(collection, { vector: [0.9, 0.1, 0, 0], limit: 1, with_payload: true });
      check(
        hits.length === 1 && hits[0].id === 1 && hits[0].payload.name === 'a',
        `qdrant search ${JSON.stringify(hits)}`,
      );
    } finally {
      await qdrant.deleteCollection(collection);
    }
  });

if (selected.includes('s3'))
  await timed('s3', async () => {
    const endpoint = new URL(env('S3_ENDPOINT'));
    const options = {
      endPoint: endpoint.hostname,
      port: Number(endpoint.port),
      useSSL: endpoint.protocol === 'https:',
      accessKey: env('S3_ACCESS_KEY'),
      secretKey: env('S3_SECRET_KEY'),
      region: env('S3_REGION'),
      pathStyle: true,
    };
    const s3 = new Minio.Client(options);
    const bucket = `smoke-${suffix}`;
    await s3.makeBucket(bucket, options.region);
    try {
      const body = Buffer.from('hello face search');
      await s3.putObject(bucket, 'a.txt', body, body.length, { 'Content-Type': 'text/plain' });
      const chunks = [];
      for await (const chunk of await s3.getObject(bucket, 'a.txt')) chunks.push(chunk);
      check(Buffer.concat(chunks).equals(body), 's3 get returned other bytes');

      const url = await s3.presignedPutObject(bucket, 'b.bin', 60);
      const put = await fetch(url, { method: 'PUT', body: new Uint8Array([1, 2, 3]) });
      check(put.ok, `s3 presigned PUT answered ${put.status}`);
      check((await s3.statObject(bucket, 'b.bin')).size === 3, 's3 presigned PUT stored other bytes');

      const intruder = new Minio.Client({ ...options, secretKey: 'wrong-secret' });
      const denied = await intruder.getObject(bucket, 'a.txt').then(
        () => null,
        (error) => error,
      );
      check(denied !== null, 's3 accepted a wrong secret');
      console.log(`smoke: s3 wrong secret rejected (${denied.code ?? denied.message})`);
    } finally {
      await s3.removeObjects(bucket, ['a.txt', 'b.bin']);
      await s3.removeBucket(bucket);
    }
  });
console.log(`smoke: ${selected.join(', ')} work`);
