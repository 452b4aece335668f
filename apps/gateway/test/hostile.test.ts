/**
 * Hostile input against the embedded gateway: malformed and malicious images, multipart and JSON bodies, ids and
 * strings. Every request must get a 4xx with a stable `error.code` (never a 5xx), and the gateway must stay ready
 * and keep serving normal requests afterwards.
 *
 * Image decoding is exercised with the real engine (skipped with the reason when the models are absent); the
 * request-structure cases run on a fake analyzer, so they need no models.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { join, resolve } from 'node:path';
import { brotliCompressSync, crc32, gzipSync } from 'node:zlib';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeAnalyzer, fakeImage } from '../../../libs/core/test/fakes';
import { ADMIN_KEY, DEFAULT_KEY, startTestGateway, type TestGateway } from './helpers';

const TESTDATA = resolve(__dirname, '../../../../shared/testdata');
const BAD = join(TESTDATA, 'bad');
const MODELS = resolve(__dirname, '../../../models');
const haveModels = existsSync(MODELS) && readdirSync(MODELS).some((f) => f.endsWith('.onnx'));
const engineSkip = !haveModels ? `no .onnx models in ${MODELS} (run pnpm models)` : null;
if (engineSkip) console.warn(`[hostile] real-engine cases skipped: ${engineSkip}`);
const badSkip = !existsSync(BAD) ? `bad test files not found at ${BAD}` : null;
if (badSkip) console.warn(`[hostile] shared bad-file cases skipped: ${badSkip}`);

const auth = { 'x-api-key': DEFAULT_KEY };
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
type Res = { status: number; body: { error?: { code?: unknown; message?: unknown } }; text?: string };

/** A refusal: a 4xx with the error shape and a snake_case code. */
function expectRefused(res: Res, what: string, code?: string | RegExp): void {
  expect(res.status, `${what}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`).toBeGreaterThanOrEqual(400);
  expect(res.status, `${what}: ${JSON.stringify(res.body).slice(0, 300)}`).toBeLessThan(500);
  expect(res.body?.error?.code, `${what}: ${JSON.stringify(res.body).slice(0, 300)}`).toMatch(/^[a-z][a-z0-9_]*$/);
  expect(typeof res.body.error?.message, what).toBe('string');
  if (code instanceof RegExp) expect(res.body.error?.code, what).toMatch(code);
  else if (code) expect(res.body.error?.code, what).toBe(code);
}

/**
 * A POST of exactly these bytes, with no Content-Type unless given (supertest adds one, and re-encodes a Buffer sent
 * with Content-Encoding).
 */
function postBytes(base: string, path: string, headers: Record<string, string>, body: Buffer): Promise<Res> {
  return new Promise((resolvePromise, reject) => {
    const req = httpRequest(
      `${base}${path}`,
      { method: 'POST', headers: { ...auth, ...headers, 'content-length': String(body.length) } },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

// ---- images whose headers lie about their size ---------------------------------------------------------------

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body) >>> 0);
  return Buffer.concat([len, body, crc]);
}

/** A valid PNG header (IHDR with a correct CRC) claiming width x height, with a few bytes of (bogus) data. */
export function pngClaiming(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01])),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A baseline JPEG header (SOI, DQT-less SOF0) claiming width x height (each at most 65535). */
export function jpegClaiming(width: number, height: number): Buffer {
  const sof = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, 0, 0, 0, 0, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
  sof.writeUInt16BE(height, 5);
  sof.writeUInt16BE(width, 7);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), sof, Buffer.from([0xff, 0xd9])]);
}

/** A GIF89a logical screen and one image descriptor claiming width x height (each at most 65535). */
export function gifClaiming(width: number, height: number): Buffer {
  const screen = Buffer.alloc(7);
  screen.writeUInt16LE(width, 0);
  screen.writeUInt16LE(height, 2);
  const descriptor = Buffer.alloc(10);
  descriptor[0] = 0x2c;
  descriptor.writeUInt16LE(width, 5);
  descriptor.writeUInt16LE(height, 7);
  return Buffer.concat([
    Buffer.from('GIF89a', 'latin1'),
    screen,
    descriptor,
    Buffer.from([0x02, 0x02, 0x44, 0x01, 0x00, 0x3b]),
  ]);
}

/** An extended WebP (VP8X) claiming a canvas of width x height (each at most 16777216). */
export function webpClaiming(width: number, height: number): Buffer {
  const vp8x = Buffer.alloc(10);
  vp8x.writeUIntLE(width - 1, 4, 3);
  vp8x.writeUIntLE(height - 1, 7, 3);
  const chunk = Buffer.concat([Buffer.from('VP8X', 'latin1'), le32(10), vp8x]);
  return Buffer.concat([Buffer.from('RIFF', 'latin1'), le32(4 + chunk.length), Buffer.from('WEBP', 'latin1'), chunk]);
}

function le32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

const ABSURD: Array<[string, Buffer]> = [
  ['png 65535x65535', pngClaiming(65535, 65535)],
  ['png 2147483647x2147483647', pngClaiming(0x7fffffff, 0x7fffffff)],
  ['png 1x4000000000', pngClaiming(1, 4_000_000_000)],
  ['jpeg 65535x65535', jpegClaiming(65535, 65535)],
  ['gif 65535x65535', gifClaiming(65535, 65535)],
  ['webp 16777216x16777216', webpClaiming(16_777_216, 16_777_216)],
  ['webp 65535x65535', webpClaiming(65535, 65535)],
];

// ---- helpers for the image endpoints -------------------------------------------------------------------------

type Http = ReturnType<typeof request>;

/** Listens on a free loopback port: the base URL and a supertest client for it. */
async function listenOnLoopback(gw: TestGateway): Promise<{ base: string; http: Http }> {
  await gw.app.listen(0, '127.0.0.1');
  const base = `http://127.0.0.1:${(gw.app.getHttpServer().address() as AddressInfo).port}`;
  return { base, http: request(base) };
}
/** Sends one image to every image-taking endpoint as a multipart file and as base64; returns the responses. */
async function everyImageEndpoint(http: Http, bytes: Buffer, name: string): Promise<Array<[string, Res]>> {
  const out: Array<[string, Res]> = [];
  out.push(['enrol', await http.post('/v1/groups/hostile/users/u1/faces').set(auth).attach('image', bytes, name)]);
  out.push([
    'enrol base64',
    await http
      .post('/v1/groups/hostile/users/u1/faces')
      .set(auth)
      .send({ image_base64: b64(bytes) }),
  ]);
  out.push(['detect', await http.post('/v1/detect').set(auth).attach('image', bytes, name)]);
  out.push([
    'detect base64',
    await http
      .post('/v1/detect')
      .set(auth)
      .send({ image_base64: b64(bytes) }),
  ]);
  out.push([
    'compare',
    await http.post('/v1/compare').set(auth).attach('image_a', bytes, name).attach('image_b', bytes, name),
  ]);
  out.push([
    'compare base64',
    await http
      .post('/v1/compare')
      .set(auth)
      .send({ image_a_base64: b64(bytes), image_b_base64: b64(bytes) }),
  ]);
  out.push([
    'search',
    await http.post('/v1/search').set(auth).field('group_ids', 'hostile').attach('image', bytes, name),
  ]);
  out.push([
    'search base64',
    await http
      .post('/v1/search')
      .set(auth)
      .send({ image_base64: b64(bytes), group_ids: ['hostile'] }),
  ]);
  return out;
}

async function pollImport(http: Http, id: string) {
  for (let i = 0; i < 600; i++) {
    const res = await http.get(`/v1/imports/${id}`).set(auth);
    if (!['queued', 'running'].includes(res.body.status)) return res.body;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`import ${id} did not finish`);
}

/** Import a set of images as multipart files, as base64 items and as pre-uploaded objects; returns the items. */
async function importAll(http: Http, images: Array<[string, Buffer]>) {
  const results: Array<{ name: string; status: string; error: { code: string } | null }> = [];
  // multipart files
  let req = http.post('/v1/imports').set(auth).field('group_id', 'hostile-import');
  const items = images.map(([name], i) => ({ user_id: `m${i}`, file: `f${i}`, name: `multipart ${name}` }));
  for (const [i, [, bytes]] of images.entries()) req = req.attach('files', bytes, `f${i}`);
  const multipart = await req.field('items', JSON.stringify(items));
  expect(multipart.status, JSON.stringify(multipart.body)).toBe(202);
  // base64 items (zero-byte images cannot be sent as base64: refused upfront, tested elsewhere)
  const b64Images = images.filter(([, bytes]) => bytes.length > 0);
  const json = await http
    .post('/v1/imports')
    .set(auth)
    .send({
      group_id: 'hostile-import',
      items: b64Images.map(([name, bytes], i) => ({ user_id: `b${i}`, image_base64: b64(bytes), name: `b64 ${name}` })),
    });
  expect(json.status, JSON.stringify(json.body)).toBe(202);
  // pre-uploaded through the gateway's signed upload URL
  const uploaded: Array<{ user_id: string; object_key: string; name: string }> = [];
  for (const [i, [name, bytes]] of b64Images.entries()) {
    const ticket = await http.post('/v1/uploads').set(auth);
    expect(ticket.status).toBe(201);
    const url = new URL(ticket.body.upload_url);
    const put = await http
      .put(url.pathname + url.search)
      .set('content-type', 'application/octet-stream')
      .send(bytes);
    expect(put.status, `upload ${name}: ${JSON.stringify(put.body)}`).toBe(204);
    uploaded.push({ user_id: `o${i}`, object_key: ticket.body.object_key, name: `upload ${name}` });
  }
  const objects = await http.post('/v1/imports').set(auth).send({ group_id: 'hostile-import', items: uploaded });
  expect(objects.status, JSON.stringify(objects.body)).toBe(202);

  for (const id of [multipart.body.import_id, json.body.import_id, objects.body.import_id]) {
    const done = await pollImport(http, id);
    // An import whose every item failed ends 'failed'; otherwise 'completed'.
    expect(done.status).toBe(done.succeeded === 0 ? 'failed' : 'completed');
    expect(done.succeeded + done.failed).toBe(done.total);
    const page = await http.get(`/v1/imports/${id}/items?limit=1000`).set(auth);
    results.push(...page.body.items);
  }
  return results;
}

async function expectHealthyAndWorking(http: Http, image: Buffer): Promise<void> {
  const ready = await http.get('/health/ready');
  expect(ready.status, JSON.stringify(ready.body)).toBe(200);
  expect(ready.body.status).toBe('ok');
  const normal = await http.post('/v1/detect').set(auth).attach('image', image, 'ok.jpg');
  expect(normal.status, JSON.stringify(normal.body)).toBe(200);
  expect(normal.body.face_num).toBeGreaterThanOrEqual(1);
}

// ---- the real engine: images --------------------------------------------------------------------------------

describe.skipIf(engineSkip !== null)('hostile images (real engine)', () => {
  let gw: TestGateway;
  let http: Http;
  const goodPhoto = () =>
    existsSync(join(TESTDATA, 'faces/obama/1.jpg'))
      ? readFileSync(join(TESTDATA, 'faces/obama/1.jpg'))
      : readFileSync(resolve(__dirname, '../../../.fixtures/face-api-sample2.jpg'));

  beforeAll(async () => {
    gw = await startTestGateway({ IMPORT_CONCURRENCY: '1', MAX_IMAGE_PIXELS: '40000000' });
    http = request(gw.app.getHttpServer());
    await http.post('/v1/groups').set(auth).send({ group_id: 'hostile' }).expect(201);
  });
  afterAll(async () => {
    await gw?.dispose();
  });

  it.skipIf(badSkip !== null)(
    'answers every file of testdata/bad on every image endpoint without a 5xx',
    async () => {
      const files = readdirSync(BAD).sort();
      /** The files that are not images we can use, and the code each must get. */
      const refused: Record<string, string> = {
        'zero_bytes.jpg': 'image_empty',
        'text_renamed.jpg': 'image_unsupported_format',
        'huge_header_only_100000x100000.png': 'image_too_many_pixels',
      };
      for (const file of files) {
        const bytes = readFileSync(join(BAD, file));
        for (const [endpoint, res] of await everyImageEndpoint(http, bytes, file)) {
          const what = `${endpoint} ${file}`;
          const code = refused[file];
          // Base64 of zero bytes is the empty string: refused as an empty image too.
          if (code) expectRefused(res, what, code);
          else if (res.status >= 400) expectRefused(res, what, /^(image_|no_face_detected)/);
          else expect(res.status, what).toBeLessThan(300);
        }
      }
      const items = await importAll(
        http,
        files.map((f) => [f, readFileSync(join(BAD, f))]),
      );
      for (const item of items) {
        const file = item.name.replace(/^(multipart|b64|upload) /, '');
        if (refused[file]) {
          expect(item.status, item.name).toBe('failed');
          expect(item.error?.code, item.name).toBe(refused[file]);
        } else if (item.status === 'failed') {
          expect(item.error?.code, item.name).toMatch(/^(image_|no_face_detected)/);
        } else {
          expect(item.status, item.name).toBe('succeeded');
        }
      }
      await expectHealthyAndWorking(http, goodPhoto());
    },
    300_000,
  );

  it('refuses images whose header claims absurd dimensions before decoding them', async () => {
    for (const [name, bytes] of ABSURD) {
      for (const [endpoint, res] of await everyImageEndpoint(http, bytes, `${name}.img`)) {
        expectRefused(res, `${endpoint} ${name}`, /^image_(too_many_pixels|corrupt|unsupported_format)$/);
      }
    }
    // The ones sharp can read the header of are refused for their pixel count, not as corrupt.
    const png = await http.post('/v1/detect').set(auth).attach('image', ABSURD[0][1], 'a.png');
    expect(png.body.error.code).toBe('image_too_many_pixels');
    expect(png.status).toBe(413);
    const items = await importAll(http, ABSURD);
    for (const item of items) {
      expect(item.status, item.name).toBe('failed');
      expect(item.error?.code, item.name).toMatch(/^image_/);
    }
    await expectHealthyAndWorking(http, goodPhoto());
  }, 300_000);
});

// ---- request structure, on the fake analyzer ------------------------------------------------------------------

describe('hostile requests (fake analyzer)', () => {
  let gw: TestGateway;
  let http: Http;
  let base: string;
  const good = () => Buffer.from(fakeImage({ person: 'normal' }));

  beforeAll(async () => {
    gw = await startTestGateway(
      { MAX_IMAGE_BYTES: '65536', MAX_REQUEST_BYTES: '1048576', MAX_IMAGE_PIXELS: '100000' },
      new FakeAnalyzer(),
    );
    ({ base, http } = await listenOnLoopback(gw));
    await http.post('/v1/groups').set(auth).send({ group_id: 'hostile' }).expect(201);
    await http
      .post('/v1/groups/hostile/users/alice/faces')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: 'alice' })), user_info: 'Alice' })
      .expect(201);
  });
  afterAll(async () => {
    await gw?.dispose();
  });

  async function expectStillServing(): Promise<void> {
    const ready = await http.get('/health/ready');
    expect(ready.status, JSON.stringify(ready.body)).toBe(200);
    const search = await http
      .post('/v1/search')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: 'alice', variant: 2 })), group_ids: ['hostile'] });
    expect(search.status, JSON.stringify(search.body)).toBe(200);
    expect(search.body.results[0].matches[0]).toMatchObject({ user_id: 'alice', user_info: 'Alice' });
  }

  it('refuses multipart abuse: many parts, many files, huge names, nameless parts, nested names', async () => {
    const boundary = 'XhostileX';
    const multipart = (parts: string[]) =>
      `${parts.map((p) => `--${boundary}\r\n${p}\r\n`).join('')}--${boundary}--\r\n`;
    const send = (path: string, body: string | Buffer) =>
      http
        .post(path)
        .set(auth)
        .set('content-type', `multipart/form-data; boundary=${boundary}`)
        .send(typeof body === 'string' ? Buffer.from(body) : body);
    const field = (name: string, value: string) => `Content-Disposition: form-data; name="${name}"\r\n\r\n${value}`;
    const file = (name: string, filename: string, data: string) =>
      `Content-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: image/jpeg\r\n\r\n${data}`;

    // 10k files in one request: the file count limit answers, with the rest of the body unread.
    const tenK = multipart(Array.from({ length: 10_000 }, (_, i) => file('files', `f${i}.jpg`, 'x')));
    for (const path of ['/v1/detect', '/v1/imports']) {
      expectRefused(await send(path, tenK), `10k files to ${path}`, /^(too_many_files|payload_too_large)$/);
    }
    // 20k text fields
    const manyFields = multipart(Array.from({ length: 20_000 }, (_, i) => field(`f${i}`, 'v')));
    expectRefused(await send('/v1/detect', manyFields), 'many fields', 'payload_too_large');
    // a field name of 100 kB, and a file field name of 100 kB
    expectRefused(await send('/v1/detect', multipart([field('n'.repeat(100_000), 'v')])), 'huge field name');
    expectRefused(
      await send('/v1/detect', multipart([file('n'.repeat(100_000), 'a.jpg', 'x')])),
      'huge file field name',
    );
    // a part without a name: ignored, so the image is missing
    const nameless = multipart(['Content-Disposition: form-data\r\n\r\nvalue', file('image', 'a.jpg', '{')]);
    expectRefused(await send('/v1/detect', nameless), 'nameless part');
    expectRefused(
      await send('/v1/detect', multipart(['Content-Type: text/plain\r\n\r\nno disposition at all'])),
      'part without a disposition',
    );
    // deeply nested and prototype-polluting field names
    const nested = `a${'[x]'.repeat(5000)}`;
    expectRefused(await send('/v1/detect', multipart([field(nested, '1')])), 'deeply nested field name');
    for (const name of ['__proto__[polluted]', 'constructor[prototype][polluted]', 'image_base64[__proto__][x]']) {
      const res = await send('/v1/detect', multipart([field(name, 'yes')]));
      expectRefused(res, `field ${name}`);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // a file under a field the route does not take, and two images for one field
    expectRefused(await send('/v1/detect', multipart([file('other', 'a.jpg', 'x')])), 'unexpected file field');
    expectRefused(
      await send('/v1/detect', multipart([file('image', 'a.jpg', 'x'), file('image', 'b.jpg', 'y')])),
      'two images',
    );
    // an image both as a file and as base64 (the base64 broken): refused, not one silently preferred
    const both = await send(
      '/v1/detect',
      multipart([field('image_base64', '!!!not base64'), file('image', 'a.jpg', 'x')]),
    );
    expectRefused(both, 'file and image_base64', 'invalid_request');
    expect(both.body.error?.message).toMatch(/not both/);
    // malformed multipart: no closing boundary, garbage, boundary missing from the header
    expectRefused(await send('/v1/detect', `--${boundary}\r\n${field('a', 'b')}`), 'unterminated multipart');
    expectRefused(await send('/v1/detect', 'garbage'), 'garbage multipart');
    expectRefused(
      await http.post('/v1/detect').set(auth).set('content-type', 'multipart/form-data').send('--x\r\n'),
      'multipart without boundary',
    );
    // text fields of a multipart request with huge values
    const bigValue = multipart([field('user_info', 'x'.repeat(500_000)), file('image', 'a.jpg', '{"faces":[]}')]);
    expectRefused(await send('/v1/groups/hostile/users/bob/faces', bigValue), 'huge user_info field');
    await expectStillServing();
  }, 120_000);

  it("checks a list's length before its items: sparse multipart lists and huge JSON arrays", async () => {
    // Item by item, zod would first build an error for each of a million holes (seconds and ~1 GB; ten million
    // killed the process): the refusal must name the length, not the items.
    const boundary = 'XlistX';
    const fields = (pairs: [string, string][]) =>
      Buffer.from(
        `${pairs.map(([n, v]) => `--${boundary}\r\nContent-Disposition: form-data; name="${n}"\r\n\r\n${v}\r\n`).join('')}--${boundary}--\r\n`,
      );
    const multipart = (path: string, pairs: [string, string][]) =>
      http.post(path).set(auth).set('content-type', `multipart/form-data; boundary=${boundary}`).send(fields(pairs));
    const tooLong = (max: number) => new RegExp(`expected array to have <=${max} items`);
    const search = await multipart('/v1/search', [
      ['image_base64', b64(good())],
      ['group_ids[1000000]', 'hostile'],
    ]);
    expectRefused(search, 'sparse group_ids', 'invalid_request');
    expect(search.body.error.message).toMatch(tooLong(100));
    const imports = await multipart('/v1/imports', [
      ['group_id', 'hostile'],
      ['items[1000000][user_id]', 'a'],
    ]);
    expectRefused(imports, 'sparse items', 'invalid_request');
    expect(imports.body.error.message).toMatch(tooLong(10_000));
    const dense = await http
      .post('/v1/search')
      .set(auth)
      .send({ image_base64: b64(good()), group_ids: Array(200_000).fill(1) });
    expectRefused(dense, 'a dense array of 200k numbers', 'invalid_request');
    expect(dense.body.error.message).toMatch(tooLong(100));
    await expectStillServing();
  });

  it('refuses wrong content types with 415, and JSON sent as multipart', async () => {
    const img = good();
    for (const [type, body] of [
      ['text/plain', img],
      ['application/xml', Buffer.from('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')],
      ['image/jpeg', img],
      ['application/x-www-form-urlencoded', Buffer.from('image_base64=abc')],
      ['application/octet-stream', img],
    ] as const) {
      for (const path of [
        '/v1/detect',
        '/v1/search',
        '/v1/compare',
        '/v1/imports',
        '/v1/groups/hostile/users/u/faces',
      ]) {
        const res = await http.post(path).set(auth).set('content-type', type).send(body);
        expectRefused(res, `${type} to ${path}`, 'unsupported_media_type');
        expect(res.status).toBe(415);
      }
    }
    const noType = await postBytes(base, '/v1/detect', {}, img);
    expectRefused(noType, 'no content type');
    const jsonAsMultipart = await http
      .post('/v1/detect')
      .set(auth)
      .set('content-type', 'multipart/form-data; boundary=abc')
      .send(JSON.stringify({ image_base64: b64(img) }));
    expectRefused(jsonAsMultipart, 'JSON as multipart', /^(invalid_multipart|invalid_request)$/);
    const patch = await http
      .patch('/v1/groups/hostile/users/alice')
      .set(auth)
      .set('content-type', 'text/plain')
      .send('user_info=x');
    expectRefused(patch, 'PATCH text/plain', 'unsupported_media_type');
    // Multipart to a route that takes JSON only: nothing would read it, and the route would run on an empty body.
    for (const [method, path, key] of [
      ['post', '/v1/admin/reindex', ADMIN_KEY],
      ['post', '/v1/groups', DEFAULT_KEY],
      ['patch', '/v1/groups/hostile/users/alice', DEFAULT_KEY],
      ['post', '/v1/groups/hostile/users/alice/copy', DEFAULT_KEY],
      ['post', '/v1/uploads', DEFAULT_KEY],
    ] as const) {
      const res = await http[method](path).set('x-api-key', key).field('all', 'true').field('group_id', 'mp');
      expectRefused(res, `multipart to ${method} ${path}`, 'unsupported_media_type');
      expect(res.status).toBe(415);
    }
    expect((await http.get('/v1/groups/mp').set(auth)).status).toBe(404);
    await expectStillServing();
  });

  it('refuses JSON bombs: deep nesting, huge arrays, 1e999, __proto__ keys, wrong types', async () => {
    const sendRaw = (path: string, text: string) =>
      http.post(path).set(auth).set('content-type', 'application/json').send(text);
    const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
    expectRefused(await sendRaw('/v1/detect', deep), 'deep arrays');
    const deepObj = `{"image_base64":"x","a":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`;
    expectRefused(await sendRaw('/v1/detect', deepObj), 'deep objects');
    const deepInField = `{"group_ids":${'['.repeat(50_000)}"a"${']'.repeat(50_000)},"image_base64":"${b64(good())}"}`;
    expectRefused(await sendRaw('/v1/search', deepInField), 'deep group_ids', 'invalid_request');
    const hugeArray = JSON.stringify({ image_base64: b64(good()), group_ids: Array(200_000).fill('g') });
    expectRefused(await sendRaw('/v1/search', hugeArray), 'huge group_ids array', 'invalid_request');
    const tooBig = JSON.stringify({ image_base64: b64(good()), group_ids: Array(400_000).fill('gg') });
    expectRefused(await sendRaw('/v1/search', tooBig), 'body over MAX_REQUEST_BYTES', 'payload_too_large');
    for (const n of ['1e999', '-1e999', '1e-999', '9007199254740993', '-0', '1.5']) {
      const res = await sendRaw('/v1/search', `{"image_base64":"${b64(good())}","group_ids":["hostile"],"top_k":${n}}`);
      expectRefused(res, `top_k ${n}`, 'invalid_request');
    }
    expectRefused(
      await sendRaw(
        '/v1/compare',
        `{"image_a_base64":"${b64(good())}","image_b_base64":"${b64(good())}","match_threshold":1e999}`,
      ),
      'match_threshold 1e999',
      'invalid_request',
    );
    // Only numbers, or decimal text (multipart, query): nothing else is taken for one.
    for (const n of ['true', '[3]', '"0x10"', '"1e1"', '""', 'null', '" "']) {
      const res = await sendRaw('/v1/search', `{"image_base64":"${b64(good())}","group_ids":["hostile"],"top_k":${n}}`);
      expectRefused(res, `top_k ${n}`, 'invalid_request');
      expect(res.body.error?.message, `top_k ${n}`).toMatch(/expected number/);
    }
    expect((await http.get('/v1/groups?limit=0x10').set(auth)).status).toBe(400);
    expect((await http.get('/v1/groups?limit=16').set(auth)).status).toBe(200);
    const decimalText = await http
      .post('/v1/search')
      .set(auth)
      .field('group_ids', 'hostile')
      .field('top_k', '3')
      .attach('image', good(), 'a.jpg');
    expect(decimalText.status, JSON.stringify(decimalText.body)).toBe(200);
    expectRefused(await sendRaw('/v1/detect', '{"image_base64":"x","max_faces":NaN}'), 'NaN', 'invalid_json');
    expectRefused(await sendRaw('/v1/detect', '{"a":"\\ud800"'), 'bad JSON', 'invalid_json');
    expectRefused(await sendRaw('/v1/detect', '"just a string"'), 'a JSON string body');
    expectRefused(await sendRaw('/v1/detect', 'null'), 'a JSON null body');
    expectRefused(await sendRaw('/v1/detect', '[1,2,3]'), 'a JSON array body');
    expectRefused(await sendRaw('/v1/detect', '12345'), 'a JSON number body');
    for (const body of [
      '{"__proto__":{"polluted":true},"group_id":"protoA"}',
      '{"constructor":{"prototype":{"polluted":true}},"group_id":"protoB"}',
    ]) {
      const res = await sendRaw('/v1/groups', body);
      expect(res.status, body).toBe(201); // unknown keys are dropped, never merged into anything
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expectRefused(await sendRaw('/v1/groups', '{"__proto__":{"group_id":"x"}}'), 'group_id hidden in __proto__');
    for (const [path, body] of [
      ['/v1/detect', { image_base64: 123 }],
      ['/v1/detect', { image_base64: ['a'] }],
      ['/v1/detect', { image_base64: { $ne: null } }],
      ['/v1/groups', { group_id: ['a', 'b'] }],
      ['/v1/groups', { group_id: { toString: 'x' } }],
      ['/v1/search', { image_base64: b64(good()), group_ids: 'hostile', top_k: '5; DROP TABLE' }],
      ['/v1/imports', { group_id: 'g', items: 'not an array' }],
      ['/v1/imports', { group_id: 'g', items: [{ user_id: 'u', image_base64: 'AAAA', file: 'x' }] }],
      ['/v1/imports', { group_id: 'g', items: Array(10_001).fill({ user_id: 'u', object_key: 'k' }) }],
    ] as const) {
      expectRefused(
        await http
          .post(path)
          .set(auth)
          .send(body as object),
        `${path} ${JSON.stringify(body).slice(0, 80)}`,
      );
    }
    await expectStillServing();
  });

  it('refuses ids with path separators, dot segments, NUL and unicode tricks everywhere', async () => {
    const tricks = [
      'a/b',
      'a\\b',
      '..',
      '.',
      '../../etc/passwd',
      '..%2F..%2Fetc',
      'a\u0000b',
      'a\nb',
      'a b',
      '\u202Eevil',
      'ali\u200Bce', // zero-width space
      '\uFEFFalice', // BOM
      'аlice', // Cyrillic а
      'Ａlice', // fullwidth A
      'cafe\u0301', // NFD
      'café', // NFC
      '%00',
      'x'.repeat(129),
      '',
    ];
    for (const id of tricks) {
      const enc = encodeURIComponent(id);
      const label = JSON.stringify(id);
      const routes: Array<[string, string, object | undefined]> = [
        ['get', `/v1/groups/${enc}`, undefined],
        ['delete', `/v1/groups/${enc}`, undefined],
        ['get', `/v1/groups/${enc}/users`, undefined],
        ['get', `/v1/groups/hostile/users/${enc}`, undefined],
        ['patch', `/v1/groups/hostile/users/${enc}`, { user_info: 'x' }],
        ['delete', `/v1/groups/hostile/users/${enc}`, undefined],
        ['get', `/v1/groups/hostile/users/${enc}/faces`, undefined],
        ['post', `/v1/groups/hostile/users/${enc}/faces`, { image_base64: b64(good()) }],
        ['post', `/v1/groups/${enc}/users/u/faces`, { image_base64: b64(good()) }],
        ['post', `/v1/groups/hostile/users/alice/copy`, { to_group_id: id }],
        ['get', `/v1/groups/hostile/users/alice/faces/${enc}/image`, undefined],
        ['delete', `/v1/groups/hostile/users/alice/faces/${enc}`, undefined],
        ['get', `/v1/imports/${enc}`, undefined],
        ['get', `/v1/imports/${enc}/items`, undefined],
        ['delete', `/v1/imports/${enc}`, undefined],
        ['post', '/v1/groups', { group_id: id }],
        ['post', '/v1/search', { image_base64: b64(good()), group_ids: [id] }],
        ['post', '/v1/compare', { image_a_base64: b64(good()), face_id_b: id }],
        ['post', '/v1/imports', { group_id: id, items: [{ user_id: 'u', image_base64: b64(good()) }] }],
        ['post', '/v1/imports', { group_id: 'g', items: [{ user_id: id, image_base64: b64(good()) }] }],
        ['post', '/v1/imports', { group_id: 'g', items: [{ user_id: 'u', object_key: id }] }],
        ['post', '/v1/imports', { group_id: 'g', items: [{ user_id: 'u', object_key: `uploads/default/${id}` }] }],
        ['put', `/v1/uploads/default/${enc}?token=1.x`, undefined],
        ['put', `/v1/uploads/${enc}/abc?token=1.x`, undefined],
      ];
      for (const [method, path, body] of routes) {
        // An empty id in a path is another route (GET /v1/groups/ lists the groups): only bodies carry it.
        if (id === '' && !body) continue;
        const req = (http as unknown as Record<string, (p: string) => request.Test>)[method](path).set(auth);
        const res = body ? await req.send(body) : await req;
        expectRefused(res, `${method} ${path} ${label}`);
      }
    }
    // Raw, unencoded traversal in the URL path (what curl --path-as-is sends)
    for (const path of [
      '/v1/groups/../../etc/passwd',
      '/v1/groups/hostile/users/alice/faces/../../../../../etc/passwd/image',
      '/v1/uploads/../../etc/passwd?token=1.x',
    ]) {
      const res = await rawRequest(base, 'GET', path);
      expectRefused(res, `raw ${path}`);
    }
    await expectStillServing();
  }, 120_000);

  it('refuses base64 that is not base64, and huge strings in fields and query parameters', async () => {
    for (const s of [
      'not base64 !!',
      '====',
      'A',
      'AAAAA',
      'QUJD\u0000REVG',
      '😀😀😀😀',
      'data:image/jpeg;base64,!!!!',
      'data:text/html,<script>alert(1)</script>',
      'A'.repeat(100_001), // over MAX_IMAGE_BYTES once decoded
      ' '.repeat(1000),
    ]) {
      for (const [path, body] of [
        ['/v1/detect', { image_base64: s }],
        ['/v1/groups/hostile/users/u/faces', { image_base64: s }],
        ['/v1/compare', { image_a_base64: s, image_b_base64: b64(good()) }],
        ['/v1/compare', { image_a_base64: b64(good()), image_b_base64: s }],
        ['/v1/search', { image_base64: s, group_ids: ['hostile'] }],
        ['/v1/imports', { group_id: 'hostile', items: [{ user_id: 'u', image_base64: s }] }],
      ] as const) {
        expectRefused(
          await http.post(path).set(auth).send(body),
          `${path} base64 ${JSON.stringify(s.slice(0, 20))}`,
          /^(image_base64_invalid|image_empty|image_too_large|image_corrupt)$/,
        );
      }
    }
    const huge = 'x'.repeat(200_000);
    expectRefused(
      await http
        .post('/v1/groups/hostile/users/u/faces')
        .set(auth)
        .send({ image_base64: b64(good()), user_info: huge }),
      'huge user_info',
      'invalid_request',
    );
    expectRefused(
      await http.patch('/v1/groups/hostile/users/alice').set(auth).send({ user_info: huge }),
      'huge user_info patch',
      'invalid_request',
    );
    expectRefused(await http.post('/v1/apps').set('x-api-key', 'x').send({ app_id: huge }), 'huge app id');
    for (const q of [
      `limit=${'9'.repeat(5000)}`,
      'limit=1e999',
      'limit=-1',
      `cursor=${'A'.repeat(5_000)}`,
      'cursor=%00%00',
      'limit=1&limit=2',
      'limit[]=1',
      'limit[__proto__]=1',
      'status=../../x',
    ]) {
      const res = await http.get(`/v1/groups?${q}`).set(auth);
      expect(res.status, q).toBeLessThan(500);
      if (res.status >= 400) expectRefused(res, `query ${q.slice(0, 40)}`);
    }
    const badCursor = await http.get(`/v1/groups/hostile/users?cursor=${encodeURIComponent('not-a-cursor')}`).set(auth);
    expect(badCursor.status).toBeLessThan(500);
    // A URL far past what Node accepts in headers: the HTTP server itself answers (431), never a crash.
    const longUrl = await rawRequest(base, 'GET', `/v1/groups?cursor=${'A'.repeat(100_000)}`);
    expect(longUrl.status).toBeGreaterThanOrEqual(400);
    expect(longUrl.status).toBeLessThan(500);
    const longHeader = await rawRequest(base, 'GET', '/v1/groups', { 'x-api-key': 'k'.repeat(100_000) });
    expect(longHeader.status).toBe(431);
    const hugeKey = await http.get('/v1/groups').set('x-api-key', 'k'.repeat(8000));
    expectRefused(hugeKey, 'huge api key', 'unauthorized');
    const unicodeKey = await http.get('/v1/groups').set('authorization', `Bearer ${encodeURIComponent('ключ')}`);
    expectRefused(unicodeKey, 'unicode api key', 'unauthorized');
    await expectStillServing();
  });

  it('stores free-form user_info with unicode tricks byte for byte', async () => {
    const info = 'A\u202Eevil\u200B ali\u0301ce \uFEFF 😀 <script>\u0000</script>';
    const res = await http
      .post('/v1/groups/hostile/users/tricky/faces')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: 'tricky' })), user_info: info });
    expect(res.status).toBe(201);
    const user = await http.get('/v1/groups/hostile/users/tricky').set(auth);
    expect(user.body.user_info).toBe(info);
    // Half a surrogate pair is not text: Redis's Lua JSON refused it later, making the user unwritable (503s).
    const sendRaw = (method: 'post' | 'patch', path: string, text: string, key = DEFAULT_KEY) =>
      http[method](path).set('x-api-key', key).set('content-type', 'application/json').send(text);
    const img = b64(fakeImage({ person: 'tricky' }));
    for (const lone of ['\\ud800', '\\udfff', 'a\\udc00b', '\\ud83d\\ud83d']) {
      for (const [method, path, text, key] of [
        ['post', '/v1/groups/hostile/users/tricky/faces', `{"image_base64":"${img}","user_info":"${lone}"}`],
        ['patch', '/v1/groups/hostile/users/tricky', `{"user_info":"${lone}"}`],
        [
          'post',
          '/v1/imports',
          `{"group_id":"hostile","items":[{"user_id":"u","name":"${lone}","image_base64":"${img}"}]}`,
        ],
        ['post', '/v1/apps', `{"app_id":"lone","name":"${lone}"}`, ADMIN_KEY],
      ] as const) {
        const res = await sendRaw(method, path, text, key);
        expectRefused(res, `${method} ${path} with ${lone}`, 'invalid_request');
        expect(res.body.error?.message).toMatch(/well-formed Unicode/);
      }
    }
    // A whole pair is fine.
    const pair = await sendRaw('patch', '/v1/groups/hostile/users/tricky', '{"user_info":"\\ud83d\\ude00"}');
    expect(pair.status, JSON.stringify(pair.body)).toBe(200);
    expect(pair.body.user_info).toBe('😀');
    await expectStillServing();
  });
});

/** A request with the path sent exactly as given (no normalisation), and arbitrary headers. */
function rawRequest(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Res['body'] }> {
  const url = new URL(base);
  return new Promise((resolvePromise, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, method, path, headers: { ...auth, ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => {
          let body: Res['body'] = {};
          try {
            body = JSON.parse(text);
          } catch {
            // 431 and friends come from Node's HTTP parser with an empty body
          }
          resolvePromise({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

// ---- configured limits -----------------------------------------------------------------------------------------

/**
 * Streams `total` bytes of a request body in chunks and stops as soon as the server answers. Returns the status,
 * the body, and how many bytes had been written by then: a limit enforced before reading the whole body answers
 * long before the last chunk.
 */
function streamBody(
  base: string,
  path: string,
  headers: Record<string, string>,
  head: Buffer,
  total: number,
  method = 'POST',
): Promise<{ status: number; body: Res['body']; written: number }> {
  const url = new URL(base);
  const chunked = headers['transfer-encoding'] === 'chunked';
  // A plain socket: the server may close it while we write (that is the point), and the answer must still be read.
  return new Promise((resolvePromise) => {
    const socket = connect(Number(url.port), url.hostname);
    let written = 0;
    let received = '';
    let answered = false;
    const finish = () => {
      const match = /^HTTP\/1\.1 (\d{3})/.exec(received);
      let body: Res['body'] = {};
      const start = received.indexOf('\r\n\r\n');
      try {
        body = JSON.parse(received.slice(start + 4));
      } catch {
        // not JSON
      }
      resolvePromise({ status: match ? Number(match[1]) : 0, body, written });
    };
    socket.on('data', (d) => {
      received += d.toString('latin1');
      if (!answered && received.includes('\r\n\r\n')) answered = true;
    });
    socket.on('error', () => undefined); // EPIPE / ECONNRESET once the server has answered and closed
    socket.on('close', finish);
    socket.write(
      `${method} ${path} HTTP/1.1\r\nhost: ${url.host}\r\n${Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')}\r\n`,
    );
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    const frame = (b: Buffer) =>
      chunked ? Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]) : b;
    const pump = () => {
      while (!answered && !socket.destroyed && written < total) {
        const part = written === 0 && head.length > 0 ? head : chunk;
        written += part.length;
        if (!socket.write(frame(part))) {
          socket.once('drain', () => setImmediate(pump));
          return;
        }
      }
      if (!answered && !socket.destroyed) socket.end(chunked ? '0\r\n\r\n' : undefined);
    };
    pump();
  });
}

describe('bodies refused before routing (logged, never a 500)', () => {
  let gw: TestGateway;
  let http: Http;
  let base: string;
  const logs: Array<{ level: number; msg: string; code?: string; statusCode?: number; url?: string }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });

  beforeAll(async () => {
    gw = await startTestGateway({}, new FakeAnalyzer(), logger);
    ({ base, http } = await listenOnLoopback(gw));
  });
  afterAll(async () => {
    await gw?.dispose();
  });

  it('answers a body that does not decompress as its Content-Encoding says with 400 invalid_body_encoding', async () => {
    const json = Buffer.from(JSON.stringify({ group_id: 'zipped' }));
    const corrupt: Array<[string, Buffer]> = [
      ['gzip', Buffer.from('not gzip at all')],
      ['gzip', gzipSync(json).subarray(0, 12)], // truncated
      ['deflate', Buffer.from('not deflate')],
      ['br', brotliCompressSync(json).subarray(0, 3)],
    ];
    for (const [encoding, body] of corrupt) {
      for (const path of ['/v1/groups', '/v1/detect']) {
        const res = await postBytes(
          base,
          path,
          { 'content-type': 'application/json', 'content-encoding': encoding },
          body,
        );
        expectRefused(res, `${encoding} (${body.length} bytes) to ${path}`, 'invalid_body_encoding');
        expect(res.status).toBe(400);
      }
    }
    // A body that does decompress is read as usual.
    const good = await postBytes(
      base,
      '/v1/groups',
      { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      gzipSync(json),
    );
    expect(good.status, JSON.stringify(good.body)).toBe(201);
    const refused = logs.filter(
      (l) => l.msg === 'request refused before routing' && l.code === 'invalid_body_encoding',
    );
    expect(refused.length).toBe(corrupt.length * 2);
    expect(logs.filter((l) => l.level >= 50)).toEqual([]);
  });

  it("answers what Node's HTTP parser refuses in the API's error shape", async () => {
    const url = new URL(base);
    const exchange = (raw: string) =>
      new Promise<Res>((resolvePromise) => {
        let received = '';
        const socket = connect(Number(url.port), url.hostname, () => socket.write(raw));
        socket.on('data', (d) => {
          received += d.toString('latin1');
        });
        socket.on('error', () => undefined);
        socket.on('close', () => {
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 0);
          let body: Res['body'] = {};
          try {
            body = JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4));
          } catch {
            // not JSON: the assertion below says so
          }
          resolvePromise({ status, body, text: received.slice(0, 300) });
        });
      });
    const cases: Array<[string, string, number, string]> = [
      [
        'a 20 kB header',
        `GET /v1/groups HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`,
        431,
        'headers_too_large',
      ],
      ['a garbage request line', 'GARBAGE\r\n\r\n', 400, 'malformed_http'],
      [
        'two Content-Lengths',
        'POST /v1/groups HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab',
        400,
        'malformed_http',
      ],
      [
        'a negative Content-Length',
        'POST /v1/groups HTTP/1.1\r\nhost: x\r\ncontent-length: -5\r\n\r\n',
        400,
        'malformed_http',
      ],
      [
        'a bad chunk size',
        'POST /v1/groups HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\nzz\r\n',
        400,
        'malformed_http',
      ],
    ];
    for (const [what, raw, status, code] of cases) {
      const res = await exchange(raw);
      expect(res.status, `${what}: ${res.text}`).toBe(status);
      expect(res.body.error?.code, `${what}: ${res.text}`).toBe(code);
    }
    expect((await http.get('/health/ready')).status).toBe(200);
  });

  it('logs a 415 it answers before routing', async () => {
    const res = await http.post('/v1/detect').set(auth).set('content-type', 'text/plain').send('hello');
    expectRefused(res, 'text/plain', 'unsupported_media_type');
    expect(logs).toContainEqual(
      expect.objectContaining({ msg: 'request refused before routing', statusCode: 415, url: '/v1/detect' }),
    );
  });

  it('treats a client that goes away mid-multipart as an aborted request, not a server error', async () => {
    const before = logs.length;
    const url = new URL(base);
    await new Promise<void>((resolvePromise) => {
      const socket = connect(Number(url.port), url.hostname, () => {
        socket.write(
          `POST /v1/detect HTTP/1.1\r\nhost: ${url.host}\r\nx-api-key: ${DEFAULT_KEY}\r\n` +
            'content-type: multipart/form-data; boundary=XabortX\r\ncontent-length: 100000\r\n\r\n' +
            '--XabortX\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\npartial',
        );
        setTimeout(() => socket.destroy(), 200);
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolvePromise());
    });
    // The server notices the close on its side a moment later.
    await new Promise((r) => setTimeout(r, 300));
    expect(logs.slice(before).filter((l) => l.level >= 50)).toEqual([]);
    expect((await http.get('/health/ready')).status).toBe(200);
  });
});

describe('configured limits are enforced early', () => {
  let gw: TestGateway;
  let http: Http;
  let base: string;
  const MAX_IMAGE_BYTES = 4096;
  const MAX_REQUEST_BYTES = 65_536;
  const TOTAL = 32 * 1024 * 1024;

  beforeAll(async () => {
    gw = await startTestGateway(
      { MAX_IMAGE_BYTES: String(MAX_IMAGE_BYTES), MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES) },
      new FakeAnalyzer(),
    );
    ({ base, http } = await listenOnLoopback(gw));
  });
  afterAll(async () => {
    await gw?.dispose();
  });

  it('MAX_IMAGE_BYTES: a file, a base64 image and an upload one byte over are refused', async () => {
    const over = Buffer.alloc(MAX_IMAGE_BYTES + 1, 0x20);
    const atLimit = Buffer.concat([Buffer.from(fakeImage({ person: 'a' }))]);
    expect((await http.post('/v1/detect').set(auth).attach('image', atLimit, 'a.jpg')).status).toBe(200);
    for (const res of [
      await http.post('/v1/detect').set(auth).attach('image', over, 'a.jpg'),
      await http
        .post('/v1/detect')
        .set(auth)
        .send({ image_base64: b64(over) }),
      await http
        .post('/v1/imports')
        .set(auth)
        .send({ group_id: 'g', items: [{ user_id: 'u', image_base64: b64(over) }] }),
    ]) {
      expectRefused(res, 'image over MAX_IMAGE_BYTES', 'image_too_large');
      expect(res.status).toBe(413);
    }
    const ticket = await http.post('/v1/uploads').set(auth);
    const url = new URL(ticket.body.upload_url);
    const put = await http
      .put(url.pathname + url.search)
      .set('content-type', 'image/jpeg')
      .send(over);
    expectRefused(put, 'upload over MAX_IMAGE_BYTES', 'payload_too_large');
  });

  it('an upload without a valid token is refused before its body is read', async () => {
    const ticket = await http.post('/v1/uploads').set(auth);
    const url = new URL(ticket.body.upload_url);
    const forged = `${url.pathname}?token=${'9'.repeat(10)}.${'A'.repeat(43)}`;
    for (const path of [forged, url.pathname, `${url.pathname}?token=1.x`]) {
      const res = await streamBody(
        base,
        path,
        { 'content-type': 'image/jpeg', 'transfer-encoding': 'chunked' },
        Buffer.alloc(0),
        TOTAL,
        'PUT',
      );
      // The token's refusal, not the size limit's: the body was never read as far as MAX_IMAGE_BYTES.
      expect(res.status, `${path}: ${JSON.stringify(res.body)}`).toBe(403);
      expect(res.body.error?.code).toBe('upload_token_invalid');
      expect(res.written, path).toBeLessThan(TOTAL);
    }
    const badEncoding = await http.put('/v1/uploads/default/%E0%A4%A?token=1.x').send(Buffer.from('x'));
    expectRefused(badEncoding, 'broken %-encoding in the upload URL');
  });

  it('MAX_IMAGE_BYTES: a streamed 32 MiB file is refused before the body is read', async () => {
    const boundary = 'LimitBoundary';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n` +
        'Content-Type: image/jpeg\r\n\r\n',
    );
    const res = await streamBody(
      base,
      '/v1/detect',
      { ...auth, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' },
      head,
      TOTAL,
    );
    expect(res.status).toBe(413);
    // whichever limit the first chunks cross first: the file's or the request's
    expect(res.body.error?.code).toMatch(/^(image_too_large|payload_too_large)$/);
    expect(res.written).toBeLessThan(TOTAL);
  });

  it('MAX_REQUEST_BYTES: announced, chunked JSON and chunked multipart bodies past the limit are refused early', async () => {
    // Announced with Content-Length: refused from the header.
    const announced = await streamBody(
      base,
      '/v1/detect',
      { ...auth, 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(TOTAL) },
      Buffer.alloc(0),
      TOTAL,
    );
    expect(announced.status).toBe(413);
    expect(announced.body.error?.code).toBe('payload_too_large');
    expect(announced.written).toBeLessThan(TOTAL);
    // Chunked JSON
    const json = await streamBody(
      base,
      '/v1/groups',
      { ...auth, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      Buffer.from('{"group_id":"g","pad":"'),
      TOTAL,
    );
    expect(json.status).toBe(413);
    expect(json.body.error?.code).toBe('payload_too_large');
    expect(json.written).toBeLessThan(TOTAL);
    // Chunked multipart made of text fields, each under the per-field limit
    const boundary = 'FieldsBoundary';
    const fields = Buffer.from(
      Array.from(
        { length: 90 },
        (_, i) => `--${boundary}\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\n${'v'.repeat(60_000)}\r\n`,
      ).join(''),
    );
    const multipart = await streamBody(
      base,
      '/v1/detect',
      { ...auth, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' },
      fields,
      fields.length + 1,
    );
    expect(multipart.status).toBe(413);
    expect(multipart.body.error?.code).toBe('payload_too_large');
    // and the gateway still serves
    expect((await http.get('/health/ready')).status).toBe(200);
    expect(
      (
        await http
          .post('/v1/detect')
          .set(auth)
          .send({ image_base64: b64(fakeImage({ person: 'a' })) })
      ).status,
    ).toBe(200);
  });

  it.skipIf(engineSkip !== null)('MAX_IMAGE_PIXELS: refused from the header, before decoding', async () => {
    const small = await startTestGateway({ MAX_IMAGE_PIXELS: '10000' });
    try {
      const h = request(small.app.getHttpServer());
      // 200x200 = 40,000 pixels of real, decodable PNG: over 10,000
      const sharp = (await import('sharp')).default;
      const png = await sharp({ create: { width: 200, height: 200, channels: 3, background: '#808080' } })
        .png()
        .toBuffer();
      const res = await h.post('/v1/detect').set(auth).attach('image', png, 'a.png');
      expectRefused(res, 'png over MAX_IMAGE_PIXELS', 'image_too_many_pixels');
      expect(res.status).toBe(413);
      expect(res.body.error.message).toContain('200x200');
      // A header alone (no decodable pixels) gets the same answer: the limit is checked before any decoding.
      const headerOnly = await h.post('/v1/detect').set(auth).attach('image', pngClaiming(200, 200), 'h.png');
      expect(headerOnly.body.error.code).toBe('image_too_many_pixels');
      // 90x90 = 8,100 pixels passes the limit (no face in a grey square, so: no faces)
      const ok = await sharp({ create: { width: 90, height: 90, channels: 3, background: '#808080' } })
        .png()
        .toBuffer();
      const passed = await h.post('/v1/detect').set(auth).attach('image', ok, 'ok.png');
      expect(passed.status).toBe(200);
      expect(passed.body.face_num).toBe(0);
    } finally {
      await small.dispose();
    }
  });
});
