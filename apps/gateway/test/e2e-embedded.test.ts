/**
 * The embedded gateway end to end: real SQLite + sqlite-vec + files + in-process queue + the real face engine,
 * on the shared test photos. Skipped (with the reason) when the photos or the models are absent.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_KEY, startTestGateway, type TestGateway } from './helpers';

const TESTDATA = resolve(__dirname, '../../../../shared/testdata');
const MODELS = resolve(__dirname, '../../../models');
const haveModels = existsSync(MODELS) && readdirSync(MODELS).some((f) => f.endsWith('.onnx'));
const skipReason = !existsSync(join(TESTDATA, 'faces'))
  ? `test photos not found at ${TESTDATA}`
  : !haveModels
    ? `no .onnx models in ${MODELS} (run pnpm models)`
    : null;
if (skipReason) console.warn(`[e2e-embedded] skipped: ${skipReason}`);

const photo = (rel: string) => readFileSync(join(TESTDATA, rel));
const auth = { 'x-api-key': DEFAULT_KEY };
/** Enrolled: photo 1 of each; probes: photo 2. `biden` stays out of the library (the "no match" person). */
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

describe.skipIf(skipReason !== null)('embedded gateway with the real engine', () => {
  let gw: TestGateway;
  let http: ReturnType<typeof request>;

  beforeAll(async () => {
    gw = await startTestGateway({ IMPORT_CONCURRENCY: '2' });
    http = request(gw.app.getHttpServer());
  });
  afterAll(async () => {
    await gw?.dispose();
  });

  it('enrols one photo per person and finds each person from another photo (rank 1)', async () => {
    for (const person of ENROLLED) {
      const res = await http
        .post(`/v1/groups/people/users/${person}/faces`)
        .set(auth)
        .attach('image', photo(`faces/${person}/1.jpg`), '1.jpg');
      expect(res.status, `${person}: ${JSON.stringify(res.body)}`).toBe(201);
      expect(res.body.quality.level).toMatch(/LOW|NORMAL|HIGH/);
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

  it('compares same and different people', async () => {
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
    expect(diff.body.score).toBeLessThan(same.body.score);
  });

  it('detects both faces in the group photos', async () => {
    for (const file of readdirSync(join(TESTDATA, 'multi'))) {
      const res = await http
        .post('/v1/detect')
        .set(auth)
        .attach('image', photo(`multi/${file}`), file);
      expect(res.status).toBe(200);
      expect(res.body.face_num, file).toBe(2);
      expect(res.body.faces[0]).toMatchObject({
        box: expect.any(Object),
        landmarks: expect.any(Object),
        quality: expect.any(Object),
      });
    }
  });

  it('rejects the bad files with their image error codes', async () => {
    const expected: Record<string, number> = {};
    for (const file of readdirSync(join(TESTDATA, 'bad'))) {
      const res = await http
        .post('/v1/detect')
        .set(auth)
        .attach('image', photo(`bad/${file}`), file);
      expected[file] = res.status;
      if (res.status !== 200) expect(res.body.error.code, file).toMatch(/^image_/);
    }
    expect(expected['zero_bytes.jpg']).toBe(400);
    expect(expected['text_renamed.jpg']).toBe(415);
    expect(expected['truncated_obama2.jpg']).toBeGreaterThanOrEqual(200);
    expect(expected['huge_header_only_100000x100000.png']).toBe(413);
  });

  it('imports every test photo, bad files included, polled to completion with per-item results', async () => {
    const items: Array<{ user_id: string; file: string }> = [];
    let req = http.post('/v1/imports').set(auth).field('group_id', 'bulk');
    for (const person of readdirSync(join(TESTDATA, 'faces'))) {
      for (const f of readdirSync(join(TESTDATA, 'faces', person))) {
        const name = `${person}__${f}`;
        items.push({ user_id: person, file: name });
        req = req.attach('files', photo(`faces/${person}/${f}`), name);
      }
    }
    for (const f of readdirSync(join(TESTDATA, 'bad'))) {
      items.push({ user_id: 'bad', file: `bad__${f}` });
      req = req.attach('files', photo(`bad/${f}`), `bad__${f}`);
    }
    const res = await req.field('items', JSON.stringify(items));
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    let status = res.body;
    const deadline = Date.now() + 240_000;
    while (['queued', 'running'].includes(status.status) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      status = (await http.get(`/v1/imports/${res.body.import_id}`).set(auth)).body;
    }
    expect(status).toMatchObject({ status: 'completed', total: items.length, progress: 1 });
    expect(status.succeeded + status.failed).toBe(items.length);
    expect(status.succeeded).toBeGreaterThan(items.length * 0.8);
    const failed = await http.get(`/v1/imports/${res.body.import_id}/items?status=failed&limit=1000`).set(auth);
    for (const item of failed.body.items) expect(item.error.code).toMatch(/^[a-z_]+$/);
    const failedBad = failed.body.items
      .filter((i: { name: string }) => i.name.startsWith('bad__'))
      .map((i: { name: string }) => i.name);
    expect(failedBad).toEqual(
      expect.arrayContaining([
        'bad__zero_bytes.jpg',
        'bad__text_renamed.jpg',
        'bad__huge_header_only_100000x100000.png',
      ]),
    );
    const ok = await http.get(`/v1/imports/${res.body.import_id}/items?status=succeeded&limit=1`).set(auth);
    expect(ok.body.items[0].face_id).toBeTruthy();
  }, 300_000);

  it('deletes a user and it is gone from search', async () => {
    await http.delete('/v1/groups/people/users/obama').set(auth).expect(200);
    const res = await http
      .post('/v1/search')
      .set(auth)
      .field('group_ids', 'people')
      .attach('image', photo('faces/obama/2.jpg'), '2.jpg');
    expect(res.body.results[0].matches.map((m: { user_id: string }) => m.user_id)).not.toContain('obama');
  });
});
