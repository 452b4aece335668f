/**
 * The embedded mode keeps everything on disk: an import interrupted by a crash (SIGKILL of the one process) is
 * resumed when the service starts again on the same DATA_DIR, and nothing is lost or written twice.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, ProcessGroup, REPO, waitReady } from './distributed';
import { DEFAULT_KEY } from './helpers';

const TESTDATA = resolve(REPO, '..', 'shared', 'testdata');
const GATEWAY = join(REPO, 'apps', 'gateway', 'dist', 'main.js');
const skipReason = !existsSync(join(TESTDATA, 'faces'))
  ? `test photos not found at ${TESTDATA}`
  : !existsSync(GATEWAY)
    ? `${GATEWAY} not built (pnpm test builds it)`
    : null;
if (skipReason) console.warn(`[restart.embedded] skipped: ${skipReason}`);

const headers = { 'x-api-key': DEFAULT_KEY };

describe.skipIf(skipReason !== null)('embedded mode across a crash', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'facesearch-restart-'));
  const group = new ProcessGroup();
  let base = '';
  let env: Record<string, string> = {};

  const start = async (name: string) => {
    group.start(name, 'gateway', env);
    await waitReady(`${base}/health/ready`, group, 60_000);
  };
  const get = async (path: string) => (await fetch(`${base}${path}`, { headers })).json() as Promise<any>;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    env = {
      PORT: String(port),
      DATA_DIR: dataDir,
      DEFAULT_APP_API_KEY: DEFAULT_KEY,
      IMPORT_CONCURRENCY: '1',
      LOG_LEVEL: 'warn',
    };
    await start('gateway-1');
  });

  afterAll(async () => {
    await group.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('resumes an import after SIGKILL and finishes it with every item counted once', async () => {
    // 60 items: the test photos of three people, repeated under distinct user ids.
    const photos = ['obama', 'kit_harington', 'deepface_c01'].flatMap((who) =>
      readdirSync(join(TESTDATA, 'faces', who)).map((f) => join(TESTDATA, 'faces', who, f)),
    );
    const form = new FormData();
    const items = Array.from({ length: 60 }, (_, i) => {
      const path = photos[i % photos.length];
      form.append('files', new Blob([readFileSync(path)]), `item${i}.jpg`);
      return { user_id: `u${i % 12}`, file: `item${i}.jpg` };
    });
    form.append('group_id', 'crash');
    form.append('items', JSON.stringify(items));
    const created = await fetch(`${base}/v1/imports`, { method: 'POST', headers, body: form });
    expect(created.status).toBe(202);
    const { import_id } = (await created.json()) as { import_id: string };

    // Kill the process once some, but not all, items are done.
    const deadline = Date.now() + 120_000;
    let before = await get(`/v1/imports/${import_id}`);
    while (before.succeeded + before.failed < 5 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      before = await get(`/v1/imports/${import_id}`);
    }
    group.apps[0].child.kill('SIGKILL');
    await group.apps[0].exited;
    expect(before.succeeded + before.failed).toBeLessThan(60);

    await start('gateway-2');
    let after = await get(`/v1/imports/${import_id}`);
    while (!['completed', 'failed', 'cancelled'].includes(after.status) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      after = await get(`/v1/imports/${import_id}`);
    }
    expect(after.status).toBe('completed');
    expect(after.total).toBe(60);
    expect(after.succeeded + after.failed).toBe(60);
    expect(after.succeeded).toBe(60);

    // No face written twice: the users' faces add up to the succeeded items.
    let faces = 0;
    for (let u = 0; u < 12; u++) {
      const list = await get(`/v1/groups/crash/users/u${u}/faces`);
      faces += (list.items ?? list.faces ?? list).length;
    }
    expect(faces).toBe(60);
  });
});
