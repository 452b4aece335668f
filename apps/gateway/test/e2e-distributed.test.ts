/**
 * The distributed mode end to end, on real servers: a gateway, 2 embedders, 2 detectors and an indexer, each its
 * own node process (built dist/), on real Redis, Qdrant and Ceph S3 (REDIS_URL, QDRANT_URL, S3_* from
 * scripts/services/up.sh), in a Redis prefix, Qdrant collection and S3 bucket of their own.
 * Then the outages: with Redis, Qdrant or S3 unreachable the gateway answers 503 with a clear code, never 500.
 * Skipped (with the reason) without the servers, the test photos or the models.
 */
import { randomBytes } from 'node:crypto';
import { loadConfig } from '@facesearch/common';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway } from '../src/gateway';
import {
  buildApps,
  dropIsolated,
  isolatedEnv,
  ProcessGroup,
  servicesSkipReason,
  startStack,
  SwitchableProxy,
} from './distributed';
import { engineSkipReason, photo } from './helpers';
import { describeServiceScenarios } from './scenarios';

const skipReason = servicesSkipReason() ?? engineSkipReason();
if (skipReason) console.warn(`[e2e-distributed] skipped: ${skipReason}`);

const ADMIN_KEY = 'e2e-admin-key-0000000001';
const DEFAULT_KEY = 'e2e-default-key-00000001';
const auth = { 'x-api-key': DEFAULT_KEY };
/** The sum of the samples of `name` whose labels include `labels`, in Prometheus text format. */
function metricSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const has = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => has[k] === v)) sum += Number(match[3]);
  }
  return sum;
}

const runId = () => `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

describe.skipIf(skipReason !== null)('distributed stack: gateway, 2 detectors, 2 embedders, indexer', () => {
  const group = new ProcessGroup();
  const env = isolatedEnv(runId());
  let base = '';
  let workerMetrics: Record<string, string> = {};
  let exitCodes: Record<string, number | null> | null = null;

  beforeAll(async () => {
    buildApps();
    const common = {
      ...env,
      ADMIN_API_KEY: ADMIN_KEY,
      DEFAULT_APP_API_KEY: DEFAULT_KEY,
      IMPORT_CONCURRENCY: '2',
      SHUTDOWN_TIMEOUT_MS: '15000',
      // The workers log each item and each embedder call at debug level: the test reads them to see who took work.
      LOG_LEVEL: 'debug',
    };
    const stack = await startStack(group, common, { readyTimeoutMs: 150_000 });
    type Readiness = { details: Record<string, { status: string; serving?: number }> };
    // Ready means at least one detector and one embedder serve; the others may still be loading their models.
    let ready = stack.ready as Readiness;
    const allServing = (r: Readiness) => r.details.detectors?.serving === 2 && r.details.embedders?.serving === 2;
    const deadline = Date.now() + 60_000;
    while (!allServing(ready) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      ready = (await (await fetch(`${stack.base}/health/ready`)).json()) as Readiness;
    }
    expect(ready.details).toMatchObject({
      library: { status: 'up' },
      vectors: { status: 'up' },
      blobs: { status: 'up' },
      queues: { status: 'up' },
      detectors: { status: 'up', serving: 2 },
      embedders: { status: 'up', serving: 2 },
    });
    base = stack.base;
    workerMetrics = stack.metrics;
  }, 240_000);

  afterAll(async () => {
    exitCodes = await group.stop();
    await dropIsolated(env);
  }, 60_000);

  const scenarios = describeServiceScenarios(
    'user scenarios',
    async () => ({ http: request(base), adminKey: ADMIN_KEY, defaultKey: DEFAULT_KEY }),
    { importTimeoutMs: 300_000 },
  );

  it('did the bulk import through the workers: both detectors, both embedders, the indexer in batches', () => {
    const succeeded = scenarios.bulkImport?.succeeded;
    expect(succeeded, 'the bulk import scenario completed').toBeGreaterThan(0);
    // Both detectors analysed items, both embedders embedded crops, and the indexer wrote every succeeded item,
    // at least once several in one batch.
    const analysed = ['detector-1', 'detector-2'].map((d) => group.lines(d, 'import item analysed').length);
    expect(analysed[0], 'detector-1 analysed items').toBeGreaterThan(0);
    expect(analysed[1], 'detector-2 analysed items').toBeGreaterThan(0);
    expect(analysed[0] + analysed[1]).toBeGreaterThanOrEqual(succeeded as number);
    for (const e of ['embedder-1', 'embedder-2']) expect(group.lines(e, 'embedded crops').length, e).toBeGreaterThan(0);
    const batches = group.lines('indexer-1', 'index batch written').map((l) => l.faces as number);
    expect(batches.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(succeeded as number);
    expect(Math.max(...batches)).toBeGreaterThan(1);
  });

  it('reports empty queues in the metrics once the import is done', async () => {
    expect(scenarios.bulkImport, 'the bulk import scenario completed').toBeDefined();
    const metrics = await request(base).get('/metrics');
    expect(metrics.text).toMatch(/facesearch_queue_depth\{queue="imports"\} 0/);
    expect(metrics.text).toMatch(/facesearch_queue_depth\{queue="index"\} 0/);
  });

  it("serves each worker's own metrics: the jobs it ran and the gRPC calls it answered", async () => {
    const succeeded = scenarios.bulkImport?.succeeded as number;
    expect(succeeded, 'the bulk import scenario completed').toBeGreaterThan(0);
    const text = async (name: string) => {
      const res = await fetch(workerMetrics[name]);
      expect(res.status, name).toBe(200);
      return res.text();
    };
    const detectors = await Promise.all(['detector-1', 'detector-2'].map(text));
    const embedders = await Promise.all(['embedder-1', 'embedder-2'].map(text));
    const jobsDone = (queue: string) => (body: string) =>
      metricSum(body, 'facesearch_job_attempts_total', { queue, outcome: 'succeeded' });
    const total = (values: number[]) => values.reduce((a, b) => a + b, 0);
    // Every import item went through a detector, an embedder and the indexer, each counted where it ran.
    expect(total(detectors.map(jobsDone('imports')))).toBeGreaterThanOrEqual(succeeded);
    expect(total(embedders.map(jobsDone('embed')))).toBeGreaterThanOrEqual(succeeded);
    expect(jobsDone('index')(await text('indexer-1'))).toBeGreaterThanOrEqual(succeeded);
    // The gateway's detect, compare and search calls reached the workers over gRPC.
    const callsOk = (body: string) => metricSum(body, 'facesearch_grpc_server_duration_seconds_count', { code: 'OK' });
    expect(total(detectors.map(callsOk)), 'detector calls answered OK').toBeGreaterThan(0);
    expect(total(embedders.map(callsOk)), 'embedder calls answered OK').toBeGreaterThan(0);
    expect(metricSum(detectors[0], 'process_resident_memory_bytes', { service: 'detector' })).toBeGreaterThan(0);
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
