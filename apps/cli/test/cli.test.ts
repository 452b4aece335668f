import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'apps', 'cli', 'dist', 'main.js');
const FIXTURES = join(ROOT, '.fixtures');
const TESTDATA = resolve(ROOT, '..', 'shared', 'testdata');
const HAS_TESTDATA = existsSync(join(TESTDATA, 'faces'));

async function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string; last: any }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], { cwd: ROOT });
    return { code: 0, stdout, stderr, last: lastJson(stdout) };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, last: lastJson(e.stdout) };
  }
}

function lastJson(stdout: string): any {
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

describe('facesearch CLI (built by `pnpm build`)', () => {
  it('is built', () => {
    expect(existsSync(CLI), `${CLI} missing: run \`pnpm build\` first (\`pnpm test\` does)`).toBe(true);
  });

  it('detect --json prints faces with box, landmarks, score and quality', async () => {
    const { code, last } = await run('detect', join(FIXTURES, 'face-api-sample2.jpg'), '--json');
    expect(code).toBe(0);
    expect(last.faces).toHaveLength(3);
    expect(Object.keys(last.faces[0]).sort()).toEqual(['box', 'landmarks', 'quality', 'score']);
    expect(last.faces[0].quality.level).toMatch(/LOW|NORMAL|HIGH/);
  });

  it('detect prints a readable summary without --json', async () => {
    const { code, stdout } = await run('detect', join(FIXTURES, 'face-api-sample2.jpg'));
    expect(code).toBe(0);
    expect(stdout).toContain('3 face(s)');
  });

  it('compare --json gives similarity, score, match and threshold', async () => {
    const sample = join(FIXTURES, 'face-api-sample6.jpg');
    const same = await run('compare', sample, sample, '--json');
    expect(same.code).toBe(0);
    expect(same.last).toMatchObject({ match: true, score: 100 });
    const other = await run('compare', sample, join(FIXTURES, 'face-api-sample2.jpg'), '--json');
    expect(other.last.match).toBe(false);
    expect(other.last.similarity).toBeLessThan(other.last.threshold);
  });

  it('bad input gives a one-line error with its code and a non-zero exit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    writeFileSync(join(dir, 'empty.jpg'), '');
    writeFileSync(join(dir, 'text.jpg'), 'not an image');
    const empty = await run('detect', join(dir, 'empty.jpg'));
    expect(empty.code).toBe(1);
    expect(empty.stderr.trim()).toMatch(/^error image_empty: /);
    const text = await run('detect', join(dir, 'text.jpg'), '--json');
    expect(text.code).toBe(1);
    expect(text.last).toEqual({ error: { code: 'image_unsupported_format', message: expect.any(String) } });
    const missing = await run('compare', join(dir, 'nope.jpg'), join(dir, 'text.jpg'), '--json');
    expect(missing.last.error.code).toBe('file_unreadable');
    const usage = await run('frobnicate', '--json');
    expect(usage.last.error.code).toBe('usage');
  });

  it.skipIf(!HAS_TESTDATA)('eval --json reports accuracy, threshold, TAR, rank-1, no-face and errors', async () => {
    const { code, last } = await run('eval', join(TESTDATA, 'faces'), '--json');
    expect(code).toBe(0);
    expect(last).toMatchObject({ images: 76, no_face: 0, errors: {} });
    expect(last.accuracy).toBeGreaterThanOrEqual(0.99);
    expect(last.rank1).toBe(1);
    expect(last.tar_at_far_1e3).toBeGreaterThan(0.95);
    expect(typeof last.threshold).toBe('number');
  });
});
