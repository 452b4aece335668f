import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MODEL_DIR, FaceEngine } from '@facesearch/face-engine';
import { describe, expect, it } from 'vitest';

const pinned = JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, 'manifest.json'), 'utf8')).models;
const embedderEntry = pinned.find((m: { role: string }) => m.role === 'embedder');

/** Writes a one-model manifest into a temp folder, as an operator would for their own model. */
function manifest(overrides: Record<string, unknown>, fileBytes?: Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), 'manifest-'));
  if (fileBytes) writeFileSync(join(dir, 'model.onnx'), fileBytes);
  const path = join(dir, 'embedder.json');
  writeFileSync(path, JSON.stringify({ ...embedderEntry, ...overrides }));
  return path;
}

describe('model manifests', () => {
  const weights = readFileSync(join(DEFAULT_MODEL_DIR, embedderEntry.file));

  it('configures another embedder from a manifest, without code changes', async () => {
    const path = manifest({ id: 'my-arcface@2', file: 'model.onnx', matchThreshold: 0.5 }, weights);
    const engine = await FaceEngine.create({ embedderManifest: path });
    expect(engine.modelId).toBe('my-arcface@2');
    expect(engine.matchThreshold).toBe(0.5);
    expect(engine.embeddingDim).toBe(512);
    await engine.close();
  });

  it('refuses a missing model file with model_missing and a changed one with model_corrupt', async () => {
    await expect(FaceEngine.create({ embedderManifest: manifest({ file: 'absent.onnx' }) })).rejects.toMatchObject({
      code: 'model_missing',
    });
    const tampered = Buffer.from(weights);
    tampered[tampered.length - 1] ^= 0xff;
    expect(createHash('sha256').update(tampered).digest('hex')).not.toBe(embedderEntry.sha256);
    await expect(
      FaceEngine.create({ embedderManifest: manifest({ file: 'model.onnx' }, tampered) }),
    ).rejects.toMatchObject({ code: 'model_corrupt' });
  });
});
