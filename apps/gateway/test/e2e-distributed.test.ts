/**
 * The distributed mode end to end, on real servers: a gateway, 2 embedders, 2 detectors and an indexer, each its
 * own node process (built dist/), on real Redis, Qdrant and Ceph S3 (REDIS_URL, QDRANT_URL, S3_* from
 * scripts/services/up.sh), in a Redis prefix, Qdrant collection and S3 bucket of their own.
 * Then the outages: with Redis, Qdrant or S3 unreachable the gateway answers 503 with a clear code, never 500.
 * Skipped (with the reason) without the servers, the test photos or the models.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '@facesearch/common';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway } from '../src/gateway';
import {
  buildApps,
  dropIsolated,
  freePort,
  isolatedEnv,
  ProcessGroup,
  servicesSkipReason,
  SwitchableProxy,
  waitReady,
} from './distributed';

const TESTDATA = resolve(__dirname, '../../../../shared/testdata');
const MODELS = resolve(__dirname, '../../../models');
const haveModels = existsSync(MODELS) && readdirSync(MODELS).some((f) => f.endsWith('.onnx'));
const skipReason =
  servicesSkipReason() ??
  (!existsSync(join(TESTDATA, 'faces'))
    ? `test photos not found at ${TESTDATA}`
    : !haveModels
      ? `no .onnx models in ${MODELS} (run pnpm models)`
      : null);
if (skipReason) console.warn(`[e2e-distributed] skipped: ${skipReason}`);

const ADMIN_KEY = 'e2e-admin-key-0000000001';
const DEFAULT_KEY = 'e2e-default-key-00000001';
const auth = { 'x-api-key': DEFAULT_KEY };
const photo = (rel: string) => readFileSync(join(TESTDATA, rel));
const ENROLLED = [
  'obama',
  'kit_harington',
  'rose_leslie',
  'alex_lacamoire',
  'deepface_c01',
  'deepface_c02',
  'deepface_c10',
];
const STRANGER = 'biden';
const runId = () => `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

describe.skipIf(skipReason !== null)('distributed stack: gateway, 2 detectors, 2 embedders, indexer', () => {
  const group = new ProcessGroup();
  const env = isolatedEnv(runId());
  let http: ReturnType<typeof request>;
  let exitCodes: Record<string, number | null> | null = null;

  beforeAll(async () => {
    buildApps();
    const common = {
      ...env,
      ADMIN_API_KEY: ADMIN_KEY,
      DEFAULT_APP_API_KEY: DEFAULT_KEY,
      IMPORT_CONCURRENCY: '2',
      SHUTDOWN_TIMEOUT_MS: '15000',
      LOG_LEVEL: 'info',
    };
    const [gatewayPort, e1, e2, d1, d2] = await Promise.all([1, 2, 3, 4, 5].map(() => freePort()));
    const embedders = [e1, e2].map((p) => `127.0.0.1:${p}`).join(',');
    const detectors = [d1, d2].map((p) => `127.0.0.1:${p}`).join(',');
    // The embedders log each call at debug level: the test reads it to see that both took work.
    group.start('embedder-1', 'embedder', { ...common, GRPC_PORT: String(e1), LOG_LEVEL: 'debug' });
    group.start('embedder-2', 'embedder', { ...common, GRPC_PORT: String(e2), LOG_LEVEL: 'debug' });
    group.start('detector-1', 'detector', { ...common, GRPC_PORT: String(d1), EMBEDDER_GRPC_URL: embedders });
    group.start('detector-2', 'detector', { ...common, GRPC_PORT: String(d2), EMBEDDER_GRPC_URL: embedders });
    group.start('indexer-1', 'indexer', common);
    group.start('gateway', 'gateway', {
      ...common,
      PORT: String(gatewayPort),
      DETECTOR_GRPC_URL: detectors,
      EMBEDDER_GRPC_URL: embedders,
    });
    const base = `http://127.0.0.1:${gatewayPort}`;
    const ready = (await waitReady(`${base}/health/ready`, group, 150_000)) as {
      details: Record<string, { status: string; serving?: number }>;
    };
    expect(ready.details).toMatchObject({
      library: { status: 'up' },
      vectors: { status: 'up' },
      blobs: { status: 'up' },
      queues: { status: 'up' },
      detectors: { status: 'up', serving: 2 },
      embedders: { status: 'up', serving: 2 },
    });
    http = request(base);
  }, 240_000);

  afterAll(async () => {
    exitCodes = await group.stop();
    await dropIsolated(env);
  }, 60_000);

  it('creates a group, enrols one photo per person and finds each from another photo (rank 1)', async () => {
    expect((await http.post('/v1/groups').set(auth).send({ group_id: 'people' })).status).toBe(201);
    for (const person of ENROLLED) {
      const res = await http
        .post(`/v1/groups/people/users/${person}/faces`)
        .set(auth)
        .attach('image', photo(`faces/${person}/1.jpg`), '1.jpg');
      expect(res.status, `${person}: ${JSON.stringify(res.body)}`).toBe(201);
    }
    for (const person of ENROLLED) {
      const res = await http
        .post('/v1/search')
        .set(auth)
        .field('group_ids', 'people')
        .attach('image', photo(`faces/${person}/2.jpg`), '2.jpg');
      expect(res.status).toBe(200);
      expect(res.body.results[0].matches[0]?.user_id, `${person}: ${JSON.stringify(res.body.results[0].matches)}`).toBe(
        person,
      );
    }
  });

  it('answers an explicit no match for a person not enrolled', async () => {
    const res = await http
      .post('/v1/search')
      .set(auth)
      .field('group_ids', 'people')
      .attach('image', photo(`faces/${STRANGER}/1.jpg`), '1.jpg');
    expect(res.status).toBe(200);
    expect(res.body.results).toHaveLength(1);
    expect(res.body.results[0].matches).toEqual([]);
  });

  it('compares two photos, and a photo with an enrolled face', async () => {
    const same = await http
      .post('/v1/compare')
      .set(auth)
      .attach('image_a', photo('faces/obama/1.jpg'), 'a.jpg')
      .attach('image_b', photo('faces/obama/2.jpg'), 'b.jpg');
    expect(same.status).toBe(200);
    expect(same.body.match).toBe(true);
    const diff = await http
      .post('/v1/compare')
      .set(auth)
      .attach('image_a', photo('faces/obama/1.jpg'), 'a.jpg')
      .attach('image_b', photo(`faces/${STRANGER}/1.jpg`), 'b.jpg');
    expect(diff.body.match).toBe(false);
    const faces = await http.get('/v1/groups/people/users/kit_harington/faces').set(auth);
    const byId = await http
      .post('/v1/compare')
      .set(auth)
      .field('face_id_b', faces.body.items[0].face_id)
      .attach('image_a', photo('faces/kit_harington/2.jpg'), 'a.jpg');
    expect(byId.status, JSON.stringify(byId.body)).toBe(200);
    expect(byId.body.match).toBe(true);
  });

  it('detects both faces in the group photos', async () => {
    for (const file of readdirSync(join(TESTDATA, 'multi'))) {
      const res = await http
        .post('/v1/detect')
        .set(auth)
        .attach('image', photo(`multi/${file}`), file);
      expect(res.status).toBe(200);
      expect(res.body.face_num, file).toBe(2);
    }
  });

  it('imports every test photo through the workers, bad files failing as items with their codes', async () => {
    const items: Array<{ user_id: string; file: string }> = [];
    let req = http.post('/v1/imports').set(auth).field('group_id', 'bulk');
    for (const person of readdirSync(join(TESTDATA, 'faces'))) {
      for (const f of readdirSync(join(TESTDATA, 'faces', person))) {
        const name = `${person}__${f}`;
        items.push({ user_id: person, file: name });
        req = req.attach('files', photo(`faces/${person}/${f}`), name);
      }
    }
    const badFiles = readdirSync(join(TESTDATA, 'bad'));
    for (const f of badFiles) {
      items.push({ user_id: 'bad', file: `bad__${f}` });
      req = req.attach('files', photo(`bad/${f}`), `bad__${f}`);
    }
    const res = await req.field('items', JSON.stringify(items));
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    let status = res.body;
    const deadline = Date.now() + 300_000;
    while (['queued', 'running'].includes(status.status) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      status = (await http.get(`/v1/imports/${res.body.import_id}`).set(auth)).body;
    }
    expect(status).toMatchObject({ status: 'completed', total: items.length, progress: 1, pending: 0 });
    expect(status.succeeded + status.failed).toBe(items.length);
    expect(status.succeeded).toBeGreaterThan((items.length - badFiles.length) * 0.8);

    const all = await http.get(`/v1/imports/${res.body.import_id}/items?limit=1000`).set(auth);
    expect(all.body.items).toHaveLength(items.length);
    for (const item of all.body.items) {
      if (item.status === 'succeeded') expect(item.face_id).toBe(`${res.body.import_id}_${item.index}`);
      else expect(item.error.code, item.name).toMatch(/^[a-z_]+$/);
    }
    const failed = await http.get(`/v1/imports/${res.body.import_id}/items?status=failed&limit=1000`).set(auth);
    const failedBad = Object.fromEntries(
      failed.body.items
        .filter((i: { name: string }) => i.name.startsWith('bad__'))
        .map((i: { name: string; error: { code: string } }) => [i.name, i.error.code]),
    );
    expect(failedBad).toMatchObject({
      'bad__zero_bytes.jpg': 'image_empty',
      'bad__text_renamed.jpg': 'image_unsupported_format',
      'bad__huge_header_only_100000x100000.png': 'image_too_many_pixels',
    });
    // The imported faces are searchable in the import's group.
    const found = await http
      .post('/v1/search')
      .set(auth)
      .field('group_ids', 'bulk')
      .attach('image', photo('faces/rose_leslie/1.jpg'), '1.jpg');
    expect(found.body.results[0].matches[0]?.user_id).toBe('rose_leslie');

    // The work went through the workers: both detectors analysed items, both embedders embedded crops, and
    // the indexer wrote every succeeded item, at least once several in one batch.
    const analysed = ['detector-1', 'detector-2'].map((d) => group.lines(d, 'import item analysed').length);
    expect(analysed[0], 'detector-1 analysed items').toBeGreaterThan(0);
    expect(analysed[1], 'detector-2 analysed items').toBeGreaterThan(0);
    expect(analysed[0] + analysed[1]).toBeGreaterThanOrEqual(status.succeeded);
    for (const e of ['embedder-1', 'embedder-2']) expect(group.lines(e, 'embedded crops').length, e).toBeGreaterThan(0);
    const batches = group.lines('indexer-1', 'index batch written').map((l) => l.faces as number);
    expect(batches.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(status.succeeded);
    expect(Math.max(...batches)).toBeGreaterThan(1);

    const metrics = await http.get('/metrics');
    expect(metrics.text).toMatch(/facesearch_queue_depth\{queue="imports"\} 0/);
    expect(metrics.text).toMatch(/facesearch_queue_depth\{queue="index"\} 0/);
  }, 360_000);

  it('deletes a user and it is gone from search', async () => {
    expect((await http.delete('/v1/groups/people/users/obama').set(auth)).status).toBe(200);
    const res = await http
      .post('/v1/search')
      .set(auth)
      .field('group_ids', 'people')
      .attach('image', photo('faces/obama/2.jpg'), '2.jpg');
    expect(res.status).toBe(200);
    expect(res.body.results[0].matches.map((m: { user_id: string }) => m.user_id)).not.toContain('obama');
    expect((await http.get('/v1/groups/people/users/obama').set(auth)).status).toBe(404);
  });

  it("refuses a missing key (401) and hides another app's group (404)", async () => {
    const none = await http.get('/v1/groups');
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('unauthorized');
    const created = await http.post('/v1/apps').set('x-api-key', ADMIN_KEY).send({ app_id: 'other' });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const other = { 'x-api-key': created.body.api_key.key as string };
    const hidden = await http.get('/v1/groups/people/users').set(other);
    expect(hidden.status).toBe(404);
    expect(hidden.body.error.code).toBe('group_not_found');
    const search = await http
      .post('/v1/search')
      .set(other)
      .field('group_ids', 'people')
      .attach('image', photo('faces/kit_harington/2.jpg'), '2.jpg');
    expect(search.status).toBe(404);
  });

  it('stops every process gracefully on SIGTERM', async () => {
    exitCodes = await group.stop();
    expect(exitCodes).toEqual({
      gateway: 0,
      'indexer-1': 0,
      'detector-1': 0,
      'detector-2': 0,
      'embedder-1': 0,
      'embedder-2': 0,
    });
  }, 120_000);
});

describe.skipIf(skipReason !== null)('distributed gateway when a backing server is down', () => {
  const env = isolatedEnv(runId());
  const proxies = {
    redis: SwitchableProxy.forUrl(env.REDIS_URL),
    qdrant: SwitchableProxy.forUrl(env.QDRANT_URL),
    s3: SwitchableProxy.forUrl(env.S3_ENDPOINT),
  };
  let gateway: Gateway;
  let http: ReturnType<typeof request>;

  beforeAll(async () => {
    for (const p of Object.values(proxies)) await p.up();
    // One process, the local engine; the stores reached through the proxies.
    const config = loadConfig({
      ...env,
      REDIS_URL: proxies.redis.rewrite(env.REDIS_URL),
      QDRANT_URL: proxies.qdrant.rewrite(env.QDRANT_URL),
      S3_ENDPOINT: proxies.s3.rewrite(env.S3_ENDPOINT),
      ENGINE: 'local',
      DEFAULT_APP_API_KEY: DEFAULT_KEY,
      LOG_LEVEL: 'silent',
    });
    gateway = await createGateway(config, { logger: pino({ level: 'silent' }) });
    http = request(gateway.app.getHttpServer());
    const enrol = await http
      .post('/v1/groups/g/users/obama/faces')
      .set(auth)
      .attach('image', photo('faces/obama/1.jpg'), '1.jpg');
    expect(enrol.status).toBe(201);
  }, 120_000);

  afterAll(async () => {
    for (const p of Object.values(proxies)) await p.up();
    await gateway?.close();
    for (const p of Object.values(proxies)) await p.down();
    await dropIsolated(env);
  }, 60_000);

  const search = () =>
    http.post('/v1/search').set(auth).field('group_ids', 'g').attach('image', photo('faces/obama/2.jpg'), '2.jpg');
  const enrol = () =>
    http.post('/v1/groups/g/users/kit/faces').set(auth).attach('image', photo('faces/kit_harington/1.jpg'), '1.jpg');
  const importOne = () =>
    http
      .post('/v1/imports')
      .set(auth)
      .send({ group_id: 'g', items: [{ user_id: 'x', image_base64: photo('faces/biden/1.jpg').toString('base64') }] });

  async function whileDown(name: keyof typeof proxies, check: () => Promise<void>): Promise<void> {
    await proxies[name].down();
    try {
      await check();
      const ready = await http.get('/health/ready');
      expect(ready.status).toBe(503);
      const down = Object.entries(ready.body.details as Record<string, { status: string }>)
        .filter(([, v]) => v.status === 'down')
        .map(([k]) => k);
      expect(down.length, JSON.stringify(ready.body)).toBeGreaterThan(0);
    } finally {
      await proxies[name].up();
    }
    // Back: the same requests work again.
    const deadline = Date.now() + 20_000;
    while ((await http.get('/health/ready')).status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
    }
    expect((await http.get('/health/ready')).status).toBe(200);
  }

  const expect503 = (res: request.Response, codes: string[]) => {
    expect(res.status, JSON.stringify(res.body)).toBe(503);
    expect(codes).toContain(res.body.error.code);
  };

  it('Redis down: 503 library_unavailable / queue_unavailable', async () => {
    await whileDown('redis', async () => {
      expect503(await http.get('/v1/groups').set(auth), ['library_unavailable']);
      expect503(await search(), ['library_unavailable']);
      expect503(await importOne(), ['library_unavailable', 'queue_unavailable']);
    });
    expect((await http.get('/v1/groups').set(auth)).status).toBe(200);
  }, 90_000);

  it('Qdrant down: 503 vector_store_unavailable', async () => {
    await whileDown('qdrant', async () => {
      expect503(await search(), ['vector_store_unavailable']);
    });
    expect((await search()).body.results[0].matches[0]?.user_id).toBe('obama');
  }, 90_000);

  it('S3 down: 503 blob_store_unavailable', async () => {
    await whileDown('s3', async () => {
      expect503(await enrol(), ['blob_store_unavailable']);
      expect503(await importOne(), ['blob_store_unavailable']);
    });
    expect((await enrol()).status).toBe(201);
  }, 90_000);
});
