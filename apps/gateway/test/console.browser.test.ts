/**
 * The web console end to end in a real browser: Debian's headless Chromium driven by playwright-core, against
 * the embedded gateway (real engine, temp DATA_DIR) listening on 127.0.0.1. Screenshots go to
 * test-artifacts/console/. Skipped, with the reason, when Chromium, the models or any test photo is missing.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_KEY, startTestGateway, type TestGateway } from './helpers';

const ROOT = resolve(__dirname, '../../..');
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts', 'console');
const TESTDATA_FACES = resolve(ROOT, '..', 'shared', 'testdata', 'faces');
const FIXTURES = join(ROOT, '.fixtures');
const MODELS = join(ROOT, 'models');

/** Photos: the shared test set when present, else the npm-shipped samples (different people, one photo each). */
interface Photos {
  /** Enrolled as user `person`. */
  enrol: string;
  /** Another photo of the same person (the same file when only one exists). */
  probe: string;
  person: string;
  /** user id -> photos, for the import folder. */
  importSet: Record<string, string[]>;
}

function findPhotos(): Photos | null {
  if (existsSync(TESTDATA_FACES)) {
    const faces = (p: string, n: number) => join(TESTDATA_FACES, p, `${n}.jpg`);
    return {
      enrol: faces('obama', 1),
      probe: faces('obama', 2),
      person: 'obama',
      importSet: {
        kit_harington: [faces('kit_harington', 1), faces('kit_harington', 2)],
        rose_leslie: [faces('rose_leslie', 1), faces('rose_leslie', 2)],
        deepface_c01: [faces('deepface_c01', 1)],
      },
    };
  }
  const sample = (n: number) => join(FIXTURES, `face-api-sample${n}.jpg`);
  if (![1, 3, 4, 6].every((n) => existsSync(sample(n)))) return null;
  return {
    enrol: sample(6),
    probe: sample(6),
    person: 'sample6',
    importSet: { sample1: [sample(1)], sample3: [sample(3)], sample4: [sample(4)] },
  };
}

const photos = findPhotos();
const haveModels = existsSync(MODELS) && readdirSync(MODELS).some((f) => f.endsWith('.onnx'));
const skipReason = !existsSync(CHROMIUM)
  ? `${CHROMIUM} not found (apt-get install -y --no-install-recommends chromium, or pnpm services:install)`
  : !haveModels
    ? `no .onnx models in ${MODELS} (run pnpm models)`
    : !photos
      ? `no test photos: neither ${TESTDATA_FACES} nor the npm-shipped samples in ${FIXTURES}`
      : null;
if (skipReason) console.warn(`[console.browser] skipped: ${skipReason}`);

describe.skipIf(skipReason !== null)('web console in headless Chromium', () => {
  const p = photos as Photos;
  let gw: TestGateway;
  let base: string;
  let context: BrowserContext;
  let page: Page;
  let work: string;
  const consoleErrors: string[] = [];

  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    work = mkdtempSync(join(tmpdir(), 'facesearch-console-'));
    gw = await startTestGateway({ IMPORT_CONCURRENCY: '2' });
    await gw.app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(gw.app.getHttpServer().address() as AddressInfo).port}`;
    context = await chromium.launchPersistentContext(join(work, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 860 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(60_000);
    // Failed requests (the wrong key's 401) are logged by Chromium too; only script errors count.
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    // Nothing may load from the internet: every request must go to the gateway.
    await context.route('**/*', (route) =>
      route.request().url().startsWith(base) || route.request().url().startsWith('blob:')
        ? route.continue()
        : route.abort(),
    );
  });

  afterAll(async () => {
    await context?.close();
    await gw?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('refuses a wrong key with the API message, then signs in', async () => {
    await page.goto(`${base}/`);
    await page.fill('#api-key', 'wrong-key-0000000000');
    await page.click('form.signin button[type=submit]');
    await expect.poll(() => page.textContent('form.signin .error')).toMatch(/API key/i);
    await shot('01-sign-in-error');
    await page.fill('#api-key', DEFAULT_KEY);
    await page.click('form.signin button[type=submit]');
    await page.waitForSelector('#nav:not([hidden])');
    expect(await page.evaluate(() => sessionStorage.getItem('facesearch.apiKey'))).toBe(DEFAULT_KEY);
  });

  it('creates a group and enrols a face, shown with its thumbnail', async () => {
    await page.fill('#new-group', 'people');
    await page.click('form.inline button[type=submit]');
    await page.waitForSelector('#group-list li.active >> text=people');
    await page.fill('#enrol-user', p.person);
    await page.fill('#enrol-info', 'enrolled from the browser test');
    await page.setInputFiles('input[name=enrol-image]', p.enrol);
    await page.click('form.enrol button[type=submit]');
    const user = page.locator(`article.user[data-user="${p.person}"]`);
    await user.waitFor();
    // The thumbnail is fetched with the key and shown as an object URL.
    await expect
      .poll(() => user.locator('img.thumb').evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth))
      .toBe(160);
    expect(await page.textContent('form.enrol .ok-text')).toContain(`Enrolled ${p.person}`);
    await shot('02-library');
  });

  it('searches another photo of that person and shows the match with a score', async () => {
    await page.click('#nav a[data-view=search]');
    await page.waitForSelector('#search-groups input[value=people]');
    expect(await page.isChecked('#search-groups input[value=people]')).toBe(true);
    await page.setInputFiles('input[name=search-image]', p.probe);
    const match = page.locator('#search-results article.face-result').first().locator('li.match').first();
    await match.waitFor();
    expect(await match.locator('.match-user').textContent()).toBe(p.person);
    const score = Number(await match.locator('.score-value').textContent());
    expect(score).toBeGreaterThanOrEqual(80);
    await expect
      .poll(() => match.locator('img.thumb').evaluate((img: HTMLImageElement) => img.naturalWidth))
      .toBeGreaterThan(0);
    await shot('03-search');
  });

  it('detects faces and draws them', async () => {
    await page.click('#nav a[data-view=detect]');
    await page.setInputFiles('input[name=detect-image]', p.probe);
    await page.waitForSelector('#detect-faces table.data tbody tr');
    const faces = Number(/(\d+) faces?/.exec((await page.textContent('#detect-summary')) ?? '')?.[1]);
    expect(faces).toBeGreaterThanOrEqual(1);
    expect(await page.locator('#detect-faces tbody tr').count()).toBe(faces);
    expect(await page.isVisible('#detect-canvas')).toBe(true);
    await shot('04-detect');
  });

  it('compares two photos side by side', async () => {
    await page.click('#nav a[data-view=compare]');
    await page.setInputFiles('input[name=compare-a]', p.enrol);
    await page.setInputFiles('input[name=compare-b]', p.probe);
    await page.click('#compare-run:not([disabled])');
    await page.waitForSelector('#compare-result:not([hidden])');
    expect(await page.textContent('#compare-result .decision')).toBe('Same person');
    await shot('05-compare');
  });

  it('imports a folder with live progress up to 100% and lists the failed file', async () => {
    const folder = join(work, 'to-import');
    let total = 0;
    for (const [user, files] of Object.entries(p.importSet)) {
      mkdirSync(join(folder, user), { recursive: true });
      for (const [i, f] of files.entries()) copyFileSync(f, join(folder, user, `${i + 1}.jpg`));
      total += files.length;
    }
    mkdirSync(join(folder, 'broken'));
    writeFileSync(join(folder, 'broken', 'not-a-photo.jpg'), 'this is text, not a JPEG\n'.repeat(20));
    writeFileSync(join(folder, 'readme.txt'), 'skipped: not in a user folder');
    total += 1;

    await page.click('#nav a[data-view=import]');
    await page.fill('#import-group', 'imported');
    await page.setInputFiles('#import-folder', folder);
    await expect.poll(() => page.textContent('#import-plan')).toContain(`${total} photos of`);
    await page.click('#import-start');
    await expect.poll(() => page.textContent('#import-progress-label')).toMatch(/^(Importing|Done)/);
    await shot('06-import-progress');
    await page.waitForSelector('#import-status:text("completed")', { timeout: 120_000 });
    expect(await page.textContent('#import-progress-label')).toBe(`Done: ${total} / ${total} (100%)`);
    const counts = await page.textContent('#import-counts');
    expect(counts).toContain(`${total - 1} succeeded`);
    expect(counts).toContain('1 failed');
    const failedRow = page.locator('#import-failed tbody tr');
    await failedRow.first().waitFor();
    expect(await failedRow.count()).toBe(1);
    expect(await failedRow.locator('td').nth(0).textContent()).toBe('broken/not-a-photo.jpg');
    expect(await failedRow.locator('td code').textContent()).toMatch(/^image_/);
    await shot('07-import-done');

    // The imported users appear in the library.
    await page.click('#nav a[data-view=library]');
    await page.click('#group-list button:text("imported")');
    await page.waitForSelector(`article.user[data-user="${Object.keys(p.importSet)[0]}"] img.thumb`);
    await expect
      .poll(() =>
        page.$$eval('#users img.thumb', (imgs) => imgs.every((i) => (i as HTMLImageElement).naturalWidth > 0)),
      )
      .toBe(true);
    await shot('08-library-imported');
  }, 180_000);

  it('signs out', async () => {
    await page.click('#sign-out');
    await page.waitForSelector('form.signin');
    expect(await page.evaluate(() => sessionStorage.getItem('facesearch.apiKey'))).toBeNull();
    expect(consoleErrors).toEqual([]);
  });
});
