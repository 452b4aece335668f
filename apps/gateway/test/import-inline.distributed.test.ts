/**
 * IMPORT_EMBED=inline on the distributed stack: the detector embeds each import item through the embedder
 * service over gRPC and queues the index job itself, so no crop goes through S3 and nothing uses the embed queue.
 * And a second gateway without EMBEDDER_GRPC_URL, whose synchronous calls the detector answers alone
 * (Detector.Analyze, one gRPC call per image).
 * Real Redis, Qdrant and Ceph S3 (scripts/services/up.sh), each app its own process. Skipped with the reason
 * without the servers, the test photos or the models.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildApps,
  dropIsolated,
  freePort,
  isolatedEnv,
  ProcessGroup,
  servicesSkipReason,
  startStack,
  waitReady,
} from './distributed';
import { engineSkipReason, photo, TESTDATA } from './helpers';

const skipReason = servicesSkipReason() ?? engineSkipReason();
if (skipReason) console.warn(`[import-inline] skipped: ${skipReason}`);

const ADMIN_KEY = 'inline-admin-key-000001';
const DEFAULT_KEY = 'inline-default-key-0001';
const auth = { 'x-api-key': DEFAULT_KEY };

describe.skipIf(skipReason !== null)('distributed import with IMPORT_EMBED=inline (detector -> embedder gRPC)', () => {
  const group = new ProcessGroup();
  const env = isolatedEnv(`${Date.now().toString(36)}${randomBytes(3).toString('hex')}`);
  let base = '';
  let common: Record<string, string> = {};
  let detectors = '';

  beforeAll(async () => {
    buildApps();
    common = {
      ...env,
      ADMIN_API_KEY: ADMIN_KEY,
      DEFAULT_APP_API_KEY: DEFAULT_KEY,
      ENGINE_WORKERS: '1',
      SHUTDOWN_TIMEOUT_MS: '15000',
      LOG_LEVEL: 'debug',
    };
    const stack = await startStack(group, common, {
      readyTimeoutMs: 150_000,
      detectors: 1,
      embedders: 1,
      importEmbed: 'inline',
    });
    base = stack.base;
    detectors = stack.detectors;
  }, 240_000);

  afterAll(async () => {
    await group.stop();
    await dropIsolated(env);
  }, 60_000);

  it('imports every item through detector and embedder service, without the embed queue, and finds them', async () => {
    const people = readdirSync(join(TESTDATA, 'faces')).slice(0, 4);
    let req = request(base).post('/v1/imports').set(auth).field('group_id', 'inline');
    const items: Array<{ user_id: string; file: string }> = [];
    for (const person of people) {
      const [first] = readdirSync(join(TESTDATA, 'faces', person)).sort();
      items.push({ user_id: person, file: `${person}__${first}` });
      req = req.attach('files', photo(`faces/${person}/${first}`), `${person}__${first}`);
    }
    const total = items.length;
    items.push({ user_id: 'bad', file: 'bad__text.jpg' });
    req = req.attach('files', Buffer.from('not an image'), 'bad__text.jpg');
    const created = await req.field('items', JSON.stringify(items));
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const importId = created.body.import_id as string;
    let status: { status: string; succeeded: number; failed: number } = created.body;
    const deadline = Date.now() + 120_000;
    while (status.status !== 'completed' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
      status = (await request(base).get(`/v1/imports/${importId}`).set(auth)).body;
    }
    expect(status).toMatchObject({ status: 'completed', succeeded: total, failed: 1 });

    // The detector analysed and handed on every good item; the embedder embedded them over gRPC, not from the
    // embed queue; the indexer wrote them.
    expect(group.lines('detector-1', 'import item analysed')).toHaveLength(total);
    expect(group.lines('embedder-1', 'import item embedded')).toHaveLength(0);
    const embeddedOverGrpc = group.lines('embedder-1', 'embedded crops').reduce((n, l) => n + Number(l.crops ?? 1), 0);
    expect(embeddedOverGrpc).toBeGreaterThanOrEqual(total);
    const indexed = group.lines('indexer-1', 'index batch written').reduce((n, l) => n + Number(l.faces), 0);
    expect(indexed).toBe(total);

    const [person] = people;
    const probe = readdirSync(join(TESTDATA, 'faces', person))
      .sort()
      .at(-1);
    const found = await request(base)
      .post('/v1/search')
      .set(auth)
      .field('group_ids', 'inline')
      .attach('image', photo(`faces/${person}/${probe}`), 'probe.jpg')
      .expect(200);
    expect(found.body.results[0].matches[0]?.user_id).toBe(person);

    // A gateway without EMBEDDER_GRPC_URL: the detector detects and embeds in one call, the embedder is not asked,
    // and the answers equal the two-call gateway's.
    const port = await freePort();
    group.start('gateway-2', 'gateway', { ...common, PORT: String(port), DETECTOR_GRPC_URL: detectors });
    const oneCall = `http://127.0.0.1:${port}`;
    const ready = (await waitReady(`${oneCall}/health/ready`, group, 60_000)) as { details?: object };
    expect(Object.keys(ready.details ?? {})).toContain('detectors');
    expect(Object.keys(ready.details ?? {})).not.toContain('embedders');
    const embedderCalls = group.lines('embedder-1', 'embedded crops').length;
    const search = (url: string) =>
      request(url)
        .post('/v1/search')
        .set(auth)
        .field('group_ids', 'inline')
        .attach('image', photo(`faces/${person}/${probe}`), 'probe.jpg')
        .expect(200);
    const viaDetector = await search(oneCall);
    expect(group.lines('embedder-1', 'embedded crops')).toHaveLength(embedderCalls);
    expect(viaDetector.body.results[0].matches[0]?.user_id).toBe(person);
    expect(viaDetector.body).toEqual((await search(base)).body);
    // (the embedder's log reaches this process a little later than its answer)
    await expect.poll(() => group.lines('embedder-1', 'embedded crops').length).toBe(embedderCalls + 1);
  }, 200_000);
});
