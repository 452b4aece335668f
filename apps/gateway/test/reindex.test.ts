/**
 * Reindex after a model change, embedded mode, real engine: faces enrolled with one embedding model id are
 * invisible to search under another (search compares only vectors of the running model) until
 * POST /v1/admin/reindex re-embeds them from their stored images. The "new" model is a manifest copy with
 * another id and the same weights, so its vectors equal the old ones and matches are expected again.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '@facesearch/common';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway } from '../src/gateway';
import { ADMIN_KEY, DEFAULT_KEY, engineSkipReason, MODELS, photo } from './helpers';

const skipReason = engineSkipReason();
if (skipReason) console.warn(`[reindex] skipped: ${skipReason}`);

const ROOT = resolve(__dirname, '../../..');
const CLI = join(ROOT, 'apps/cli/dist/main.js');
const PEOPLE = ['obama', 'kit_harington', 'rose_leslie'];
const auth = { 'x-api-key': DEFAULT_KEY };
const admin = { 'x-api-key': ADMIN_KEY };

/** A model folder whose manifest names the same weights under another embedder id. */
function renamedModelDir(dir: string, embedderId: string): string {
  const manifest = JSON.parse(readFileSync(join(MODELS, 'manifest.json'), 'utf8'));
  for (const m of manifest.models) {
    m.file = join(MODELS, m.file);
    if (m.role === 'embedder') m.id = embedderId;
  }
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

describe.skipIf(skipReason !== null)('reindex after a model change (embedded, real engine)', () => {
  let dataDir: string;
  let modelDir: string;
  let gw: Gateway | null = null;

  const start = async (extra: Record<string, string> = {}) => {
    const config = loadConfig({
      DATA_DIR: dataDir,
      ADMIN_API_KEY: ADMIN_KEY,
      DEFAULT_APP_API_KEY: DEFAULT_KEY,
      LOG_LEVEL: 'silent',
      ...extra,
    });
    gw = await createGateway(config, { logger: pino({ level: 'silent' }) });
    return request(gw.app.getHttpServer());
  };
  const stop = async () => {
    await gw?.close();
    gw = null;
  };
  const waitForReindex = async (http: ReturnType<typeof request>) => {
    const seen: number[] = [];
    for (let i = 0; i < 1200; i++) {
      const res = await http.get('/v1/admin/reindex').set(admin);
      expect(res.status).toBe(200);
      seen.push(res.body.processed);
      if (res.body.status !== 'running') return { ...res.body, seen };
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('reindex did not finish');
  };
  const topMatch = async (http: ReturnType<typeof request>, person: string) => {
    const res = await http
      .post('/v1/search')
      .set(auth)
      .field('group_ids', 'people')
      .attach('image', photo(`faces/${person}/2.jpg`), '2.jpg');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.results[0].matches[0]?.user_id as string | undefined;
  };

  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'facesearch-reindex-'));
    modelDir = renamedModelDir(mkdtempSync(join(tmpdir(), 'facesearch-models-')), 'fr_feature@renamed-for-test');
  });
  afterAll(async () => {
    await stop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(modelDir, { recursive: true, force: true });
  });

  it('re-embeds every face of the old model, and search finds them again', async () => {
    // 1. Enrol with the default model.
    let http = await start();
    const faceIds: string[] = [];
    for (const person of PEOPLE) {
      const res = await http
        .post(`/v1/groups/people/users/${person}/faces`)
        .set(auth)
        .attach('image', photo(`faces/${person}/1.jpg`), '1.jpg');
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      faceIds.push(res.body.face_id);
    }
    const oldModel = (await http.get(`/v1/groups/people/users/${PEOPLE[0]}/faces`).set(auth)).body.items[0].model_id;
    for (const person of PEOPLE) expect(await topMatch(http, person)).toBe(person);
    const idle = await http.get('/v1/admin/reindex').set(admin);
    expect(idle.body).toMatchObject({ status: 'idle', model_id: oldModel });
    expect((await http.post('/v1/admin/reindex').set(auth).send({})).status).toBe(403); // admin key only
    await stop();

    // 2. Restart with the renamed model: the old vectors are not compared any more.
    http = await start({ MODEL_DIR: modelDir });
    for (const person of PEOPLE) expect(await topMatch(http, person)).toBeUndefined();
    const cmp = await http
      .post('/v1/compare')
      .set(auth)
      .field('face_id_b', faceIds[0])
      .attach('image_a', photo(`faces/${PEOPLE[0]}/2.jpg`), '2.jpg');
    expect(cmp.status).toBe(409);
    expect(cmp.body.error.code).toBe('face_model_mismatch');

    // 3. Reindex: every face is rewritten with the running model id.
    const started = await http.post('/v1/admin/reindex').set(admin).send({});
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ status: 'running', model_id: 'fr_feature@renamed-for-test', all: false });
    const done = await waitForReindex(http);
    expect(done).toMatchObject({
      status: 'completed',
      total: PEOPLE.length,
      processed: PEOPLE.length,
      reindexed: PEOPLE.length,
      skipped: 0,
      failed: 0,
      errors: [],
    });
    for (const person of PEOPLE) {
      const faces = (await http.get(`/v1/groups/people/users/${person}/faces`).set(auth)).body.items;
      expect(faces.map((f: { model_id: string }) => f.model_id)).toEqual(['fr_feature@renamed-for-test']);
      expect(await topMatch(http, person)).toBe(person);
    }
    expect(faceIds).toEqual(
      await Promise.all(
        PEOPLE.map(async (p) => (await http.get(`/v1/groups/people/users/${p}/faces`).set(auth)).body.items[0].face_id),
      ),
    );
    const cmpAfter = await http
      .post('/v1/compare')
      .set(auth)
      .field('face_id_b', faceIds[0])
      .attach('image_a', photo(`faces/${PEOPLE[0]}/2.jpg`), '2.jpg');
    expect(cmpAfter.status).toBe(200);
    expect(cmpAfter.body.match).toBe(true);

    // 4. A second run skips what is current; `all` re-embeds everything; bad bodies are refused.
    await http.post('/v1/admin/reindex').set(admin).send({}).expect(202);
    expect(await waitForReindex(http)).toMatchObject({ status: 'completed', reindexed: 0, skipped: PEOPLE.length });
    await http.post('/v1/admin/reindex').set(admin).send({ all: true }).expect(202);
    expect(await waitForReindex(http)).toMatchObject({ status: 'completed', reindexed: PEOPLE.length, all: true });
    // The same through the command line: `pnpm facesearch reindex --all --json`
    const server = (gw as Gateway).app.getHttpServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    const cli = await promisify(execFile)(
      process.execPath,
      [CLI, 'reindex', '--all', '--json', '--url', `http://127.0.0.1:${port}`, '--key', ADMIN_KEY],
      { cwd: ROOT },
    );
    const summary = JSON.parse(cli.stdout.trim().split('\n').pop() as string);
    expect(summary).toMatchObject({ status: 'completed', reindexed: PEOPLE.length, failed: 0 });
    const refused = await promisify(execFile)(
      process.execPath,
      [CLI, 'reindex', '--json', '--url', `http://127.0.0.1:${port}`, '--key', DEFAULT_KEY],
      { cwd: ROOT },
    ).catch((err: { code: number; stdout: string }) => err);
    expect((refused as { code: number }).code).toBe(2);
    expect(JSON.parse((refused as { stdout: string }).stdout.trim()).error.code).toBe('forbidden');
    expect((await http.post('/v1/admin/reindex').set(admin).send({ all: 'yes' })).status).toBe(400);
  }, 300_000);
});
