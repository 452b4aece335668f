import { cosineSimilarity } from '@facesearch/common';
import { type BlazeFaceDetector, FaceEngine } from '@facesearch/face-engine';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { fixture, FIXTURES, HAS_FIXTURES } from './helpers';

// These photos ship inside an npm package and are fetched by `pnpm install`, so they run on any machine.
describe.skipIf(!HAS_FIXTURES)(`group photos from @vladmandic/face-api (${FIXTURES})`, () => {
  let engine: FaceEngine;
  beforeAll(async () => {
    engine = await FaceEngine.create();
  });
  afterAll(() => engine?.close());

  it('answers analyses run at once on one engine as it answers them one after another', async () => {
    // Runs on one thread interleave (decodes are asynchronous, and onnxruntime-node starts a run after a
    // setImmediate): each must keep its own input tensor until its run is over.
    const photos = ['face-api-sample1.jpg', 'face-api-sample2.jpg', 'face-api-sample5.jpg'].map(fixture);
    const alone = [];
    for (const photo of photos) alone.push(await engine.analyze(photo));
    const together = await Promise.all([...photos, ...photos].map((photo) => engine.analyze(photo)));
    for (const [i, result] of together.entries()) {
      const expected = alone[i % photos.length];
      expect(result.faces.map((f) => f.box)).toEqual(expected.faces.map((f) => f.box));
      for (const [j, face] of result.faces.entries()) {
        expect(cosineSimilarity(face.embedding, expected.faces[j].embedding)).toBeGreaterThan(0.9999);
      }
    }
  });

  it('finds every face in group photos (counted by eye: 3 on the sofa, 5 on the stairs)', async () => {
    expect((await engine.detect(fixture('face-api-sample2.jpg'))).faces).toHaveLength(3);
    expect((await engine.detect(fixture('face-api-sample5.jpg'))).faces).toHaveLength(5);
  });

  it('orders faces largest first and honours max_faces and min_face_size', async () => {
    const all = (await engine.detect(fixture('face-api-sample5.jpg'))).faces;
    const sizes = all.map((f) => f.quality.size);
    expect(sizes).toEqual([...sizes].sort((a, b) => b - a));
    const two = (await engine.detect(fixture('face-api-sample5.jpg'), { maxFaces: 2 })).faces;
    expect(two.map((f) => f.box)).toEqual(all.slice(0, 2).map((f) => f.box));
    const big = (await engine.detect(fixture('face-api-sample5.jpg'), { minFaceSize: sizes[1] + 1 })).faces;
    expect(big).toHaveLength(1);
  });

  it('finds faces far smaller than the detector input in a large photo (tiling)', async () => {
    // Five faces cut from a group photo, shrunk to about 1/25 of the canvas width (a 230 px square around a
    // 128 px face) and pasted on a large canvas: at 256 px for the whole canvas each face would be 10 px.
    const source = fixture('face-api-sample5.jpg');
    const faces = (await engine.detect(source)).faces;
    const tiles = await Promise.all(
      faces.slice(0, 5).map((f) => {
        const pad = f.box.width * 0.4;
        return sharp(source)
          .extract({
            left: Math.max(0, Math.round(f.box.x - pad)),
            top: Math.max(0, Math.round(f.box.y - pad)),
            width: Math.round(f.box.width + 2 * pad),
            height: Math.round(f.box.height + 2 * pad),
          })
          .resize(230, 230)
          .toBuffer();
      }),
    );
    const canvas = await sharp({ create: { width: 3200, height: 2000, channels: 3, background: '#7a8a7a' } })
      .composite(tiles.map((input, i) => ({ input, left: 150 + i * 600, top: i % 2 ? 1550 : 250 })))
      .jpeg()
      .toBuffer();
    const found = (await engine.detect(canvas)).faces;
    expect(found).toHaveLength(tiles.length);
  });

  it('decodes a large JPEG small first, and decodes it whole only for faces too small in the preview', async () => {
    const group = fixture('face-api-sample2.jpg');
    const [largest, second] = (await engine.detect(group)).faces;
    const around = (box: { x: number; y: number; width: number; height: number }, height: number) =>
      sharp(group)
        .extract({
          left: Math.round(box.x - box.width * 0.5),
          top: Math.round(box.y - box.height * 0.6),
          width: Math.round(box.width * 2),
          height: Math.round(box.height * 2.4),
        })
        .resize({ height })
        .toBuffer();
    // A portrait, 1,400 px tall with the face ~40 % of it: the 512 px preview is enough.
    const portrait = await sharp(await around(largest.box, 1400))
      .jpeg({ quality: 92 })
      .toBuffer();
    // A large face (no tiles pass) beside a smaller one, ~60 px in the preview: too small there for its crop.
    const pair = await sharp({ create: { width: 2400, height: 1400, channels: 3, background: '#7a8a7a' } })
      .composite([
        { input: await around(largest.box, 1250), left: 100, top: 75 },
        { input: await around(second.box, 700), left: 1500, top: 350 },
      ])
      .jpeg({ quality: 92 })
      .toBuffer();
    const whole = await FaceEngine.create({ previewMaxSide: 0 });
    try {
      const decode = vi.spyOn(engine, 'decode');
      const quick = await engine.analyze(portrait);
      expect(decode.mock.calls.map((call) => call[2])).toEqual([512]);
      const full = await whole.analyze(portrait);
      expect(quick.faces).toHaveLength(1);
      expect(full.faces).toHaveLength(1);
      expect(Math.abs(quick.faces[0].box.x - full.faces[0].box.x)).toBeLessThan(full.faces[0].box.width * 0.05);
      // The model sees a differently resampled 256 px input, which moves the landmarks a little (as re-encoding
      // the photo would): 0.96-0.99 measured; a wrong mapping from the preview falls far below.
      expect(cosineSimilarity(quick.faces[0].embedding, full.faces[0].embedding)).toBeGreaterThan(0.93);

      // A face too small in the preview, or faces small enough for the tiles pass (the group photo): the crops come
      // from the working-size decode, as without a preview; the full-frame pass is not run again on it (the model
      // sees 256 px of either decode), so the boxes and vectors match closely rather than exactly.
      for (const [photo, faces] of [
        [pair, 2],
        [group, 3],
      ] as const) {
        decode.mockClear();
        const result = await engine.analyze(photo);
        expect(decode.mock.calls.map((call) => call[2])).toEqual([512, undefined]);
        expect(result.faces).toHaveLength(faces);
        const expected = await whole.analyze(photo);
        for (const [i, face] of result.faces.entries()) {
          const theirs = expected.faces[i];
          expect(Math.abs(face.box.x - theirs.box.x)).toBeLessThan(theirs.box.width * 0.05);
          expect(Math.abs(face.box.width - theirs.box.width)).toBeLessThan(theirs.box.width * 0.05);
          expect(cosineSimilarity(face.embedding, theirs.embedding)).toBeGreaterThan(0.93);
        }
      }
      decode.mockRestore();
    } finally {
      await whole.close();
    }
  });

  it('looks closer at the largest face only when it is the one wanted (max_faces 1): one model run, not four tiles', async () => {
    // The stairs photo's faces are small for the full frame: max_faces > 1 runs the tiles pass.
    const group = fixture('face-api-sample5.jpg');
    const detector = (engine as unknown as { detector: BlazeFaceDetector }).detector;
    const around = vi.spyOn(detector, 'detectAround');
    const tiles = vi.spyOn(detector, 'detectTiles');
    const run = vi.spyOn(detector as unknown as { detectRegion: () => unknown }, 'detectRegion');
    try {
      const all = await engine.analyze(group, { maxFaces: 5 });
      expect([around.mock.calls.length, tiles.mock.calls.length, run.mock.calls.length]).toEqual([0, 1, 5]);
      for (const spy of [around, tiles, run]) spy.mockClear();
      const one = await engine.analyze(group, { maxFaces: 1 });
      expect([around.mock.calls.length, tiles.mock.calls.length, run.mock.calls.length]).toEqual([1, 0, 2]);

      // The same face as the largest of the tiles' answer...
      const [largest] = all.faces;
      expect(one.faces).toHaveLength(1);
      expect(Math.abs(one.faces[0].box.x - largest.box.x)).toBeLessThan(largest.box.width * 0.1);
      expect(Math.abs(one.faces[0].box.width - largest.box.width)).toBeLessThan(largest.box.width * 0.1);
      // ...aligned at least as well: against the face cut out and enlarged (where the full frame alone sees it
      // large), 0.98 measured for the close-up and 0.92 for the tiles; a bad alignment falls far below.
      const pad = largest.box.width * 0.8;
      const left = Math.max(0, Math.round(largest.box.x - pad));
      const top = Math.max(0, Math.round(largest.box.y - pad));
      const cut = await sharp(group)
        .extract({
          left,
          top,
          width: Math.min(all.image.width - left, Math.round(largest.box.width + 2 * pad)),
          height: Math.min(all.image.height - top, Math.round(largest.box.height + 2 * pad)),
        })
        .resize({ width: 400 })
        .jpeg({ quality: 95 })
        .toBuffer();
      const [reference] = (await engine.analyze(cut, { maxFaces: 1 })).faces;
      const closeUp = cosineSimilarity(one.faces[0].embedding, reference.embedding);
      expect(closeUp).toBeGreaterThan(0.95);
      expect(closeUp).toBeGreaterThanOrEqual(cosineSimilarity(largest.embedding, reference.embedding));
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('sees the same person through resizing and re-encoding', async () => {
    const source = fixture('face-api-sample6.jpg');
    const original = await engine.analyze(source);
    const small = await engine.analyze(await sharp(source).resize(800).webp({ quality: 70 }).toBuffer());
    expect(small.faces).toHaveLength(original.faces.length);
    for (const face of original.faces) {
      const best = Math.max(...small.faces.map((s) => cosineSimilarity(s.embedding, face.embedding)));
      expect(best).toBeGreaterThan(0.7);
    }
  });

  it('finds the same faces in a photo rotated 90 degrees', async () => {
    const source = fixture('face-api-sample2.jpg');
    const upright = await engine.analyze(source);
    const turned = await engine.analyze(await sharp(source).rotate(90).toBuffer());
    expect(turned.faces).toHaveLength(upright.faces.length);
    for (const face of upright.faces) {
      const best = Math.max(...turned.faces.map((s) => cosineSimilarity(s.embedding, face.embedding)));
      expect(best).toBeGreaterThan(engine.matchThreshold);
    }
  });
});
