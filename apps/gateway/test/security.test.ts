/**
 * Security of the embedded gateway: API keys (hashed at rest, revocable, never logged), per-key rate limits,
 * signed upload URLs (expiring, scoped to one object) and tenant isolation (one app never reads, searches,
 * changes or deletes another app's data: 404, as if it did not exist).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { SqliteLibraryRepository } from '@facesearch/adapters';
import { loadConfig } from '@facesearch/common';
import { uploadKey } from '@facesearch/core';
import { createLogger } from '@facesearch/runtime';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeAnalyzer, fakeImage } from '../../../libs/core/test/fakes';
import { createGateway, type Gateway } from '../src/gateway';
import { dropIsolated, servicesSkipReason } from './distributed';
import { ADMIN_KEY, DEFAULT_KEY, embeddedPorts, startTestGateway, type TestGateway } from './helpers';

type Http = ReturnType<typeof request>;
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
const admin = { 'x-api-key': ADMIN_KEY };
const A = { authorization: `Bearer ${DEFAULT_KEY}` };

/** A gateway whose logs (the real createLogger, at trace level) are captured line by line. */
async function loggedGateway(): Promise<{ gw: Gateway; lines: string[]; dispose(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'facesearch-sec-'));
  const config = loadConfig({
    DATA_DIR: dataDir,
    ADMIN_API_KEY: ADMIN_KEY,
    DEFAULT_APP_API_KEY: DEFAULT_KEY,
    LOG_LEVEL: 'trace',
  });
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger(config, 'gateway', sink);
  const gw = await createGateway(config, { ports: await embeddedPorts(dataDir, new FakeAnalyzer()), logger });
  return {
    gw,
    lines,
    async dispose() {
      await gw.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

describe('API keys', () => {
  let logged: Awaited<ReturnType<typeof loggedGateway>>;
  let http: Http;

  beforeAll(async () => {
    logged = await loggedGateway();
    http = request(logged.gw.app.getHttpServer());
  });
  afterAll(async () => {
    await logged?.dispose();
  });

  it('are stored as sha256 hashes only, listed without them, and revocable', async () => {
    const created = await http.post('/v1/apps').set(admin).send({ app_id: 'hashed' });
    expect(created.status).toBe(201);
    const key: string = created.body.api_key.key;
    expect(key).toMatch(/^fsk_[A-Za-z0-9_-]{32}$/);
    const db = (logged.gw.ports.library as SqliteLibraryRepository).db;
    const rows = db.prepare('SELECT * FROM lib_api_keys').all() as Array<Record<string, unknown>>;
    const dump = JSON.stringify(db.prepare('SELECT * FROM lib_api_keys').all());
    for (const secret of [key, DEFAULT_KEY, ADMIN_KEY]) expect(dump).not.toContain(secret);
    const hash = createHash('sha256').update(key).digest('hex');
    expect(rows.some((r) => Object.values(r).includes(hash))).toBe(true);
    const listed = await http.get('/v1/apps/hashed/keys').set(admin);
    expect(JSON.stringify(listed.body)).not.toContain(hash);
    expect(JSON.stringify(listed.body)).not.toContain(key);
    expect(listed.body.items[0].prefix).toBe(key.slice(0, 8));

    const appKey = { 'x-api-key': key };
    expect((await http.get('/v1/groups').set(appKey)).status).toBe(200);
    const revoke = await http.delete(`/v1/apps/hashed/keys/${created.body.api_key.key_id}`).set(admin);
    expect(revoke.status).toBe(204);
    const after = await http.get('/v1/groups').set(appKey);
    expect(after.status).toBe(401);
    expect(after.body.error.code).toBe('unauthorized');
    // revoking is idempotent in effect; another app's key id is not found
    const second = await http.post('/v1/apps/hashed/keys').set(admin);
    expect((await http.delete(`/v1/apps/default/keys/${second.body.key_id}`).set(admin)).status).toBe(404);
    expect((await http.get('/v1/groups').set({ 'x-api-key': second.body.key })).status).toBe(200);
    // An app key cannot manage keys, its own app's included
    expect((await http.post('/v1/apps/hashed/keys').set({ 'x-api-key': second.body.key })).status).toBe(403);
    expect((await http.delete(`/v1/apps/hashed/keys/${second.body.key_id}`).set(A)).status).toBe(403);
  });

  it('never appear in the logs: authenticated requests, failed auth, key creation and revocation', async () => {
    const before = logged.lines.length;
    const created = await http.post('/v1/apps').set(admin).send({ app_id: 'logcheck' });
    const newKey: string = created.body.api_key.key;
    const extra = await http.post('/v1/apps/logcheck/keys').set(`authorization`, `Bearer ${ADMIN_KEY}`);
    const extraKey: string = extra.body.key;
    await http.get('/v1/apps/logcheck/keys').set(admin);
    await http.delete(`/v1/apps/logcheck/keys/${extra.body.key_id}`).set(admin);
    const wrongKey = 'fsk_this-is-a-wrong-key-of-the-right-shape';
    const secrets = [ADMIN_KEY, DEFAULT_KEY, newKey, extraKey, wrongKey];

    await http.post('/v1/groups').set(A).send({ group_id: 'logs' });
    await http
      .post('/v1/groups/logs/users/u/faces')
      .set({ 'x-api-key': newKey })
      .send({ image_base64: b64(fakeImage({ person: 'u' })) });
    await http.get('/v1/groups').set(A);
    await http.get('/v1/groups').set({ 'x-api-key': wrongKey });
    await http.get('/v1/groups').set('authorization', `Bearer ${wrongKey}`);
    await http.get('/v1/groups').set('authorization', `Basic ${Buffer.from(`u:${wrongKey}`).toString('base64')}`);
    await http.get('/v1/groups').set({ 'x-api-key': extraKey }); // revoked
    await http.get('/v1/apps').set({ 'x-api-key': newKey }); // app key on an admin route
    await http.post('/v1/detect').set(A).send({ image_base64: 'not base64!' }); // a logged 4xx
    // an internal error path: a key in a place it should never be sent
    await http.get(`/v1/groups?cursor=${encodeURIComponent(wrongKey)}`).set(A);

    const logs = logged.lines.slice(before);
    expect(logs.length).toBeGreaterThan(10); // the capture works: every request is logged at info
    expect(logs.some((l) => l.includes('[redacted]'))).toBe(true);
    for (const secret of secrets.slice(0, 4)) {
      const leaked = logs.filter((l) => l.includes(secret));
      expect(leaked, `a key appears in ${leaked.length} log lines`).toEqual([]);
    }
    // The wrong key was only sent in headers (and the deliberate cursor, which is a query value, not a key)
    const headerLeaks = logs.filter((l) => l.includes(wrongKey) && !l.includes('cursor'));
    expect(headerLeaks).toEqual([]);
    // signed upload URLs are secrets too: their token never appears
    const ticket = await http.post('/v1/uploads').set(A);
    const url = new URL(ticket.body.upload_url);
    await http
      .put(url.pathname + url.search)
      .set('content-type', 'image/jpeg')
      .send(Buffer.from(fakeImage({ person: 'x' })));
    const token = url.searchParams.get('token') as string;
    const tokenMac = token.split('.')[1];
    expect(logged.lines.filter((l) => l.includes(tokenMac))).toEqual([]);
  });
});

describe('rate limits', () => {
  it('answer 429 rate_limited with Retry-After, per key: another key of the same app is not limited', async () => {
    const gw = await startTestGateway({ RATE_LIMIT_PER_MINUTE: '3' }, new FakeAnalyzer());
    try {
      const http = request(gw.app.getHttpServer());
      const other = await http.post('/v1/apps/default/keys').set(admin);
      const statuses: number[] = [];
      let limited: request.Response | undefined;
      for (let i = 0; i < 5; i++) {
        const res = await http.get('/v1/groups').set(A);
        statuses.push(res.status);
        if (res.status === 429) limited = res;
      }
      // a window boundary may fall inside the loop: then one more 200 comes first
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(1);
      expect(limited?.body.error.code).toBe('rate_limited');
      const retryAfter = Number(limited?.headers['retry-after']);
      expect(Number.isInteger(retryAfter)).toBe(true);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect((await http.get('/v1/groups').set({ 'x-api-key': other.body.key })).status).toBe(200);
    } finally {
      await gw.dispose();
    }
  });
});

describe('signed upload URLs', () => {
  let gw: TestGateway;
  let http: Http;
  beforeAll(async () => {
    gw = await startTestGateway({}, new FakeAnalyzer());
    http = request(gw.app.getHttpServer());
  });
  afterAll(async () => {
    await gw?.dispose();
  });

  const image = () => Buffer.from(fakeImage({ person: 'up' }));
  const put = (path: string) => http.put(path).set('content-type', 'image/jpeg').send(image());

  it('expire', async () => {
    const ticket = await http.post('/v1/uploads').set(A);
    const key = ticket.body.object_key as string;
    const uploadId = key.split('/')[2];
    // A URL for the same object with a 1-second expiry.
    const token = gw.services.uploads.sign(key, new Date(Date.now() + 1000));
    await new Promise((r) => setTimeout(r, 2100));
    const expired = await put(`/v1/uploads/default/${uploadId}?token=${encodeURIComponent(token)}`);
    expect(expired.status).toBe(403);
    expect(expired.body.error.code).toBe('upload_token_invalid');
    const past = gw.services.uploads.sign(key, new Date(Date.now() - 1));
    expect((await put(`/v1/uploads/default/${uploadId}?token=${encodeURIComponent(past)}`)).status).toBe(403);
    // The expiry is part of the signature: moving it forward breaks the token.
    const [, mac] = token.split('.');
    const extended = `${Math.floor(Date.now() / 1000) + 3600}.${mac}`;
    expect((await put(`/v1/uploads/default/${uploadId}?token=${extended}`)).status).toBe(403);
    expect(await gw.ports.blobs.exists(key)).toBe(false);
  }, 20_000);

  it('are scoped to one object: a token reused for another upload id or app is refused', async () => {
    const one = await http.post('/v1/uploads').set(A);
    const two = await http.post('/v1/uploads').set(A);
    const created = await http.post('/v1/apps').set(admin).send({ app_id: 'tenantb' });
    const b = { 'x-api-key': created.body.api_key.key as string };
    const oneUrl = new URL(one.body.upload_url);
    const token = oneUrl.searchParams.get('token') as string;
    const twoId = (two.body.object_key as string).split('/')[2];
    const oneId = (one.body.object_key as string).split('/')[2];
    for (const path of [
      `/v1/uploads/default/${twoId}?token=${encodeURIComponent(token)}`,
      `/v1/uploads/tenantb/${oneId}?token=${encodeURIComponent(token)}`,
      `/v1/uploads/default/${oneId}`,
      `/v1/uploads/default/${oneId}?token=`,
      `/v1/uploads/default/${oneId}?token=${encodeURIComponent(token)}&token=${encodeURIComponent(token)}`,
    ]) {
      const res = await put(path);
      expect(res.status, path).toBeGreaterThanOrEqual(400);
      expect(res.status, path).toBeLessThan(500);
    }
    expect(await gw.ports.blobs.exists(two.body.object_key)).toBe(false);
    expect(await gw.ports.blobs.exists(uploadKey('tenantb', oneId))).toBe(false);
    // the right URL works once the others failed, and only app A can import the object
    expect((await put(oneUrl.pathname + oneUrl.search)).status).toBe(204);
    const stolen = await http
      .post('/v1/imports')
      .set(b)
      .send({ group_id: 'g', items: [{ user_id: 'u', object_key: one.body.object_key }] });
    expect(stolen.status).toBe(400);
    expect(stolen.body.error.code).toBe('upload_not_found');
  });
});

/**
 * Every route that takes an id, called by app B on app A's data: 404 (never 403: B must not learn that the id
 * exists), and A's data is unchanged afterwards. Exported to run against the distributed adapters too.
 */
export async function tenantIsolationMatrix(http: Http, keyA: Record<string, string>, keyB: Record<string, string>) {
  const img = (person: string, variant = 0) => b64(fakeImage({ person, variant }));
  // ---- A's data
  await http.post('/v1/groups').set(keyA).send({ group_id: 'secret' }).expect(201);
  await http.post('/v1/groups').set(keyA).send({ group_id: 'secret2' }).expect(201);
  const face = await http
    .post('/v1/groups/secret/users/alice/faces')
    .set(keyA)
    .send({ image_base64: img('alice'), user_info: 'Alice of A' });
  expect(face.status).toBe(201);
  const faceId: string = face.body.face_id;
  const ticket = await http.post('/v1/uploads').set(keyA);
  const imp = await http
    .post('/v1/imports')
    .set(keyA)
    .send({ group_id: 'secret', items: [{ user_id: 'bob', image_base64: img('bob') }] });
  expect(imp.status).toBe(202);
  const importId: string = imp.body.import_id;
  for (let i = 0; i < 200; i++) {
    const s = await http.get(`/v1/imports/${importId}`).set(keyA);
    if (!['queued', 'running'].includes(s.body.status)) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  const snapshot = async () => {
    const groups = await http.get('/v1/groups').set(keyA);
    const users = await http.get('/v1/groups/secret/users').set(keyA);
    const alice = await http.get('/v1/groups/secret/users/alice').set(keyA);
    const imageBytes = await http.get(`/v1/groups/secret/users/alice/faces/${faceId}/image`).set(keyA);
    const importView = await http.get(`/v1/imports/${importId}`).set(keyA);
    const search = await http
      .post('/v1/search')
      .set(keyA)
      .send({ image_base64: img('alice', 3), group_ids: ['secret'] });
    return JSON.stringify({
      groups: groups.body.items.map((g: { group_id: string }) => g.group_id),
      users: users.body,
      alice: alice.body,
      image: createHash('sha256').update(imageBytes.body).digest('hex'),
      importView: importView.body,
      matches: search.body.results?.[0]?.matches,
    });
  };
  const before = await snapshot();
  expect(JSON.parse(before).matches[0]).toMatchObject({ user_id: 'alice' });

  // ---- B's attempts on A's ids
  const notFound: Array<[string, string, object | undefined]> = [
    ['get', '/v1/groups/secret', undefined],
    ['get', '/v1/groups/secret/users', undefined],
    ['get', '/v1/groups/secret/users/alice', undefined],
    ['patch', '/v1/groups/secret/users/alice', { user_info: 'pwned' }],
    ['get', '/v1/groups/secret/users/alice/faces', undefined],
    ['get', `/v1/groups/secret/users/alice/faces/${faceId}/image`, undefined],
    ['get', `/v1/groups/secret/users/alice/faces/${faceId}/image?crop=1`, undefined],
    ['delete', `/v1/groups/secret/users/alice/faces/${faceId}`, undefined],
    ['post', '/v1/groups/secret/users/alice/copy', { to_group_id: 'secret2' }],
    ['delete', '/v1/groups/secret/users/alice', undefined],
    ['delete', '/v1/groups/secret', undefined],
    ['post', '/v1/search', { image_base64: img('alice'), group_ids: ['secret'] }],
    ['post', '/v1/search', { image_base64: img('alice'), group_ids: ['secret', 'secret2'] }],
    ['post', '/v1/compare', { image_a_base64: img('alice'), face_id_b: faceId }],
    ['get', `/v1/imports/${importId}`, undefined],
    ['get', `/v1/imports/${importId}/items`, undefined],
    ['get', `/v1/imports/${importId}/items?status=succeeded`, undefined],
    ['delete', `/v1/imports/${importId}`, undefined],
  ];
  for (const [method, path, body] of notFound) {
    const req = (http as unknown as Record<string, (p: string) => request.Test>)[method](path).set(keyB);
    const res = body ? await req.send(body) : await req;
    expect(res.status, `B ${method} ${path}: ${JSON.stringify(res.body)}`).toBe(404);
    expect(res.body.error.code, `${method} ${path}`).toMatch(/_not_found$/);
  }
  // B's listings show none of A's data
  expect((await http.get('/v1/groups').set(keyB)).body.items).toEqual([]);
  // B's own group of the same name is B's, separate from A's
  await http.post('/v1/groups').set(keyB).send({ group_id: 'mine' }).expect(201);
  const bSearch = await http
    .post('/v1/search')
    .set(keyB)
    .send({ image_base64: img('alice'), group_ids: ['mine'] });
  expect(bSearch.status).toBe(200);
  expect(bSearch.body.results[0].matches).toEqual([]);
  await http
    .post('/v1/groups/mine/users/mallory/faces')
    .set(keyB)
    .send({ image_base64: img('mallory') })
    .expect(201);
  const copyInto = await http.post('/v1/groups/mine/users/mallory/copy').set(keyB).send({ to_group_id: 'secret' });
  expect(copyInto.status).toBe(404);
  // imports and uploads: A's object keys and blob keys are not B's
  for (const objectKey of [
    ticket.body.object_key,
    `faces/default/secret/alice/${faceId}`,
    `imports/default/${importId}/0`,
    `uploads/default/${(ticket.body.object_key as string).split('/')[2]}`,
  ]) {
    const res = await http
      .post('/v1/imports')
      .set(keyB)
      .send({ group_id: 'mine', items: [{ user_id: 'x', object_key: objectKey }] });
    expect(res.status, objectKey).toBe(400);
    expect(res.body.error.code).toBe('upload_not_found');
  }
  // B creates a group named like A's and enrols into it: that is B's own, and A's is untouched
  await http
    .post('/v1/groups/secret/users/alice/faces')
    .set(keyB)
    .send({ image_base64: img('mallory'), user_info: 'not alice' })
    .expect(201);
  const bView = await http.get('/v1/groups/secret/users/alice').set(keyB);
  expect(bView.body.user_info).toBe('not alice');
  expect(bView.body.faces.map((f: { face_id: string }) => f.face_id)).not.toContain(faceId);
  // with its own group 'secret' B still cannot reach A's face by id
  expect((await http.get(`/v1/groups/secret/users/alice/faces/${faceId}/image`).set(keyB)).status).toBe(404);
  expect((await http.delete(`/v1/groups/secret/users/alice/faces/${faceId}`).set(keyB)).status).toBe(404);
  const bFound = await http
    .post('/v1/search')
    .set(keyB)
    .send({ image_base64: img('alice', 2), group_ids: ['secret'] });
  expect(bFound.status).toBe(200);
  for (const m of bFound.body.results[0].matches) expect(m.face_id).not.toBe(faceId);
  // B deletes its own 'secret' group: A's stays
  await http.delete('/v1/groups/secret').set(keyB).expect(200);

  // ---- A's data is unchanged
  expect(await snapshot()).toBe(before);
}

describe('tenant isolation (embedded)', () => {
  it('app B cannot read, search, change or delete app A data through any route', async () => {
    const gw = await startTestGateway({}, new FakeAnalyzer());
    try {
      const http = request(gw.app.getHttpServer());
      const created = await http.post('/v1/apps').set(admin).send({ app_id: 'tenantb' });
      await tenantIsolationMatrix(http, A, { 'x-api-key': created.body.api_key.key });
    } finally {
      await gw.dispose();
    }
  });
});

// ---- distributed: Redis library, Qdrant vectors, S3 blobs (real servers), fake analyzer -----------------------

const distributedSkip = servicesSkipReason();
if (distributedSkip) console.warn(`[security] distributed cases skipped: ${distributedSkip}`);

describe.skipIf(distributedSkip !== null)('distributed adapters (real Redis, Qdrant, S3)', () => {
  const suffix = `sec${process.pid}`;
  let gw: Gateway;
  let http: Http;
  const env = () => ({
    FACESEARCH_MODE: 'distributed',
    ENGINE: 'local',
    REDIS_URL: process.env.REDIS_URL as string,
    QDRANT_URL: process.env.QDRANT_URL as string,
    S3_ENDPOINT: process.env.S3_ENDPOINT as string,
    S3_ACCESS_KEY: process.env.S3_ACCESS_KEY as string,
    S3_SECRET_KEY: process.env.S3_SECRET_KEY as string,
    S3_REGION: process.env.S3_REGION ?? 'us-east-1',
    REDIS_PREFIX: suffix,
    QDRANT_COLLECTION: `faces_${suffix}`,
    S3_BUCKET: `facesearch-${suffix}`,
    ADMIN_API_KEY: ADMIN_KEY,
    DEFAULT_APP_API_KEY: DEFAULT_KEY,
    LOG_LEVEL: 'silent',
  });

  beforeAll(async () => {
    const { buildPorts } = await import('@facesearch/runtime');
    const config = loadConfig(env());
    const logger = createLogger(config);
    const analyzer = new FakeAnalyzer();
    const ports = await buildPorts(config, logger, {
      need: ['library', 'vectors', 'blobs', 'queues', 'analyzer'],
      analyzer: async () => analyzer,
    });
    gw = await createGateway(config, { ports, logger, runImportWorker: true });
    http = request(gw.app.getHttpServer());
  });
  afterAll(async () => {
    await gw?.close();
    await dropIsolated(env());
  });

  it('isolates tenants through every route', async () => {
    const created = await http.post('/v1/apps').set(admin).send({ app_id: 'tenantb' });
    expect(created.status).toBe(201);
    await tenantIsolationMatrix(http, A, { 'x-api-key': created.body.api_key.key });
  });

  it('stores keys hashed in Redis', async () => {
    const created = await http.post('/v1/apps').set(admin).send({ app_id: 'hashedd' });
    const key: string = created.body.api_key.key;
    const { createRequire } = await import('node:module');
    const { Redis } = createRequire(join(__dirname, '../../../libs/adapters/package.json'))(
      'ioredis',
    ) as typeof import('ioredis');
    const redis = new Redis(env().REDIS_URL);
    try {
      const keys = await redis.keys(`${suffix}:lib:key*`);
      const values = await Promise.all(
        keys.map(async (k) =>
          (await redis.type(k)) === 'string' ? redis.get(k) : JSON.stringify(await redis.hgetall(k)),
        ),
      );
      const dump = JSON.stringify({ keys, values });
      for (const secret of [key, DEFAULT_KEY, ADMIN_KEY]) expect(dump).not.toContain(secret);
      expect(dump).toContain(createHash('sha256').update(key).digest('hex'));
    } finally {
      redis.disconnect();
    }
  });

  it('hands out S3 presigned URLs that expire and are scoped to one object', async () => {
    const ticket = await http.post('/v1/uploads').set(A);
    expect(ticket.status).toBe(201);
    const url = new URL(ticket.body.upload_url);
    expect(url.origin).toBe(new URL(env().S3_ENDPOINT).origin); // S3's own URL, not the gateway's
    const body = new Uint8Array(fakeImage({ person: 's3' }));
    const put = (u: string) => fetch(u, { method: 'PUT', body });
    // another object key with the same signature: refused by S3
    const other = new URL(url);
    other.pathname = url.pathname.replace(/[^/]+$/, 'another-object');
    expect((await put(other.toString())).status).toBe(403);
    const otherApp = new URL(url);
    otherApp.pathname = url.pathname.replace('/uploads/default/', '/uploads/tenantb/');
    expect((await put(otherApp.toString())).status).toBe(403);
    // a 1-second URL, used after it expired
    const key = ticket.body.object_key as string;
    const short = (await gw.ports.blobs.presignPut(key, 1)) as string;
    await new Promise((r) => setTimeout(r, 2500));
    expect((await put(short)).status).toBe(403);
    expect(await gw.ports.blobs.exists(key)).toBe(false);
    // the URL that was handed out works, once, for its own key
    expect((await put(url.toString())).status).toBe(200);
    expect(await gw.ports.blobs.exists(key)).toBe(true);
  }, 30_000);
});
