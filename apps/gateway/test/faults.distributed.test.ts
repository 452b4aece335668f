/**
 * Faults injected into the real distributed stack: a gateway, 2 detectors, 2 embedders and an indexer, each its own
 * node process, on a Redis of this test's own (so it can be restarted for real, with its append-only file) and the
 * shared Qdrant and S3 (a collection and bucket of this run's own).
 *   - SIGKILL of a detector, then of an embedder, in the middle of a bulk import of a few hundred items;
 *   - Redis stopped and restarted during an import;
 *   - Idempotency-Key retries of an import and of an enrolment;
 *   - SIGTERM of a detector mid-import and of the gateway with requests in flight.
 * Every check is on counts and states; durations are measured and printed (`[faults]` lines), never asserted.
 * Skipped (with the reason) without the servers, redis-server, the test photos or the models.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisLibraryRepository } from '@facesearch/adapters';
import { loadConfig } from '@facesearch/common';
import pino from 'pino';
import sharp from 'sharp';
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
  startStack,
  SwitchableProxy,
} from './distributed';
import { engineSkipReason, TESTDATA } from './helpers';

const haveRedisServer = (() => {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skipReason =
  servicesSkipReason() ??
  (!haveRedisServer ? 'redis-server is not installed (pnpm services:install)' : engineSkipReason());
if (skipReason) console.warn(`[faults] skipped: ${skipReason}`);

const DEFAULT_KEY = 'faults-default-key-00001';
const auth = { 'x-api-key': DEFAULT_KEY };
/** Copies of each test photo in the big import: 76 photos x 3 = 228 items. */
const REPEATS = 3;
/** Short job locks, so a killed worker's jobs come back within seconds (the default is 30 s). */
const JOB_LOCK_MS = 4000;
const SHUTDOWN_TIMEOUT_MS = 15_000;
/** Error codes an item may legitimately fail with (the photo itself); anything else is a lost item. */
const PHOTO_FAILURES = /^(no_face_detected|face_quality_too_low|image_[a-z_]+)$/;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const figures: Record<string, unknown> = {};

/** A redis-server of this test's own, with an append-only file synced on every write, restartable. */
class OwnRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'facesearch-faults-redis-'));
  child?: ChildProcess;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        ...['--bind', '127.0.0.1', '--port', String(this.port), '--dir', this.dir, '--save', ''],
        ...['--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction'],
      ],
      { stdio: 'ignore' },
    );
    this.child = child;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      try {
        execFileSync('redis-cli', ['-p', String(this.port), 'ping'], { stdio: 'pipe' });
        return;
      } catch {
        await sleep(100);
      }
    }
    throw new Error('redis-server did not start');
  }

  /** SIGTERM: Redis flushes its append-only file and exits. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The test photos, shrunk in memory (never written anywhere) so a few hundred fit one request. */
async function smallPhotos(): Promise<Array<{ person: string; name: string; data: Buffer }>> {
  const out: Array<{ person: string; name: string; data: Buffer }> = [];
  for (const person of readdirSync(join(TESTDATA, 'faces')).sort()) {
    for (const f of readdirSync(join(TESTDATA, 'faces', person)).sort()) {
      const data = await sharp(readFileSync(join(TESTDATA, 'faces', person, f)))
        .rotate()
        .resize(640, 640, { fit: 'inside', withoutEnlargement: true })
        .jpeg({ quality: 85 })
        .toBuffer();
      out.push({ person, name: f, data });
    }
  }
  return out;
}

describe.skipIf(skipReason !== null)('faults on the distributed stack', () => {
  const group = new ProcessGroup();
  const env = isolatedEnv(`${Date.now().toString(36)}${randomBytes(3).toString('hex')}`);
  let redis: OwnRedis;
  let base: string;
  let http: ReturnType<typeof request>;
  let photos: Awaited<ReturnType<typeof smallPhotos>>;
  const running = (prefix: string) =>
    group.apps.filter((a) => a.name.startsWith(prefix) && a.child.exitCode === null && a.child.signalCode === null);
  const kill = (name: string, signal: NodeJS.Signals) => {
    const proc = running(name)[0];
    if (!proc) throw new Error(`${name} is not running`);
    proc.child.kill(signal);
    return proc;
  };

  async function startImport(groupId: string, repeats: number, key?: string) {
    let req = http.post('/v1/imports').set(auth);
    if (key) req = req.set('idempotency-key', key);
    req = req.field('group_id', groupId);
    const items: Array<{ user_id: string; file: string }> = [];
    for (let r = 0; r < repeats; r++) {
      for (const [i, p] of photos.entries()) {
        const file = `${r}-${i}-${p.person}-${p.name}`;
        items.push({ user_id: `${p.person}-${r}-${i}`, file });
        req = req.attach('files', p.data, file);
      }
    }
    const res = await req.field('items', JSON.stringify(items));
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body as { import_id: string; total: number };
  }

  /** Points of the default app's group in this run's collection, counted exactly by Qdrant itself. */
  async function qdrantCount(groupId: string): Promise<number> {
    const res = await fetch(`${env.QDRANT_URL}/collections/${env.QDRANT_COLLECTION}/points/count`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        exact: true,
        filter: {
          must: [
            { key: 'app_id', match: { value: 'default' } },
            { key: 'group_id', match: { value: groupId } },
          ],
        },
      }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { result: { count: number } }).result.count;
  }

  async function importStatus(id: string) {
    const res = await http.get(`/v1/imports/${id}`).set(auth);
    return res.status === 200 ? res.body : null;
  }

  async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
    const t0 = Date.now();
    while (Date.now() - t0 < timeoutMs) {
      if (await check().catch(() => false)) return Date.now() - t0;
      await sleep(250);
    }
    throw new Error(`${what}: not within ${timeoutMs} ms\n${group.tails(15)}`);
  }

  async function waitDone(id: string, timeoutMs = 300_000) {
    await waitFor(
      async () => ['completed', 'failed', 'cancelled'].includes((await importStatus(id))?.status),
      timeoutMs,
      `import ${id} to finish`,
    );
    return importStatus(id);
  }

  /** Every item finished, counts add up, failures are the photos' own, one vector and one record per success. */
  async function checkImport(id: string, groupId: string) {
    const status = await importStatus(id);
    expect(status).toMatchObject({ status: 'completed', pending: 0, progress: 1 });
    expect(status.succeeded + status.failed).toBe(status.total);
    const items: Array<{ index: number; status: string; face_id: string | null; error: { code: string } | null }> = [];
    let cursor: string | null = null;
    do {
      const page = await http
        .get(`/v1/imports/${id}/items`)
        .query({ limit: 1000, ...(cursor ? { cursor } : {}) })
        .set(auth);
      items.push(...page.body.items);
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(items).toHaveLength(status.total);
    const byStatus = (s: string) => items.filter((i) => i.status === s);
    expect(byStatus('succeeded')).toHaveLength(status.succeeded);
    expect(byStatus('failed')).toHaveLength(status.failed);
    for (const item of byStatus('succeeded')) expect(item.face_id).toBe(`${id}_${item.index}`);
    const lost = byStatus('failed').filter((i) => !PHOTO_FAILURES.test(i.error?.code ?? ''));
    expect(lost, 'items failed by the faults rather than by their photo').toEqual([]);

    const repo = new RedisLibraryRepository(redis.url, { keyPrefix: `${env.REDIS_PREFIX}:lib:` });
    try {
      expect(await qdrantCount(groupId)).toBe(status.succeeded);
      let faces = 0;
      let userCursor: string | null = null;
      do {
        const page = await repo.listUsers('default', groupId, { limit: 1000, cursor: userCursor });
        for (const user of page.items) faces += (await repo.listFaces('default', groupId, user.user_id)).length;
        userCursor = page.next_cursor;
      } while (userCursor);
      expect(faces).toBe(status.succeeded);
    } finally {
      await repo.close();
    }
    return status;
  }

  beforeAll(async () => {
    buildApps();
    photos = await smallPhotos();
    redis = new OwnRedis(await freePort());
    await redis.start();
    Object.assign(env, { REDIS_URL: redis.url });
    const common = {
      ...env,
      DEFAULT_APP_API_KEY: DEFAULT_KEY,
      IMPORT_CONCURRENCY: '2',
      JOB_LOCK_MS: String(JOB_LOCK_MS),
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      // Debug: the detectors' line per item is counted below.
      LOG_LEVEL: 'debug',
    };
    ({ base } = await startStack(group, common, { readyTimeoutMs: 180_000 }));
    http = request(base);
  }, 300_000);

  afterAll(async () => {
    await group.stop();
    await redis?.dispose();
    await dropIsolated(env);
  }, 120_000);

  it('SIGKILL of a detector, then of an embedder, mid-import: every item ends once, counts add up', async () => {
    const t0 = Date.now();
    const job = await startImport('bulk', REPEATS);
    expect(job.total).toBe(photos.length * REPEATS);
    const done = async () => {
      const s = await importStatus(job.import_id);
      return s ? s.succeeded + s.failed : 0;
    };

    await waitFor(async () => (await done()) >= job.total * 0.15, 240_000, '15 % of the import');
    const killedDetectorAt = Date.now();
    kill('detector-1', 'SIGKILL');
    const detectorBack = group.restart('detector-1');
    const detectorReadyMs = await waitFor(
      async () => group.lines(detectorBack.name, 'consuming the imports queue').length > 0,
      60_000,
      'restarted detector',
    );

    await waitFor(async () => (await done()) >= job.total * 0.45, 240_000, '45 % of the import');
    const killedEmbedderAt = Date.now();
    kill('embedder-1', 'SIGKILL');
    const embedderBack = group.restart('embedder-1');
    const embedderReadyMs = await waitFor(
      async () => /embedder gRPC service|listening|serving/i.test(embedderBack.log()),
      60_000,
      'restarted embedder',
    );

    const status = await waitDone(job.import_id);
    const finishedAt = Date.now();
    const checked = await checkImport(job.import_id, 'bulk');

    // The killed detector's jobs came back through BullMQ's stalled check, on a surviving or restarted detector.
    const stalled = group.apps
      .filter((a) => a.name.startsWith('detector'))
      .flatMap((a) => group.lines(a.name, 'job stalled; back in the queue'))
      .map((l) => Number(l.time));
    const analysed = group.apps
      .filter((a) => a.name.startsWith('detector'))
      .reduce((n, a) => n + group.lines(a.name, 'import item analysed').length, 0);
    figures.kill = {
      items: job.total,
      succeeded: checked.succeeded,
      failed: checked.failed,
      import_seconds: (finishedAt - t0) / 1000,
      stalled_jobs_recovered: stalled.length,
      stalled_back_in_queue_after_kill_ms: stalled.length ? Math.min(...stalled) - killedDetectorAt : null,
      detector_restart_ready_ms: detectorReadyMs,
      embedder_restart_ready_ms: embedderReadyMs,
      embedder_killed_after_s: (killedEmbedderAt - t0) / 1000,
      items_analysed_more_than_once: Math.max(0, analysed - checked.succeeded),
    };
    expect(status.total).toBe(job.total);
  }, 600_000);

  it('Redis stopped during an import: 503 with a code and Retry-After while down; afterwards nothing is lost', async () => {
    const job = await startImport('redis-restart', 1);
    await waitFor(
      async () => {
        const s = await importStatus(job.import_id);
        return s.succeeded + s.failed >= job.total * 0.2;
      },
      240_000,
      '20 % of the import',
    );
    const stoppedAt = Date.now();
    await redis.stop();
    const groups = await http.get('/v1/groups').set(auth);
    expect(groups.status, JSON.stringify(groups.body)).toBe(503);
    expect(groups.body.error.code).toMatch(/^(library|queue)_unavailable$/);
    expect(Number(groups.headers['retry-after'])).toBeGreaterThan(0);
    const answeredInMs = Date.now() - stoppedAt;
    const another = await http
      .post('/v1/imports')
      .set(auth)
      .send({ group_id: 'x', items: [{ user_id: 'x', image_base64: photos[0].data.toString('base64') }] });
    expect(another.status).toBe(503);
    expect(another.headers['retry-after']).toBeDefined();
    expect((await http.get('/health/ready')).status).toBe(503);
    await sleep(3000); // down for a few seconds while the workers keep trying

    await redis.start();
    const restartedAt = Date.now();
    const readyMs = await waitFor(
      async () => (await fetch(`${base}/health/ready`)).status === 200,
      60_000,
      'gateway ready after the Redis restart',
    );
    await waitDone(job.import_id);
    const checked = await checkImport(job.import_id, 'redis-restart');
    figures.redis_restart = {
      items: job.total,
      succeeded: checked.succeeded,
      failed: checked.failed,
      first_503_answered_ms: answeredInMs,
      redis_down_ms: restartedAt - stoppedAt,
      gateway_ready_after_restart_ms: readyMs,
      import_finished_after_restart_ms: Date.now() - restartedAt,
    };
  }, 400_000);

  it('Idempotency-Key: the same import and the same enrolment again create nothing twice', async () => {
    const first = await startImport('idem', 1, 'import-key-1');
    const again = await startImport('idem', 1, 'import-key-1');
    expect(again.import_id).toBe(first.import_id);
    await waitDone(first.import_id);
    const afterDone = await startImport('idem', 1, 'import-key-1');
    expect(afterDone.import_id).toBe(first.import_id);
    const checked = await checkImport(first.import_id, 'idem');

    const enrol = () =>
      http
        .post('/v1/groups/idem-enrol/users/obama/faces')
        .set(auth)
        .set('idempotency-key', 'enrol-key-1')
        .attach('image', photos.find((p) => p.person === 'obama')?.data as Buffer, 'a.jpg');
    const [a, b] = await Promise.all([enrol(), enrol()]);
    const c = await enrol();
    expect([a.status, b.status, c.status]).toEqual([201, 201, 201]);
    expect(new Set([a.body.face_id, b.body.face_id, c.body.face_id]).size).toBe(1);
    expect((await http.get('/v1/groups/idem-enrol/users/obama/faces').set(auth)).body.items).toHaveLength(1);
    figures.idempotency = { import_items: checked.total, succeeded: checked.succeeded, enrol_retries: 3 };
  }, 400_000);

  it('SIGTERM of a detector mid-import: it finishes or hands back its jobs and exits 0 in time', async () => {
    const job = await startImport('sigterm', 1);
    await waitFor(
      async () => {
        const s = await importStatus(job.import_id);
        return s.succeeded + s.failed >= job.total * 0.2;
      },
      240_000,
      '20 % of the import',
    );
    const proc = running('detector-2')[0];
    const t0 = Date.now();
    proc.child.kill('SIGTERM');
    const code = await proc.exited;
    const exitMs = Date.now() - t0;
    expect(code).toBe(0);
    await waitDone(job.import_id);
    const checked = await checkImport(job.import_id, 'sigterm');
    figures.detector_sigterm = { exit_code: code, exit_ms: exitMs, limit_ms: SHUTDOWN_TIMEOUT_MS, ...checked };
  }, 400_000);

  it('SIGTERM of the gateway with requests in flight: they finish, then it exits 0', async () => {
    const obama = photos.find((p) => p.person === 'obama')?.data as Buffer;
    const enrolled = await http
      .post('/v1/groups/in-flight/users/obama/faces')
      .set(auth)
      .attach('image', obama, 'a.jpg');
    expect(enrolled.status).toBe(201);
    const search = () =>
      fetch(`${base}/v1/search`, {
        method: 'POST',
        headers: { 'x-api-key': DEFAULT_KEY },
        body: (() => {
          const form = new FormData();
          form.append('group_ids', 'in-flight');
          form.append('image', new Blob([obama]), 'q.jpg');
          return form;
        })(),
      }).then(async (r) => ({ status: r.status, body: await r.json() }));
    const inFlight = Array.from({ length: 6 }, () => search());
    await sleep(150);
    const gateway = running('gateway')[0];
    const t0 = Date.now();
    gateway.child.kill('SIGTERM');
    const results = await Promise.all(inFlight);
    const code = await gateway.exited;
    figures.gateway_sigterm = {
      in_flight: results.length,
      statuses: results.map((r) => r.status),
      exit_code: code,
      exit_ms: Date.now() - t0,
    };
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    expect(results[0].body.results[0].matches[0]?.user_id).toBe('obama');
    expect(code).toBe(0);
    // New connections are refused once it is gone.
    await expect(fetch(`${base}/health/live`)).rejects.toThrow();
  }, 120_000);
});

describe.skipIf(skipReason !== null)('faults: Qdrant or S3 unavailable during enrolment; a full import queue', () => {
  afterAll(() => console.log(`[faults] figures ${JSON.stringify(figures)}`));
  const env = isolatedEnv(`${Date.now().toString(36)}${randomBytes(3).toString('hex')}`);
  const proxies = { qdrant: SwitchableProxy.forUrl(env.QDRANT_URL), s3: SwitchableProxy.forUrl(env.S3_ENDPOINT) };
  let gateway: Gateway;
  let http: ReturnType<typeof request>;
  let photo: Buffer;

  beforeAll(async () => {
    photo = (await smallPhotos()).find((p) => p.person === 'kit_harington')?.data as Buffer;
    for (const p of Object.values(proxies)) await p.up();
    // One process with the local engine; Qdrant and S3 through proxies; nobody consumes the import queue here.
    const config = loadConfig({
      ...env,
      QDRANT_URL: proxies.qdrant.rewrite(env.QDRANT_URL),
      S3_ENDPOINT: proxies.s3.rewrite(env.S3_ENDPOINT),
      ENGINE: 'local',
      DEFAULT_APP_API_KEY: DEFAULT_KEY,
      MAX_QUEUED_ITEMS: '2',
      LOG_LEVEL: 'silent',
    });
    gateway = await createGateway(config, { logger: pino({ level: 'silent' }) });
    http = request(gateway.app.getHttpServer());
  }, 120_000);

  afterAll(async () => {
    for (const p of Object.values(proxies)) await p.up();
    await gateway?.close();
    for (const p of Object.values(proxies)) await p.down();
    await dropIsolated(env);
  }, 60_000);

  const enrol = (user: string) =>
    http.post(`/v1/groups/g/users/${user}/faces`).set(auth).attach('image', photo, 'kit.jpg');

  /** What the enrolment left behind for this user: records, vectors, stored images. */
  async function leftovers(user: string) {
    const { library, vectors, blobs } = gateway.ports;
    const records = (await library.getUser('default', 'g', user))
      ? (await library.listFaces('default', 'g', user)).length
      : 0;
    const points = await vectors.count({ app_id: 'default', group_id: 'g' });
    const s3 = blobs as unknown as {
      client: { listObjectsV2(b: string, p: string, r: boolean): NodeJS.ReadableStream };
    };
    const images: string[] = [];
    for await (const o of s3.client.listObjectsV2(env.S3_BUCKET, `faces/default/g/${user}/`, true)) {
      images.push((o as { name: string }).name);
    }
    return { records, points, images: images.length };
  }

  for (const server of ['qdrant', 's3'] as const) {
    it(`${server} down: readiness red, enrol fails fast with 503 + Retry-After, nothing half-written`, async () => {
      const before = await leftovers(`u-${server}`);
      await proxies[server].down();
      let elapsed: number;
      try {
        const ready = await http.get('/health/ready');
        expect(ready.status).toBe(503);
        const t0 = Date.now();
        const res = await enrol(`u-${server}`);
        elapsed = Date.now() - t0;
        expect(res.status, JSON.stringify(res.body)).toBe(503);
        expect(res.body.error.code).toBe(server === 'qdrant' ? 'vector_store_unavailable' : 'blob_store_unavailable');
        expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
      } finally {
        await proxies[server].up();
      }
      expect(await leftovers(`u-${server}`)).toEqual(before);
      figures[`enrol_${server}_down`] = { status: 503, answered_ms: elapsed };
      // Back: the same enrolment works and leaves one of each.
      const ok = await enrol(`u-${server}`);
      expect(ok.status, JSON.stringify(ok.body)).toBe(201);
      const after = await leftovers(`u-${server}`);
      expect(after).toEqual({ records: 1, points: before.points + 1, images: 1 });
    }, 90_000);
  }

  it('a full import queue: 429 queue_full with Retry-After', async () => {
    const item = (user: string) => ({ user_id: user, image_base64: photo.toString('base64') });
    const first = await http
      .post('/v1/imports')
      .set(auth)
      .send({ group_id: 'q', items: [item('a'), item('b'), item('c')] });
    expect(first.status, JSON.stringify(first.body)).toBe(202);
    const refused = await http
      .post('/v1/imports')
      .set(auth)
      .send({ group_id: 'q', items: [item('d')] });
    expect(refused.status, JSON.stringify(refused.body)).toBe(429);
    expect(refused.body.error.code).toBe('queue_full');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
  }, 60_000);
});
