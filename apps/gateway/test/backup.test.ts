/**
 * Backups end to end: `scripts/backup/backup.mjs create` while the gateway runs and enrols, delete everything,
 * `restore`, and search finds the people again. Embedded always (fake analyzer: no models needed); distributed
 * on real Redis, Qdrant and S3 when REDIS_URL, QDRANT_URL and S3_* name them (scripts/services/up.sh).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { SqliteLibraryRepository } from '@facesearch/adapters';
import { loadConfig } from '@facesearch/common';
import { buildPorts } from '@facesearch/runtime';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeAnalyzer, fakeImage } from '../../../libs/core/test/fakes';
import { createGateway, type Gateway } from '../src/gateway';
import { dropIsolated } from './distributed';
import { ADMIN_KEY, DEFAULT_KEY, embeddedPorts } from './helpers';

const ROOT = resolve(__dirname, '../../..');
const SCRIPT = join(ROOT, 'scripts/backup/backup.mjs');
const built = existsSync(join(ROOT, 'libs/common/dist/index.js'));
if (!built) console.warn('[backup] skipped: libs/common/dist missing (pnpm build)');
const auth = { 'x-api-key': DEFAULT_KEY };
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
const silent = pino({ level: 'silent' });

async function backup(args: string[], env: Record<string, string>): Promise<{ code: number; result: any }> {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [SCRIPT, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env, INIT_CWD: ROOT },
    });
    return { code: 0, result: JSON.parse(stdout.trim().split('\n').pop() as string) };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, result: JSON.parse(e.stdout.trim().split('\n').pop() || '{}') };
  }
}

const PEOPLE = ['alice', 'bob', 'carol', 'dave', 'erin'];

/** Enrols PEOPLE (one fake face each) into group `staff`, some of them during `during`. */
async function scenario(
  http: ReturnType<typeof request>,
  takeBackup: () => Promise<{ code: number; result: any }>,
): Promise<{ code: number; result: any }> {
  for (const p of PEOPLE.slice(0, 3)) {
    await http
      .post(`/v1/groups/staff/users/${p}/faces`)
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: p })), user_info: `${p} info` })
      .expect(201);
  }
  // The backup runs while more enrolments come in: it must still be consistent.
  const [result] = await Promise.all([
    takeBackup(),
    (async () => {
      for (const p of PEOPLE.slice(3)) {
        await http
          .post(`/v1/groups/staff/users/${p}/faces`)
          .set(auth)
          .send({ image_base64: b64(fakeImage({ person: p })) })
          .expect(201);
      }
    })(),
  ]);
  return result;
}

async function expectFound(http: ReturnType<typeof request>, people: string[]) {
  for (const p of people) {
    const res = await http
      .post('/v1/search')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: p, variant: 3 })), group_ids: ['staff'] });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.results[0].matches[0]?.user_id, p).toBe(p);
  }
}

describe.skipIf(!built)('backup and restore (embedded)', () => {
  let dataDir: string;
  let dest: string;
  let gw: Gateway | null = null;
  const env = () => ({ FACESEARCH_MODE: 'embedded', DATA_DIR: dataDir });
  const start = async () => {
    const config = loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, DEFAULT_APP_API_KEY: DEFAULT_KEY });
    gw = await createGateway(config, { ports: await embeddedPorts(dataDir, new FakeAnalyzer()), logger: silent });
    return request(gw.app.getHttpServer());
  };

  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'facesearch-bk-data-'));
    dest = join(mkdtempSync(join(tmpdir(), 'facesearch-bk-')), 'backup');
  });
  afterAll(async () => {
    await gw?.close();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(resolve(dest, '..'), { recursive: true, force: true });
  });

  it('backs up while running, restores after everything was deleted, and search finds everyone again', async () => {
    let http = await start();
    const made = await scenario(http, () => backup(['create', dest], env()));
    expect(made.code, JSON.stringify(made.result)).toBe(0);
    expect(made.result).toMatchObject({ backup: dest, mode: 'embedded', faces: expect.any(Number) });
    const facesInBackup: number = made.result.faces;
    expect(facesInBackup).toBeGreaterThanOrEqual(3);

    // The copy is consistent on its own: every face record has its vector and its image.
    const copy = new SqliteLibraryRepository(join(dest, 'facesearch.db'));
    try {
      const faces = copy.db.prepare('SELECT face_id, image_key FROM lib_faces').all() as Array<{
        face_id: string;
        image_key: string;
      }>;
      expect(faces).toHaveLength(facesInBackup);
      const vectorRows = copy.db.prepare('SELECT count(*) AS n FROM face_vectors_rowids').get() as { n: number };
      expect(vectorRows.n).toBeGreaterThanOrEqual(faces.length);
      for (const f of faces) expect(existsSync(join(dest, 'blobs', f.image_key)), f.image_key).toBe(true);
    } finally {
      await copy.close();
    }

    // Refuses to overwrite a backup, or a library without --force
    expect((await backup(['create', dest], env())).result.error.code).toBe('destination_not_empty');

    // Delete everything, then stop the gateway.
    await http.delete('/v1/groups/staff').set(auth).expect(200);
    expect((await http.get('/v1/groups').set(auth)).body.items).toEqual([]);
    await gw?.close();
    gw = null;

    const refused = await backup(['restore', dest], env());
    expect(refused.code).toBe(1);
    expect(refused.result.error.code).toBe('library_exists');
    const restored = await backup(['restore', dest, '--force'], env());
    expect(restored.code, JSON.stringify(restored.result)).toBe(0);

    http = await start();
    const users = await http.get('/v1/groups/staff/users').set(auth);
    expect(users.body.items.length).toBe(facesInBackup);
    await expectFound(
      http,
      users.body.items.map((u: { user_id: string }) => u.user_id),
    );
    expect((await http.get('/v1/groups/staff/users/alice').set(auth)).body.user_info).toBe('alice info');
    const face = (await http.get('/v1/groups/staff/users/alice/faces').set(auth)).body.items[0];
    expect((await http.get(`/v1/groups/staff/users/alice/faces/${face.face_id}/image`).set(auth)).status).toBe(200);
    // the library is writable again
    await http
      .post('/v1/groups/staff/users/frank/faces')
      .set(auth)
      .send({ image_base64: b64(fakeImage({ person: 'frank' })) })
      .expect(201);
    await expectFound(http, ['frank']);
  }, 120_000);

  it('refuses what is not a backup', async () => {
    const res = await backup(['restore', dataDir], env());
    expect(res.code).toBe(1);
    expect(res.result.error.code).toBe('not_a_backup');
  });
});

// ---- distributed, on real servers -----------------------------------------------------------------------------

/** The servers of scripts/services/up.sh, as the other integration suites take them (source services.env). */
function servicesEnv(): Record<string, string> | null {
  const names = ['REDIS_URL', 'QDRANT_URL', 'S3_ENDPOINT', 'S3_ACCESS_KEY', 'S3_SECRET_KEY'];
  if (names.some((n) => !process.env[n])) return null;
  return Object.fromEntries(
    [...names, 'S3_REGION'].filter((n) => process.env[n]).map((n) => [n, process.env[n] as string]),
  );
}

const services = servicesEnv();
if (!services) {
  console.warn('[backup] distributed case skipped: REDIS_URL, QDRANT_URL, S3_* not set (scripts/services/up.sh)');
}

describe.skipIf(!built || !services)('backup and restore (distributed: Redis, Qdrant, S3)', () => {
  const suffix = `bk${process.pid}`;
  let dest: string;
  let gw: Gateway | null = null;
  const env = () => ({
    ...(services as Record<string, string>),
    FACESEARCH_MODE: 'distributed',
    ENGINE: 'local', // no gRPC workers needed: the fake analyzer stands in
    REDIS_PREFIX: suffix,
    QDRANT_COLLECTION: `faces_${suffix}`,
    S3_BUCKET: `facesearch-${suffix}`,
  });
  const start = async () => {
    const config = loadConfig({ ...env(), ADMIN_API_KEY: ADMIN_KEY, DEFAULT_APP_API_KEY: DEFAULT_KEY });
    const analyzer = new FakeAnalyzer();
    const ports = await buildPorts(config, silent, {
      need: ['library', 'vectors', 'blobs', 'queues', 'analyzer'],
      analyzer: async () => analyzer,
    });
    gw = await createGateway(config, { ports, logger: silent, runImportWorker: true });
    return request(gw.app.getHttpServer());
  };

  beforeAll(() => {
    dest = join(mkdtempSync(join(tmpdir(), 'facesearch-bkd-')), 'backup');
  });
  afterAll(async () => {
    // Leave the servers as we found them: our keys, collection and bucket go.
    await gw?.close().catch(() => undefined);
    gw = null;
    await dropIsolated(env());
    rmSync(resolve(dest, '..'), { recursive: true, force: true });
  });

  it('backs up Redis keys, a Qdrant snapshot and the S3 objects, and restores them', async () => {
    let http = await start();
    const made = await scenario(http, () => backup(['create', dest], env()));
    expect(made.code, JSON.stringify(made.result)).toBe(0);
    expect(made.result).toMatchObject({ mode: 'distributed', redis: { keys: expect.any(Number) } });
    expect(made.result.s3.objects).toBeGreaterThanOrEqual(3);

    await http.delete('/v1/groups/staff').set(auth).expect(200);
    await gw?.close();
    gw = null;

    expect((await backup(['restore', dest], env())).result.error.code).toBe('library_exists');
    const restored = await backup(['restore', dest, '--force'], env());
    expect(restored.code, JSON.stringify(restored.result)).toBe(0);

    http = await start();
    const users = await http.get('/v1/groups/staff/users').set(auth);
    expect(users.body.items.length).toBeGreaterThanOrEqual(3);
    await expectFound(
      http,
      users.body.items.map((u: { user_id: string }) => u.user_id),
    );
    const face = (await http.get('/v1/groups/staff/users/alice/faces').set(auth)).body.items[0];
    expect((await http.get(`/v1/groups/staff/users/alice/faces/${face.face_id}/image`).set(auth)).status).toBe(200);
  }, 180_000);
});
