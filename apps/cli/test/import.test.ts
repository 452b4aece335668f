/**
 * `facesearch import` against an in-process embedded gateway (real engine, temp DATA_DIR) on 127.0.0.1.
 * The folders are built in a temp dir from the shared test photos (or the npm-shipped samples) plus bad files.
 */
import { execFile } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_KEY, startTestGateway, type TestGateway } from '../../gateway/test/helpers';
import { type ImportCommandOptions, importFolder, STATE_FILE } from '../src/import';
import { Progress } from '../src/progress';

const ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'apps', 'cli', 'dist', 'main.js');
const TESTDATA_FACES = resolve(ROOT, '..', 'shared', 'testdata', 'faces');
const FIXTURES = join(ROOT, '.fixtures');
const MODELS = join(ROOT, 'models');

/** user id -> photo paths. */
function photoSet(): Record<string, string[]> | null {
  if (existsSync(TESTDATA_FACES)) {
    const f = (p: string, n: number) => join(TESTDATA_FACES, p, `${n}.jpg`);
    return {
      obama: [f('obama', 1), f('obama', 2)],
      kit_harington: [f('kit_harington', 1)],
      rose_leslie: [f('rose_leslie', 1)],
    };
  }
  const s = (n: number) => join(FIXTURES, `face-api-sample${n}.jpg`);
  if (![1, 3, 6].every((n) => existsSync(s(n)))) return null;
  return { sample1: [s(1)], sample3: [s(3)], sample6: [s(6)] };
}

const photos = photoSet();
const haveModels = existsSync(MODELS) && readdirSync(MODELS).some((f) => f.endsWith('.onnx'));
const skipReason = !haveModels
  ? `no .onnx models in ${MODELS} (run pnpm models)`
  : !photos
    ? `no test photos in ${TESTDATA_FACES} nor ${FIXTURES}`
    : null;
if (skipReason) console.warn(`[cli import] skipped: ${skipReason}`);

function collect(): PassThrough & { text(): string } {
  const stream = new PassThrough() as PassThrough & { text(): string };
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.text = () => Buffer.concat(chunks).toString('utf8');
  return stream;
}

describe.skipIf(skipReason !== null)('facesearch import', () => {
  const set = photos as Record<string, string[]>;
  const goodCount = Object.values(set).flat().length;
  let gw: TestGateway;
  let url: string;
  let work: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'facesearch-cli-import-'));
    gw = await startTestGateway({ IMPORT_CONCURRENCY: '2' });
    await gw.app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(gw.app.getHttpServer().address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await gw?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** users/<photo>.jpg, plus bad/not-a-photo.jpg (text) and a notes file outside any user folder. */
  function makeFolder(name: string): string {
    const dir = join(work, name);
    for (const [user, files] of Object.entries(set)) {
      mkdirSync(join(dir, user), { recursive: true });
      for (const [i, f] of files.entries()) copyFileSync(f, join(dir, user, `${i + 1}.jpg`));
    }
    mkdirSync(join(dir, 'bad'));
    writeFileSync(join(dir, 'bad', 'not-a-photo.jpg'), 'plain text, not a JPEG\n'.repeat(10));
    writeFileSync(join(dir, 'notes.txt'), 'not an image');
    return dir;
  }

  const run = (dir: string, group: string, extra: Partial<ImportCommandOptions> = {}) => {
    const stdout = collect();
    const stderr = collect();
    const done = importFolder({
      dir,
      group,
      url,
      key: DEFAULT_KEY,
      json: false,
      wait: true,
      concurrency: 3,
      pollMs: 100,
      stdout,
      stderr,
      ...extra,
    });
    return done.then((r) => ({ ...r, stderr: stderr.text() }));
  };

  async function faceCounts(group: string): Promise<Record<string, number>> {
    const headers = { 'x-api-key': DEFAULT_KEY };
    const users = (await (await fetch(`${url}/v1/groups/${group}/users?limit=1000`, { headers })).json()) as {
      items: Array<{ user_id: string }>;
    };
    const counts: Record<string, number> = {};
    for (const u of users.items) {
      const faces = (await (await fetch(`${url}/v1/groups/${group}/users/${u.user_id}/faces`, { headers })).json()) as {
        items: unknown[];
      };
      counts[u.user_id] = faces.items.length;
    }
    return counts;
  }

  const expectedCounts = () => Object.fromEntries(Object.entries(set).map(([u, f]) => [u, f.length]));

  it('imports a folder: counts, the failed file with its code, the skipped file, a state file', async () => {
    const dir = makeFolder('first');
    const { exitCode, summary, stderr } = await run(dir, 'cli');
    expect(exitCode).toBe(1);
    expect(summary).toMatchObject({
      status: 'completed',
      total: goodCount + 1,
      succeeded: goodCount,
      failed: 1,
      pending: 0,
      submitted: goodCount + 1,
    });
    expect(summary.failures).toEqual([
      { file: 'bad/not-a-photo.jpg', user_id: 'bad', code: 'image_unsupported_format', message: expect.any(String) },
    ]);
    expect(summary.skipped).toEqual([{ file: 'notes.txt', reason: 'not an image file name' }]);
    expect(stderr).toMatch(/importing +\d+\/\d+ +100%/);
    expect(await faceCounts('cli')).toEqual(expectedCounts());
    const state = JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8'));
    expect(state.imports).toHaveLength(1);
    expect(state.imports[0]).toMatchObject({ finished: true, files: expect.arrayContaining(['bad/not-a-photo.jpg']) });
  });

  it('re-run sends only what did not succeed: no duplicate faces', async () => {
    const dir = join(work, 'first');
    const { exitCode, summary } = await run(dir, 'cli');
    expect(exitCode).toBe(1);
    expect(summary).toMatchObject({ submitted: 1, succeeded: goodCount, failed: 1 });
    expect(summary.import_ids).toHaveLength(2);
    expect(await faceCounts('cli')).toEqual(expectedCounts());

    // Once the bad file is gone, everything has succeeded and nothing is sent.
    rmSync(join(dir, 'bad'), { recursive: true });
    const clean = await run(dir, 'cli');
    expect(clean.exitCode).toBe(0);
    expect(clean.summary).toMatchObject({ submitted: 0, total: goodCount, succeeded: goodCount, failed: 0 });
    expect(clean.stderr).toContain('Every file has already been imported.');
  });

  it('a re-run follows an import left unfinished instead of submitting it again', async () => {
    const dir = makeFolder('detached');
    const first = await run(dir, 'cli_detached', { wait: false });
    expect(first.exitCode).toBe(0);
    expect(first.summary).toMatchObject({ status: 'submitted', submitted: goodCount + 1 });
    const state = JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8'));
    expect(state.imports[0].finished).toBe(false);

    const second = await run(dir, 'cli_detached');
    expect(second.stderr).toContain(`Resuming import ${state.imports[0].import_id}`);
    expect(second.summary).toMatchObject({ status: 'completed', submitted: 0, succeeded: goodCount, failed: 1 });
    expect(second.summary.import_ids).toEqual([state.imports[0].import_id]);
    expect(second.exitCode).toBe(1);
    expect(await faceCounts('cli_detached')).toEqual(expectedCounts());
  });

  it('refuses a state file of another group', async () => {
    await expect(run(join(work, 'first'), 'other_group')).rejects.toMatchObject({ code: 'usage' });
  });

  describe.skipIf(!existsSync(CLI))('as a command (apps/cli/dist, built by pnpm build)', () => {
    const cli = async (...args: string[]) => {
      try {
        const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], {
          cwd: ROOT,
          env: { ...process.env, FACESEARCH_API_KEY: DEFAULT_KEY },
        });
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
    };
    const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop() ?? 'null');

    it('--json prints the summary as the last line; exit 1 when a file failed', async () => {
      const dir = makeFolder('command');
      const r = await cli('import', dir, '--group', 'cli_cmd', '--url', url, '--json');
      expect(r.code).toBe(1);
      expect(lastJson(r.stdout)).toMatchObject({
        succeeded: goodCount,
        failed: 1,
        failures: [{ code: 'image_unsupported_format' }],
      });
      expect(r.stderr).toContain('importing');
      rmSync(join(dir, 'bad'), { recursive: true });
      const again = await cli('import', dir, '--group', 'cli_cmd', '--url', url);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain(`${goodCount} succeeded, 0 failed`);
    });

    it('exit 2 on usage and connection errors', async () => {
      const noGroup = await cli('import', work, '--url', url, '--json');
      expect(noGroup.code).toBe(2);
      expect(lastJson(noGroup.stdout).error.code).toBe('usage');
      const badOption = await cli('import', work, '--frobnicate');
      expect(badOption.code).toBe(2);
      const free = createServer();
      await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
      const port = (free.address() as AddressInfo).port;
      await new Promise((r) => free.close(r));
      const dir = makeFolder('unreachable');
      const down = await cli('import', dir, '--group', 'g', '--url', `http://127.0.0.1:${port}`, '--json');
      expect(down.code).toBe(2);
      expect(lastJson(down.stdout).error.code).toBe('connection_failed');
      const wrongKey = await cli('import', dir, '--group', 'g', '--url', url, '--key', 'wrong-key-00000000000');
      expect(wrongKey.code).toBe(2);
      expect(wrongKey.stderr).toMatch(/^error unauthorized: /m);
    });
  });
});

describe('import progress line', () => {
  it('shows done/total, percent, rate and ETA; a bar only on a terminal', () => {
    let now = 1_000;
    const out = collect();
    const p = new Progress('importing', 200, { stream: out, now: () => now, plainEveryMs: 1000 });
    p.update(0);
    now += 10_000;
    p.update(50, '50 ok');
    expect(p.format(50, now)).toBe('importing  50/200  25% 5.0/s ETA 0:30');
    now += 500; // too soon for another plain line
    p.update(60);
    now += 30_000;
    p.update(200);
    expect(out.text().trim().split('\n')).toEqual([
      'importing   0/200   0% 0.0/s ETA --:--',
      'importing  50/200  25% 5.0/s ETA 0:30 50 ok',
      'importing 200/200 100% 4.9/s took 0:41',
    ]);
    const tty = Object.assign(collect(), { isTTY: true, columns: 120 });
    const bar = new Progress('uploading', 10, { stream: tty, now: () => now });
    bar.update(5);
    expect(tty.text()).toContain('[##########..........]');
  });
});
