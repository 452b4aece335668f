import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cosineSimilarity, type FaceSearchError } from '@facesearch/common';
import type { AnalyzeResult } from '@facesearch/common';
import { FaceEngine } from '@facesearch/face-engine';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAS_TESTDATA, NO_TESTDATA_REASON, TESTDATA, testdata } from './helpers';

if (!HAS_TESTDATA) console.warn(NO_TESTDATA_REASON);

describe.skipIf(!HAS_TESTDATA)('real photos from ../shared/testdata', () => {
  let engine: FaceEngine;
  /** Every photo under faces/, analysed once: path -> identity and faces found. */
  const analysed = new Map<string, { identity: string; faces: AnalyzeResult['faces'] }>();

  beforeAll(async () => {
    engine = await FaceEngine.create();
    const rows = readFileSync(join(TESTDATA, 'faces.tsv'), 'utf8').trim().split('\n').slice(1);
    for (const [path, identity] of rows.map((line) => line.split('\t'))) {
      analysed.set(path, { identity, faces: (await engine.analyze(testdata(path), { maxFaces: 5 })).faces });
    }
  });
  afterAll(() => engine?.close());

  it('finds exactly one face, the labelled person, in every photo under faces/', () => {
    expect(analysed.size).toBe(76);
    const embeddings = new Map<string, Float32Array[]>();
    for (const [path, { identity, faces }] of analysed) {
      expect(faces.length, `${path}: faces found`).toBe(1);
      const list = embeddings.get(identity) ?? [];
      list.push(faces[0].embedding);
      embeddings.set(identity, list);
    }
    // "The labelled person": each face is closer to its own identity's other photos than the threshold.
    for (const [identity, list] of embeddings) {
      for (let i = 1; i < list.length; i++) {
        expect(cosineSimilarity(list[0], list[i]), `${identity} photo 1 vs ${i + 1}`).toBeGreaterThan(
          engine.matchThreshold,
        );
      }
    }
  });

  it('finds two faces in each photo under multi/', async () => {
    for (const file of readdirSync(join(TESTDATA, 'multi'))) {
      const result = await engine.detect(testdata(join('multi', file)));
      expect(result.faces.length, file).toBe(2);
      for (const face of result.faces) expect(face.quality.level, file).not.toBe('LOW');
    }
  });

  it('finds no face under noface/', async () => {
    for (const file of readdirSync(join(TESTDATA, 'noface'))) {
      expect((await engine.detect(testdata(join('noface', file)))).faces, file).toHaveLength(0);
    }
  });

  it('gives each malformed file under bad/ its typed error, and finds the face in the valid ones', async () => {
    const expectedErrors: Record<string, string> = {
      'huge_header_only_100000x100000.png': 'image_too_many_pixels',
      'text_renamed.jpg': 'image_unsupported_format',
      'truncated_obama2.jpg': 'image_corrupt',
      'zero_bytes.jpg': 'image_empty',
    };
    const reference = (await engine.analyze(testdata('faces/obama/1.jpg'), { maxFaces: 1 })).faces[0].embedding;
    for (const file of readdirSync(join(TESTDATA, 'bad'))) {
      const input = testdata(join('bad', file));
      if (expectedErrors[file]) {
        await expect(engine.detect(input), file).rejects.toMatchObject({
          code: expectedErrors[file],
        } satisfies Partial<FaceSearchError>);
        continue;
      }
      // WebP, GIF, EXIF-rotated and RGBA photos of Obama: one upright face, matching a reference photo of him.
      const result = await engine.analyze(input);
      expect(result.faces.length, file).toBe(1);
      expect(cosineSimilarity(result.faces[0].embedding, reference), file).toBeGreaterThan(engine.matchThreshold);
      const { left_eye, right_eye, mouth } = result.faces[0].landmarks;
      expect(mouth.y, `${file}: upright after EXIF orientation`).toBeGreaterThan((left_eye.y + right_eye.y) / 2);
    }
  });

  const embeddingOf = (path: string) => {
    const faces = analysed.get(path)?.faces;
    if (!faces?.length) throw new Error(`no face analysed for ${path}`);
    return faces[0].embedding;
  };

  it('verifies pairs.tsv with at least 99% accuracy at the default threshold', () => {
    const pairs = readFileSync(join(TESTDATA, 'pairs.tsv'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('\t'));
    let correct = 0;
    for (const [a, b, same] of pairs) {
      const match = cosineSimilarity(embeddingOf(a), embeddingOf(b)) >= engine.matchThreshold;
      if (match === (same === '1')) correct++;
    }
    expect(pairs.length).toBe(308);
    expect(correct / pairs.length).toBeGreaterThanOrEqual(0.99);
  });

  it('finds every person at rank 1 when each photo is searched against all others', () => {
    const paths = [...analysed.keys()];
    const identity = (p: string) => analysed.get(p)?.identity;
    // Identities with a single photo have nobody to be found as; they are not searched.
    const searchable = paths.filter((p) => paths.some((q) => q !== p && identity(q) === identity(p)));
    expect(searchable.length).toBe(75);
    for (const probe of searchable) {
      let best = { path: '', similarity: -2 };
      for (const other of paths) {
        if (other === probe) continue;
        const similarity = cosineSimilarity(embeddingOf(probe), embeddingOf(other));
        if (similarity > best.similarity) best = { path: other, similarity };
      }
      expect(identity(best.path), `${probe} found ${best.path}`).toBe(identity(probe));
    }
  });
});
