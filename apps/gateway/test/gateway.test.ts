/** HTTP behaviour of the gateway on the embedded adapters, with a fake analyzer (no models needed). */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeAnalyzer, fakeImage } from '../../../libs/core/test/fakes';
import { ADMIN_KEY, DEFAULT_KEY, startTestGateway, type TestGateway } from './helpers';

let gw: TestGateway;
let http: ReturnType<typeof request>;
const auth = { authorization: `Bearer ${DEFAULT_KEY}` };
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

beforeAll(async () => {
  gw = await startTestGateway(
    { MAX_IMAGE_BYTES: '4096', MAX_REQUEST_BYTES: '65536', MAX_FACES_PER_USER: '3' },
    new FakeAnalyzer(),
  );
  http = request(gw.app.getHttpServer());
});
afterAll(async () => {
  await gw?.dispose();
});

async function pollImport(id: string, key = auth) {
  for (let i = 0; i < 200; i++) {
    const res = await http.get(`/v1/imports/${id}`).set(key);
    if (!['queued', 'running'].includes(res.body.status)) return res.body;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('import did not finish');
}

describe('auth', () => {
  it('refuses requests without a valid key with 401 and the error shape', async () => {
    const res = await http.get('/v1/groups');
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
    expect((await http.get('/v1/groups').set('authorization', 'Bearer nope')).status).toBe(401);
    expect((await http.get('/v1/groups').set('x-api-key', DEFAULT_KEY)).status).toBe(200);
  });

  it('keeps the admin key to app management and app keys away from it', async () => {
    expect((await http.get('/v1/apps').set(auth)).status).toBe(403);
    expect((await http.get('/v1/groups').set('x-api-key', ADMIN_KEY)).status).toBe(403);
    const apps = await http.get('/v1/apps').set('x-api-key', ADMIN_KEY);
    expect(apps.status).toBe(200);
    expect(apps.body.items.map((a: { app_id: string }) => a.app_id)).toContain('default');
  });

  it("isolates apps: another app's group is a 404", async () => {
    const created = await http.post('/v1/apps').set('x-api-key', ADMIN_KEY).send({ app_id: 'other' });
    expect(created.status).toBe(201);
    const otherKey = { 'x-api-key': created.body.api_key.key as string };
    expect(created.body.api_key.key).toMatch(/^fsk_/);
    expect((await http.post('/v1/groups').set(auth).send({ group_id: 'private' })).status).toBe(201);

    for (const [method, path] of [
      ['get', '/v1/groups/private'],
      ['get', '/v1/groups/private/users'],
      ['delete', '/v1/groups/private'],
    ] as const) {
      const res = await http[method](path).set(otherKey);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.error.code).toBe('group_not_found');
    }
    const search = await http
      .post('/v1/search')
      .set(otherKey)
      .send({ image_base64: b64(fakeImage({ person: 'x' })), group_ids: ['private'] });
    expect(search.status).toBe(404);
    expect((await http.get('/v1/groups').set(otherKey)).body.items).toEqual([]);

    // keys: list, revoke, and a revoked key stops working
    const key2 = await http.post('/v1/apps/other/keys').set('x-api-key', ADMIN_KEY);
    expect(key2.status).toBe(201);
    const keys = await http.get('/v1/apps/other/keys').set('x-api-key', ADMIN_KEY);
    expect(keys.body.items).toHaveLength(2);
    expect(JSON.stringify(keys.body)).not.toContain('key_hash');
    expect((await http.delete(`/v1/apps/other/keys/${key2.body.key_id}`).set('x-api-key', ADMIN_KEY)).status).toBe(204);
    expect((await http.get('/v1/groups').set('x-api-key', key2.body.key)).status).toBe(401);
    expect((await http.post('/v1/apps/nope/keys').set('x-api-key', ADMIN_KEY)).body.error.code).toBe('app_not_found');
  });
});

describe('validation and errors', () => {
  it('names the bad field', async () => {
    const res = await http.post('/v1/groups').set(auth).send({ group_id: 'bad id!' });
    expect(res.status).toBe(400);
    expect(res.body.error).toEqual({ code: 'invalid_request', message: expect.stringContaining('group_id') });
    const missing = await http.post('/v1/groups').set(auth).send({});
    expect(missing.body.error.message).toContain('group_id');
    const search = await http
      .post('/v1/search')
      .set(auth)
      .send({ image_base64: b64(fakeImage()), group_ids: [], top_k: 500 });
    expect(search.status).toBe(400);
    expect(search.body.error.message).toMatch(/group_ids[\s\S]*top_k/);
    const noImage = await http.post('/v1/detect').set(auth).send({});
    expect(noImage.body.error).toEqual({ code: 'invalid_request', message: expect.stringContaining('image') });
    const badPath = await http.get('/v1/groups/x%20y').set(auth);
    expect(badPath.status).toBe(400);
  });

  it('maps body problems to their codes', async () => {
    const badJson = await http
      .post('/v1/groups')
      .set(auth)
      .set('content-type', 'application/json')
      .send('{"group_id":');
    expect(badJson.status).toBe(400);
    expect(badJson.body.error.code).toBe('invalid_json');
    const huge = await http
      .post('/v1/groups')
      .set(auth)
      .send({ group_id: 'g', pad: 'x'.repeat(70_000) });
    expect(huge.status).toBe(413);
    expect(huge.body.error.code).toBe('payload_too_large');
    const badB64 = await http.post('/v1/detect').set(auth).send({ image_base64: 'not base64 !!' });
    expect(badB64.status).toBe(400);
    expect(badB64.body.error.code).toBe('image_base64_invalid');
    const bigB64 = await http
      .post('/v1/detect')
      .set(auth)
      .send({ image_base64: 'A'.repeat(8000) });
    expect(bigB64.status).toBe(413);
    expect(bigB64.body.error.code).toBe('image_too_large');
    const bigFile = await http.post('/v1/detect').set(auth).attach('image', Buffer.alloc(5000, 1), 'big.jpg');
    expect(bigFile.status).toBe(413);
    expect(bigFile.body.error.code).toBe('image_too_large');
    const wrongField = await http
      .post('/v1/detect')
      .set(auth)
      .attach('photo', Buffer.from(fakeImage({ person: 'a' })), 'a.jpg');
    expect(wrongField.status).toBe(400);
    expect(wrongField.body.error.code).toBe('unexpected_file_field');
    const corrupt = await http.post('/v1/detect').set(auth).attach('image', Buffer.from('junk'), 'a.jpg');
    expect(corrupt.status).toBe(422);
    expect(corrupt.body.error.code).toBe('image_corrupt');
  });

  it('answers unknown routes with the error shape', async () => {
    const res = await http.get('/v1/nothing').set(auth);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
  });
});

describe('library', () => {
  it('enrols (multipart and base64), lists, paginates, copies and deletes', async () => {
    const enrol = await http
      .post('/v1/groups/team/users/alice/faces')
      .set(auth)
      .field('user_info', 'Alice A.')
      .field('quality_control', 'NORMAL')
      .attach('image', Buffer.from(fakeImage({ person: 'alice', variant: 1 })), 'alice.jpg');
    expect(enrol.status).toBe(201);
    expect(enrol.body).toMatchObject({
      group_id: 'team',
      user_id: 'alice',
      face_id: expect.any(String),
      box: expect.any(Object),
      quality: expect.any(Object),
    });
    expect(enrol.body).not.toHaveProperty('image_key');
    const enrol2 = await http
      .post('/v1/groups/team/users/alice/faces')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: 'alice', variant: 2 })) });
    expect(enrol2.status).toBe(201);
    const low = await http
      .post('/v1/groups/team/users/alice/faces')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: 'alice', level: 'LOW' })), quality_control: 'HIGH' });
    expect(low.status).toBe(422);
    expect(low.body.error.code).toBe('face_quality_too_low');
    const badQc = await http
      .post('/v1/groups/team/users/alice/faces')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: 'a' })), quality_control: 'MAX' });
    expect(badQc.body.error.message).toContain('quality_control');

    for (const u of ['bob', 'carol', 'dave']) {
      await http
        .post(`/v1/groups/team/users/${u}/faces`)
        .set(auth)
        .send({ image_base64: b64(fakeImage({ person: u })) })
        .expect(201);
    }
    const page1 = await http.get('/v1/groups/team/users?limit=2').set(auth);
    expect(page1.body.items.map((u: { user_id: string }) => u.user_id)).toEqual(['alice', 'bob']);
    const page2 = await http
      .get(`/v1/groups/team/users?limit=2&cursor=${encodeURIComponent(page1.body.next_cursor)}`)
      .set(auth);
    expect(page2.body.items.map((u: { user_id: string }) => u.user_id)).toEqual(['carol', 'dave']);
    expect(page2.body.next_cursor).toBeNull();
    expect((await http.get('/v1/groups/team/users?limit=0').set(auth)).status).toBe(400);

    const user = await http.get('/v1/groups/team/users/alice').set(auth);
    expect(user.body).toMatchObject({ user_id: 'alice', user_info: 'Alice A.' });
    expect(user.body.faces).toHaveLength(2);
    const patched = await http.patch('/v1/groups/team/users/alice').set(auth).send({ user_info: 'Alice B.' });
    expect(patched.body.user_info).toBe('Alice B.');

    const img = await http.get(`/v1/groups/team/users/alice/faces/${enrol.body.face_id}/image`).set(auth);
    expect(img.status).toBe(200);

    await http.post('/v1/groups').set(auth).send({ group_id: 'vip' }).expect(201);
    expect((await http.post('/v1/groups').set(auth).send({ group_id: 'vip' })).body.error.code).toBe('group_exists');
    const copy = await http.post('/v1/groups/team/users/alice/copy').set(auth).send({ to_group_id: 'vip' });
    expect(copy.status).toBe(201);
    expect(copy.body.faces).toHaveLength(2);

    const found = await http
      .post('/v1/search')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: 'alice', variant: 3 })), group_ids: ['team', 'vip'], top_k: 5 });
    expect(found.status).toBe(200);
    expect(
      found.body.results[0].matches
        .map((m: { group_id: string; user_id: string }) => `${m.group_id}/${m.user_id}`)
        .sort(),
    ).toEqual(['team/alice', 'vip/alice']);
    // Where the request's time went: the model, the vector store and the library records, each timed once or more;
    // `engine`, the part of `analyze` the engine reports as its own; `gateway`, the whole request in the gateway.
    const stages = Object.fromEntries(
      String(found.headers['server-timing'])
        .split(', ')
        .map((entry) => entry.split(';dur=')),
    );
    expect(Object.keys(stages).sort()).toEqual(['analyze', 'engine', 'gateway', 'library', 'vectors']);
    for (const ms of Object.values(stages)) expect(Number(ms)).toBeGreaterThanOrEqual(0);
    expect(Number(stages.engine)).toBeLessThanOrEqual(Number(stages.analyze));
    // Each figure is rounded to 0.1 ms.
    const inside = Number(stages.analyze) + Number(stages.vectors) + Number(stages.library);
    expect(Number(stages.gateway)).toBeGreaterThanOrEqual(inside - 0.2);

    expect((await http.delete(`/v1/groups/team/users/alice/faces/${enrol.body.face_id}`).set(auth)).status).toBe(204);
    expect((await http.get('/v1/groups/team/users/alice/faces').set(auth)).body.items).toHaveLength(1);
    const delUser = await http.delete('/v1/groups/team/users/alice').set(auth);
    expect(delUser.body).toMatchObject({ deleted_faces: 1 });
    expect((await http.get('/v1/groups/team/users/alice').set(auth)).body.error.code).toBe('user_not_found');
    const after = await http
      .post('/v1/search')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: 'alice', variant: 3 })), group_ids: ['team'] });
    expect(after.body.results[0].matches).toEqual([]);
    const delGroup = await http.delete('/v1/groups/vip').set(auth);
    expect(delGroup.body).toMatchObject({ group_id: 'vip', deleted_faces: 2 });
  });

  it('detects, compares and searches M:N over multipart with string fields', async () => {
    await http
      .post('/v1/groups/club/users/erin/faces')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: 'erin' })) })
      .expect(201);
    const detect = await http
      .post('/v1/detect')
      .set(auth)
      .field('max_faces', '1')
      .attach('image', Buffer.from(fakeImage({ person: 'a' }, { person: 'b' })), 'x.jpg');
    expect(detect.status).toBe(200);
    expect(detect.body).toMatchObject({ face_num: 1, image: { width: 640, height: 480 } });
    const search = await http
      .post('/v1/search')
      .set(auth)
      .field('group_ids', 'club')
      .field('max_faces', '2')
      .attach(
        'image',
        Buffer.from(fakeImage({ person: 'erin', variant: 1, size: 200 }, { person: 'zed', size: 50 })),
        'x.jpg',
      );
    expect(search.status).toBe(200);
    expect(search.body.results).toHaveLength(2);
    expect(search.body.results[0].matches[0]).toMatchObject({ user_id: 'erin', group_id: 'club' });
    expect(search.body.results[1].matches).toEqual([]);
    const cmp = await http
      .post('/v1/compare')
      .set(auth)
      .attach('image_a', Buffer.from(fakeImage({ person: 'erin', variant: 4 })), 'a.jpg')
      .attach('image_b', Buffer.from(fakeImage({ person: 'erin', variant: 5 })), 'b.jpg');
    expect(cmp.status).toBe(200);
    expect(cmp.body).toMatchObject({
      match: true,
      threshold: 80,
      score: expect.any(Number),
      similarity: expect.any(Number),
    });
    const cmpMissing = await http
      .post('/v1/compare')
      .set(auth)
      .send({ image_a_base64: b64(fakeImage({ person: 'x' })) });
    expect(cmpMissing.body.error.message).toContain('image_b');
  });
});

describe('imports', () => {
  it('runs a multipart import with files and a JSON items field to completion', async () => {
    const items = [
      { user_id: 'p1', file: 'p1.jpg' },
      { user_id: 'p2', file: 'p2.jpg' },
      { user_id: 'p3', file: 'broken.jpg' },
      { user_id: 'p4', image_base64: b64(fakeImage({ person: 'p4' })) },
    ];
    const res = await http
      .post('/v1/imports')
      .set(auth)
      .field('group_id', 'bulk')
      .field('items', JSON.stringify(items))
      .attach('files', Buffer.from(fakeImage({ person: 'p1' })), 'p1.jpg')
      .attach('files', Buffer.from(fakeImage({ person: 'p2' })), 'p2.jpg')
      .attach('files', Buffer.from('garbage'), 'broken.jpg');
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ import_id: expect.any(String), status: 'queued', total: 4 });
    const done = await pollImport(res.body.import_id);
    expect(done).toMatchObject({ status: 'completed', total: 4, succeeded: 3, failed: 1, progress: 1 });
    const failed = await http.get(`/v1/imports/${res.body.import_id}/items?status=failed`).set(auth);
    expect(failed.body.items).toEqual([
      expect.objectContaining({
        index: 2,
        user_id: 'p3',
        name: 'broken.jpg',
        status: 'failed',
        error: expect.objectContaining({ code: 'image_corrupt' }),
      }),
    ]);
    const all = await http.get(`/v1/imports/${res.body.import_id}/items?limit=2`).set(auth);
    expect(all.body.items).toHaveLength(2);
    expect(all.body.next_cursor).toBeTruthy();
    expect((await http.get(`/v1/imports/${res.body.import_id}/items?status=weird`).set(auth)).status).toBe(400);
    expect((await http.get(`/v1/imports/${res.body.import_id}`).set('x-api-key', ADMIN_KEY)).status).toBe(403);
  });

  it('refuses items that point to missing files', async () => {
    const res = await http
      .post('/v1/imports')
      .set(auth)
      .field('group_id', 'bulk')
      .field('items', JSON.stringify([{ user_id: 'p1', file: 'nope.jpg' }]));
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain('items[0].file');
    const both = await http
      .post('/v1/imports')
      .set(auth)
      .send({ group_id: 'bulk', items: [{ user_id: 'x' }] });
    expect(both.status).toBe(400);
    expect(both.body.error.message).toContain('items[0]');
  });

  it('takes uploads through signed gateway URLs', async () => {
    const up = await http.post('/v1/uploads').set(auth);
    expect(up.status).toBe(201);
    expect(up.body).toMatchObject({
      object_key: expect.stringMatching(/^uploads\/default\//),
      method: 'PUT',
      upload_url: expect.stringContaining('token='),
    });
    const url = new URL(up.body.upload_url);
    const path = url.pathname + url.search;
    const tampered = path.replace(/token=[^&]+/, 'token=1.AAAA');
    expect(
      (
        await http
          .put(tampered)
          .set('content-type', 'image/jpeg')
          .send(Buffer.from(fakeImage({ person: 'up' })))
      ).status,
    ).toBe(403);
    const put = await http
      .put(path)
      .set('content-type', 'image/jpeg')
      .send(Buffer.from(fakeImage({ person: 'up' })));
    expect(put.status).toBe(204);
    const imp = await http
      .post('/v1/imports')
      .set(auth)
      .send({ group_id: 'uploaded', items: [{ user_id: 'up', object_key: up.body.object_key }] });
    expect(imp.status).toBe(202);
    expect(await pollImport(imp.body.import_id)).toMatchObject({ status: 'completed', succeeded: 1 });
  });

  it('cancels', async () => {
    const res = await http.delete('/v1/imports/00000000-0000-0000-0000-000000000000').set(auth);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('import_not_found');
  });
});

describe('operations', () => {
  it('serves OpenAPI at /openapi.json and /docs', async () => {
    const doc = await http.get('/openapi.json');
    expect(doc.status).toBe(200);
    for (const path of [
      '/v1/groups',
      '/v1/search',
      '/v1/compare',
      '/v1/detect',
      '/v1/imports',
      '/v1/imports/{import_id}/items',
      '/v1/uploads',
      '/v1/apps/{app_id}/keys',
    ]) {
      expect(doc.body.paths, path).toHaveProperty([path]);
    }
    expect(doc.body.components.securitySchemes).toHaveProperty('bearer');
    const ui = await http.get('/docs');
    expect(ui.status).toBe(200);
    expect(ui.text).toContain('swagger');
  });

  it('reports health and metrics', async () => {
    expect((await http.get('/health/live')).body).toEqual({ status: 'ok' });
    const ready = await http.get('/health/ready');
    expect(ready.status).toBe(200);
    expect(Object.keys(ready.body.details).sort()).toEqual(['blobs', 'engine', 'library', 'queues', 'vectors']);
    const metrics = await http.get('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('http_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/groups"');
    expect(metrics.text).toMatch(/facesearch_faces_indexed_total \d+/);
    expect(metrics.text).toContain('facesearch_queue_depth{queue="imports"}');
    expect(metrics.text).toContain('facesearch_queue_depth{queue="index"}');
    // The Server-Timing stages of the detect, compare and search requests answered above, per route.
    for (const route of ['detect', 'compare', 'search']) {
      for (const stage of ['analyze', 'gateway']) {
        expect(metrics.text, `${route} ${stage}`).toMatch(
          new RegExp(`facesearch_request_stage_seconds_count\\{route="${route}",stage="${stage}"\\} [1-9]`),
        );
      }
    }
    expect(metrics.text).toMatch(/facesearch_request_stage_seconds_count\{route="search",stage="vectors"\} [1-9]/);
    // The import jobs this embedded gateway ran itself: broken.jpg failed for good, the others went through.
    expect(metrics.text).toMatch(/facesearch_job_attempts_total\{queue="imports",outcome="succeeded"\} [1-9]/);
    expect(metrics.text).toMatch(/facesearch_job_attempts_total\{queue="index",outcome="succeeded"\} [1-9]/);
    expect(metrics.text).toMatch(/facesearch_jobs_failed_total\{queue="imports"\} [1-9]/);
    expect(metrics.text).toMatch(/facesearch_job_duration_seconds_count\{queue="imports",outcome="error"\} [1-9]/);
  });
});

describe('rate limit', () => {
  it('answers 429 past RATE_LIMIT_PER_MINUTE per key', async () => {
    const limited = await startTestGateway({ RATE_LIMIT_PER_MINUTE: '3' }, new FakeAnalyzer());
    try {
      const h = request(limited.app.getHttpServer());
      const codes: number[] = [];
      for (let i = 0; i < 5; i++) codes.push((await h.get('/v1/groups').set(auth)).status);
      expect(codes).toEqual([200, 200, 200, 429, 429]);
      expect((await h.get('/v1/groups').set(auth)).body.error.code).toBe('rate_limited');
    } finally {
      await limited.dispose();
    }
  });
});
