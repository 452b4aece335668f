/**
 * The user scenarios on the real engine and the shared test photos, written once and run against each deployment
 * mode (e2e-embedded.test.ts: one process; e2e-distributed.test.ts: gateway and workers as processes on real
 * servers). Mode-specific checks stay in the mode's own file; they can read what the scenarios did (`record`).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { photo, TESTDATA } from './helpers';

export type Http = ReturnType<typeof request>;

export interface ServiceUnderTest {
  http: Http;
  adminKey: string;
  defaultKey: string;
}

export interface ScenarioOptions {
  /** How long the bulk import of every test photo may take to complete. */
  importTimeoutMs: number;
}

/** What the scenarios did, for the mode's own checks that run after them. */
export interface ScenarioRecord {
  bulkImport?: { importId: string; succeeded: number };
}

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

/** Runs in order, each scenario on the state the ones before it left (the group `people` with ENROLLED). */
/** `analyze;dur=63.2, engine;dur=60.1` -> { analyze: 63.2, engine: 60.1 } */
function serverTiming(header: unknown): Record<string, number> {
  return Object.fromEntries(
    String(header ?? '')
      .split(', ')
      .map((entry) => entry.split(';dur='))
      .map(([name, ms]) => [name, Number(ms)]),
  );
}

export function describeServiceScenarios(
  name: string,
  start: () => Promise<ServiceUnderTest>,
  options: ScenarioOptions,
): ScenarioRecord {
  const record: ScenarioRecord = {};
  describe(name, () => {
    let http: Http;
    let auth: Record<string, string>;
    let adminKey: string;

    beforeAll(async () => {
      const service = await start();
      http = service.http;
      auth = { 'x-api-key': service.defaultKey };
      adminKey = service.adminKey;
    });

    const search = (groupId: string, rel: string) =>
      http.post('/v1/search').set(auth).field('group_ids', groupId).attach('image', photo(rel), 'probe.jpg');

    it('creates a group, enrols one photo per person and finds each from another photo (rank 1)', async () => {
      expect((await http.post('/v1/groups').set(auth).send({ group_id: 'people' })).status).toBe(201);
      for (const person of ENROLLED) {
        const res = await http
          .post(`/v1/groups/people/users/${person}/faces`)
          .set(auth)
          .attach('image', photo(`faces/${person}/1.jpg`), '1.jpg');
        expect(res.status, `${person}: ${JSON.stringify(res.body)}`).toBe(201);
        expect(res.body.quality.level).toMatch(/LOW|NORMAL|HIGH/);
      }
      for (const person of ENROLLED) {
        const res = await search('people', `faces/${person}/2.jpg`);
        expect(res.status).toBe(200);
        expect(
          res.body.results[0].matches[0]?.user_id,
          `${person}: ${JSON.stringify(res.body.results[0].matches)}`,
        ).toBe(person);
      }
    });

    it('answers an explicit no match for a person not enrolled', async () => {
      const res = await search('people', `faces/${STRANGER}/1.jpg`);
      expect(res.status).toBe(200);
      expect(res.body.results).toHaveLength(1);
      expect(res.body.results[0].matches).toEqual([]);
    });

    it('compares same and different people, and a photo with an enrolled face', async () => {
      const compare = (a: string, b: string) =>
        http.post('/v1/compare').set(auth).attach('image_a', photo(a), 'a.jpg').attach('image_b', photo(b), 'b.jpg');
      const same = await compare('faces/obama/1.jpg', 'faces/obama/2.jpg');
      expect(same.status).toBe(200);
      expect(same.body.match).toBe(true);
      const diff = await compare('faces/obama/1.jpg', `faces/${STRANGER}/1.jpg`);
      expect(diff.body.match).toBe(false);
      expect(diff.body.score).toBeLessThan(same.body.score);
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
        // The engine's own time is part of `analyze`; the rest is the hand-off to its thread or the gRPC hop.
        const timing = serverTiming(res.headers['server-timing']);
        expect(timing.engine, file).toBeGreaterThan(0);
        expect(timing.engine, file).toBeLessThanOrEqual(timing.analyze);
        expect(res.body.faces[0]).toMatchObject({
          box: expect.any(Object),
          landmarks: expect.any(Object),
          quality: expect.any(Object),
        });
      }
    });

    it('rejects the bad files with their image error codes', async () => {
      const statuses: Record<string, number> = {};
      for (const file of readdirSync(join(TESTDATA, 'bad'))) {
        const res = await http
          .post('/v1/detect')
          .set(auth)
          .attach('image', photo(`bad/${file}`), file);
        statuses[file] = res.status;
        if (res.status !== 200) expect(res.body.error.code, file).toMatch(/^image_/);
      }
      expect(statuses['zero_bytes.jpg']).toBe(400);
      expect(statuses['text_renamed.jpg']).toBe(415);
      expect(statuses['truncated_obama2.jpg']).toBeGreaterThanOrEqual(200);
      expect(statuses['huge_header_only_100000x100000.png']).toBe(413);
    });

    it(
      'imports every test photo, bad files included, polled to completion with per-item results and codes',
      async () => {
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
        const importId: string = res.body.import_id;
        let status = res.body;
        const deadline = Date.now() + options.importTimeoutMs;
        while (['queued', 'running'].includes(status.status) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 500));
          status = (await http.get(`/v1/imports/${importId}`).set(auth)).body;
        }
        expect(status).toMatchObject({ status: 'completed', total: items.length, progress: 1, pending: 0 });
        expect(status.succeeded + status.failed).toBe(items.length);
        expect(status.succeeded).toBeGreaterThan(items.length * 0.8);
        expect(status.succeeded).toBeGreaterThan((items.length - badFiles.length) * 0.8);
        record.bulkImport = { importId, succeeded: status.succeeded };

        const all = await http.get(`/v1/imports/${importId}/items?limit=1000`).set(auth);
        expect(all.body.items).toHaveLength(items.length);
        for (const item of all.body.items) {
          if (item.status === 'succeeded') expect(item.face_id).toBe(`${importId}_${item.index}`);
          else expect(item.error.code, item.name).toMatch(/^[a-z_]+$/);
        }
        const failed = await http.get(`/v1/imports/${importId}/items?status=failed&limit=1000`).set(auth);
        for (const item of failed.body.items) expect(item.error.code).toMatch(/^[a-z_]+$/);
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
        const ok = await http.get(`/v1/imports/${importId}/items?status=succeeded&limit=1`).set(auth);
        expect(ok.body.items[0].face_id).toBeTruthy();
        // The imported faces are searchable in the import's group (created by the import).
        const found = await search('bulk', 'faces/rose_leslie/1.jpg');
        expect(found.body.results[0].matches[0]?.user_id).toBe('rose_leslie');
      },
      options.importTimeoutMs + 60_000,
    );

    it('deletes a user and it is gone from search', async () => {
      expect((await http.delete('/v1/groups/people/users/obama').set(auth)).status).toBe(200);
      const res = await search('people', 'faces/obama/2.jpg');
      expect(res.status).toBe(200);
      expect(res.body.results[0].matches.map((m: { user_id: string }) => m.user_id)).not.toContain('obama');
      expect((await http.get('/v1/groups/people/users/obama').set(auth)).status).toBe(404);
    });

    it("refuses a missing key (401) and hides another app's group (404)", async () => {
      const none = await http.get('/v1/groups');
      expect(none.status).toBe(401);
      expect(none.body.error.code).toBe('unauthorized');
      const created = await http.post('/v1/apps').set('x-api-key', adminKey).send({ app_id: 'other' });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const other = { 'x-api-key': created.body.api_key.key as string };
      const hidden = await http.get('/v1/groups/people/users').set(other);
      expect(hidden.status).toBe(404);
      expect(hidden.body.error.code).toBe('group_not_found');
      const searched = await http
        .post('/v1/search')
        .set(other)
        .field('group_ids', 'people')
        .attach('image', photo('faces/kit_harington/2.jpg'), '2.jpg');
      expect(searched.status).toBe(404);
    });
  });
  return record;
}
