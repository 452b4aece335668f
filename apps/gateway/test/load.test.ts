/**
 * [load] A bounded load test of the embedded gateway (one process, the real engine, SQLite): LOAD_CONCURRENCY
 * clients send search and enrol requests for LOAD_SECONDS. Asserted: no 5xx at all, except 503 engine_busy /
 * queue answers that carry Retry-After (counted and reported apart), and RSS after the run settles not grown
 * by more than a generous bound over RSS after warm-up. Latency percentiles are printed, not asserted.
 * Also the engine's back-pressure over HTTP: with MAX_CONCURRENT_ANALYSES=1, concurrent requests beyond the
 * one running get 503 engine_busy with Retry-After at once.
 * Skipped without the models or the test photos.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_KEY, startTestGateway, type TestGateway } from './helpers';

const TESTDATA = resolve(__dirname, '../../../../shared/testdata');
const MODELS = resolve(__dirname, '../../../models');
const haveModels = existsSync(MODELS) && readdirSync(MODELS).some((f) => f.endsWith('.onnx'));
const skipReason = !haveModels
  ? `no .onnx models in ${MODELS} (run pnpm models)`
  : !existsSync(join(TESTDATA, 'faces'))
    ? `test photos not found at ${TESTDATA}`
    : null;
if (skipReason) console.warn(`[load] skipped: ${skipReason}`);

const CONCURRENCY = Number(process.env.LOAD_CONCURRENCY ?? 16);
const SECONDS = Number(process.env.LOAD_SECONDS ?? 20);
/** RSS may grow this much from after warm-up to after the run (caches, allocator slack, the new faces). */
const RSS_GROWTH_LIMIT_MB = 300;
const PEOPLE = ['obama', 'kit_harington', 'rose_leslie', 'alex_lacamoire', 'biden', 'deepface_c01'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function photo(rel: string): Promise<Buffer> {
  return sharp(readFileSync(join(TESTDATA, rel)))
    .rotate()
    .resize(640, 640, { fit: 'inside', withoutEnlargement: true })
    .jpeg({ quality: 85 })
    .toBuffer();
}

interface Outcome {
  kind: 'search' | 'enrol';
  status: number;
  ms: number;
  code?: string;
  retryAfter?: string | null;
}

async function send(base: string, kind: Outcome['kind'], path: string, form: FormData): Promise<Outcome> {
  const t0 = performance.now();
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'x-api-key': DEFAULT_KEY }, body: form });
  const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
  return {
    kind,
    status: res.status,
    ms: performance.now() - t0,
    code: body.error?.code,
    retryAfter: res.headers.get('retry-after'),
  };
}

function summarize(outcomes: Outcome[]) {
  const out: Record<string, unknown> = {};
  for (const kind of ['search', 'enrol'] as const) {
    const ok = outcomes
      .filter((o) => o.kind === kind && o.status < 400)
      .map((o) => o.ms)
      .sort((a, b) => a - b);
    out[kind] = {
      ok: ok.length,
      p50_ms: Math.round(percentile(ok, 50)),
      p90_ms: Math.round(percentile(ok, 90)),
      p99_ms: Math.round(percentile(ok, 99)),
      max_ms: Math.round(ok[ok.length - 1] ?? 0),
    };
  }
  return out;
}

describe.skipIf(skipReason !== null)('[load] embedded gateway under concurrent search and enrol', () => {
  let gw: TestGateway;
  let base: string;
  const images: Record<string, Buffer> = {};

  beforeAll(async () => {
    for (const p of PEOPLE) {
      images[`${p}/1`] = await photo(`faces/${p}/1.jpg`);
      images[`${p}/2`] = await photo(`faces/${p}/2.jpg`);
    }
    gw = await startTestGateway({ MAX_CONCURRENT_ANALYSES: '32' });
    await gw.app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(gw.app.getHttpServer().address() as AddressInfo).port}`;
  }, 120_000);

  afterAll(async () => {
    await gw?.dispose();
  });

  const enrolForm = (person: string) => {
    const form = new FormData();
    form.append('image', new Blob([images[`${person}/1`]]), '1.jpg');
    return form;
  };
  const searchForm = (person: string) => {
    const form = new FormData();
    form.append('group_ids', 'load');
    form.append('image', new Blob([images[`${person}/2`]]), '2.jpg');
    return form;
  };

  it(`${CONCURRENCY} clients for ${SECONDS} s: no 5xx, memory settles, latencies reported`, async () => {
    // Warm-up: the library gets one face per person, and every code path runs once.
    for (const p of PEOPLE) {
      const r = await send(base, 'enrol', `/v1/groups/load/users/${p}/faces`, enrolForm(p));
      expect(r.status, JSON.stringify(r)).toBe(201);
    }
    for (const p of PEOPLE) expect((await send(base, 'search', '/v1/search', searchForm(p))).status).toBe(200);
    await sleep(500);
    const rssWarm = process.memoryUsage().rss;

    const outcomes: Outcome[] = [];
    const deadline = Date.now() + SECONDS * 1000;
    let n = 0;
    const client = async (k: number) => {
      while (Date.now() < deadline) {
        const i = n++;
        const person = PEOPLE[i % PEOPLE.length];
        // One request in five enrols (a new user each time: no face limit), the rest search.
        outcomes.push(
          i % 5 === 0
            ? await send(base, 'enrol', `/v1/groups/load/users/${person}-${k}-${i}/faces`, enrolForm(person))
            : await send(base, 'search', '/v1/search', searchForm(person)),
        );
      }
    };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, k) => client(k)));
    const elapsed = (Date.now() - t0) / 1000;
    await sleep(2000);
    const rssAfter = process.memoryUsage().rss;

    const busy = outcomes.filter((o) => o.status === 503 && o.retryAfter);
    const errors5xx = outcomes.filter((o) => o.status >= 500 && !(o.status === 503 && o.retryAfter));
    const client4xx = outcomes.filter((o) => o.status >= 400 && o.status < 500);
    const report = {
      concurrency: CONCURRENCY,
      seconds: elapsed,
      requests: outcomes.length,
      per_second: Math.round((outcomes.length / elapsed) * 10) / 10,
      ...summarize(outcomes),
      busy_503_with_retry_after: busy.length,
      busy_codes: [...new Set(busy.map((o) => o.code))],
      other_5xx: errors5xx.length,
      client_4xx: client4xx.length,
      rss_warm_mb: mb(rssWarm),
      rss_after_mb: mb(rssAfter),
      rss_growth_mb: mb(rssAfter - rssWarm),
    };
    console.log(`[load] ${JSON.stringify(report)}`);
    expect(errors5xx, JSON.stringify(errors5xx.slice(0, 5))).toEqual([]);
    expect(client4xx, JSON.stringify(client4xx.slice(0, 5))).toEqual([]);
    expect(outcomes.length).toBeGreaterThan(CONCURRENCY);
    expect(mb(rssAfter - rssWarm)).toBeLessThan(RSS_GROWTH_LIMIT_MB);
  }, 120_000);
});

describe.skipIf(skipReason !== null)('[load] engine back-pressure over HTTP', () => {
  let gw: TestGateway;
  let base: string;

  beforeAll(async () => {
    gw = await startTestGateway({ MAX_CONCURRENT_ANALYSES: '1' });
    await gw.app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(gw.app.getHttpServer().address() as AddressInfo).port}`;
  }, 120_000);

  afterAll(async () => {
    await gw?.dispose();
  });

  it('answers 503 engine_busy with Retry-After beyond MAX_CONCURRENT_ANALYSES, and serves again after', async () => {
    const image = await photo('faces/obama/1.jpg');
    const detect = () => {
      const form = new FormData();
      form.append('image', new Blob([image]), '1.jpg');
      return send(base, 'search', '/v1/detect', form);
    };
    const results = await Promise.all(Array.from({ length: 8 }, () => detect()));
    const busy = results.filter((r) => r.status === 503);
    expect(results.filter((r) => r.status === 200).length).toBeGreaterThan(0);
    expect(busy.length).toBeGreaterThan(0);
    for (const r of busy) expect(r).toMatchObject({ code: 'engine_busy', retryAfter: '1' });
    expect(results.every((r) => r.status === 200 || r.status === 503)).toBe(true);
    expect((await detect()).status).toBe(200);
  }, 60_000);
});
