import { describe, expect, it } from 'vitest';
import { DEFAULT_MATCH_SCORE, meetsQuality, scoreToSimilarity, similarityToScore } from '@facesearch/common';
import {
  applySimilarity,
  blazefaceAnchors,
  decodeBlazeface,
  estimateSimilarity,
  estimatePose,
  invertSimilarity,
  InputBuffers,
  iou,
  l2Normalise,
  laplacianVariance,
  qualityLevel,
  thresholdAtFar,
  toTensor,
  warpSimilarity,
  weightedNms,
  type ScoredBox,
} from '@facesearch/face-engine';

describe('BlazeFace anchors and decoding', () => {
  const grids = [
    { cells: 16, anchorsPerCell: 2 },
    { cells: 8, anchorsPerCell: 6 },
  ];

  it('lays out 896 anchors, cell centres in row-major order', () => {
    const anchors = blazefaceAnchors(grids);
    expect(anchors[0].length / 2).toBe(512);
    expect(anchors[1].length / 2).toBe(384);
    expect([anchors[0][0], anchors[0][1]]).toEqual([0.5 / 16, 0.5 / 16]);
    // Second anchor of the first cell repeats the centre; third anchor is the next cell to the right.
    expect([anchors[0][2], anchors[0][3]]).toEqual([0.5 / 16, 0.5 / 16]);
    expect(anchors[0][4]).toBeCloseTo(1.5 / 16);
    // Last anchor of the 8x8 grid sits in the bottom-right cell.
    const last = anchors[1].length - 2;
    expect([anchors[1][last], anchors[1][last + 1]]).toEqual([7.5 / 8, 7.5 / 8]);
  });

  it('decodes box centre, size and keypoints relative to the anchor, and thresholds the sigmoid score', () => {
    const anchors = blazefaceAnchors(grids);
    const scores = [new Float32Array(512).fill(-10), new Float32Array(384).fill(-10)];
    const regressors = [new Float32Array(512 * 16), new Float32Array(384 * 16)];
    const i = 16 * 2 * 3 + 5 * 2; // row 3, column 5, first anchor
    scores[0][i] = 2; // sigmoid 0.88
    regressors[0].set([4, -2, 40, 50, -10, -8, 10, -8, 0, 2, 0, 12, -18, 0, 18, 0], i * 16);
    const boxes = decodeBlazeface(scores, regressors, anchors, 256, 0.5);
    expect(boxes).toHaveLength(1);
    const cx = (5.5 / 16) * 256 + 4;
    const cy = (3.5 / 16) * 256 - 2;
    expect(boxes[0].x1).toBeCloseTo(cx - 20);
    expect(boxes[0].y2).toBeCloseTo(cy + 25);
    expect(boxes[0].score).toBeCloseTo(1 / (1 + Math.exp(-2)));
    expect(boxes[0].keypoints).toHaveLength(12);
    expect(boxes[0].keypoints[0]).toBeCloseTo((5.5 / 16) * 256 - 10);
    expect(decodeBlazeface(scores, regressors, anchors, 256, 0.9)).toHaveLength(0);
  });
});

describe('weighted NMS', () => {
  const box = (x: number, score: number, k = 0): ScoredBox => ({
    x1: x,
    y1: 0,
    x2: x + 10,
    y2: 10,
    score,
    keypoints: [k, k],
  });

  it('blends overlapping boxes by score and keeps the best score', () => {
    const [merged, ...rest] = weightedNms([box(0, 0.9, 0), box(1, 0.3, 4)], 0.3);
    expect(rest).toHaveLength(0);
    expect(merged.score).toBe(0.9);
    expect(merged.x1).toBeCloseTo(0.25);
    expect(merged.keypoints[0]).toBeCloseTo(1);
  });

  it('keeps boxes that do not overlap enough', () => {
    expect(weightedNms([box(0, 0.9), box(8, 0.8), box(30, 0.7)], 0.3)).toHaveLength(3);
    expect(iou(box(0, 1), box(5, 1))).toBeCloseTo(50 / 150);
  });
});

describe('similarity transform', () => {
  const truth = { a: 0.8 * Math.cos(0.3), b: 0.8 * Math.sin(0.3), tx: 12, ty: -7 };
  const from = [
    { x: 10, y: 20 },
    { x: 60, y: 22 },
    { x: 35, y: 45 },
    { x: 36, y: 70 },
  ];

  it('recovers a known rotation, scale and shift exactly from clean points', () => {
    const t = estimateSimilarity(
      from,
      from.map((p) => applySimilarity(truth, p)),
    );
    expect(t.a).toBeCloseTo(truth.a, 9);
    expect(t.b).toBeCloseTo(truth.b, 9);
    expect(t.tx).toBeCloseTo(truth.tx, 9);
    expect(t.ty).toBeCloseTo(truth.ty, 9);
  });

  it('inverts', () => {
    const p = applySimilarity(invertSimilarity(truth), applySimilarity(truth, { x: 3, y: 4 }));
    expect(p.x).toBeCloseTo(3, 9);
    expect(p.y).toBeCloseTo(4, 9);
  });

  it('never reflects, even when the points are mirrored', () => {
    const mirrored = from.map((p) => ({ x: -p.x, y: p.y }));
    const t = estimateSimilarity(from, mirrored);
    // A similarity has determinant a^2 + b^2 > 0: orientation is kept.
    expect(t.a * t.a + t.b * t.b).toBeGreaterThan(0);
  });

  it('warps with the identity transform to the same pixels', () => {
    const src = { data: Uint8Array.from({ length: 4 * 4 * 3 }, (_, i) => i * 5), width: 4, height: 4 };
    expect(Array.from(warpSimilarity(src, { a: 1, b: 0, tx: 0, ty: 0 }, 4, 4))).toEqual(Array.from(src.data));
  });

  it('samples bilinearly, black outside the image, inside and along the edges alike', () => {
    const width = 20;
    const height = 15;
    const src = { data: Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 37) % 251), width, height };
    // Rotated, scaled and shifted so that the output covers pixels inside, on the border and outside the source.
    const t = { a: 1.1 * Math.cos(0.3), b: 1.1 * Math.sin(0.3), tx: -3.5, ty: 2.25 };
    const at = (x: number, y: number, c: number) =>
      x < 0 || y < 0 || x >= width || y >= height ? 0 : src.data[(y * width + x) * 3 + c];
    const inv = invertSimilarity(t);
    const expected: number[] = [];
    for (let v = 0; v < 24; v++) {
      for (let u = 0; u < 24; u++) {
        const x = inv.a * u - inv.b * v + inv.tx;
        const y = inv.b * u + inv.a * v + inv.ty;
        const [x0, y0] = [Math.floor(x), Math.floor(y)];
        for (let c = 0; c < 3; c++) {
          if (x0 < -1 || y0 < -1 || x0 >= width || y0 >= height) {
            expected.push(0);
            continue;
          }
          const top = at(x0, y0, c) + (at(x0 + 1, y0, c) - at(x0, y0, c)) * (x - x0);
          const bottom = at(x0, y0 + 1, c) + (at(x0 + 1, y0 + 1, c) - at(x0, y0 + 1, c)) * (x - x0);
          expected.push(Math.round(top + (bottom - top) * (y - y0)));
        }
      }
    }
    const out = Array.from(warpSimilarity(src, t, 24, 24));
    expect(out).toEqual(expected);
    expect(out.filter((p) => p === 0).length).toBeGreaterThan(24 * 3); // some of it fell outside
  });
});

describe('tensor normalisation', () => {
  const rgb = Uint8Array.from([255, 0, 127, 0, 255, 0]); // two pixels

  it('NCHW BGR with (x - 127) / 128', () => {
    const t = toTensor(rgb, { name: 'x', width: 2, height: 1, layout: 'NCHW', channels: 'BGR', mean: 127, std: 128 });
    expect(t.dims).toEqual([1, 3, 1, 2]);
    expect(Array.from(t.data as Float32Array)).toEqual([0, -127 / 128, -127 / 128, 128 / 128, 128 / 128, -127 / 128]);
  });

  it('NHWC RGB with x / 127.5 - 1', () => {
    const t = toTensor(rgb, {
      name: 'x',
      width: 2,
      height: 1,
      layout: 'NHWC',
      channels: 'RGB',
      mean: 127.5,
      std: 127.5,
    });
    expect(t.dims).toEqual([1, 1, 2, 3]);
    const data = Array.from(t.data as Float32Array);
    expect(data[0]).toBeCloseTo(1);
    expect(data[1]).toBeCloseTo(-1);
    expect(data[4]).toBeCloseTo(1);
  });

  it('NCHW RGB and NHWC BGR put each channel where its layout says', () => {
    const spec = { name: 'x', width: 2, height: 1, mean: 0, std: 1 } as const;
    const chw = toTensor(rgb, { ...spec, layout: 'NCHW', channels: 'RGB' });
    expect(chw.dims).toEqual([1, 3, 1, 2]);
    expect(Array.from(chw.data as Float32Array)).toEqual([255, 0, 0, 255, 127, 0]);
    const hwc = toTensor(rgb, { ...spec, layout: 'NHWC', channels: 'BGR' });
    expect(hwc.dims).toEqual([1, 1, 2, 3]);
    expect(Array.from(hwc.data as Float32Array)).toEqual([127, 0, 255, 0, 255, 0]);
  });

  it('fills a given buffer of the input size, and refuses one of another size', () => {
    const spec = { name: 'x', width: 2, height: 1, layout: 'NCHW', channels: 'RGB', mean: 0, std: 1 } as const;
    const into = new Float32Array(6).fill(-1);
    expect(toTensor(rgb, spec, into).data).toBe(into);
    expect(Array.from(into)).toEqual([255, 0, 0, 255, 127, 0]);
    expect(() => toTensor(rgb, spec, new Float32Array(5))).toThrowError(/5 floats for a 2x1x3 input/);
  });

  it('puts RGB that fills only part of the input at its top left, the rest black, in either layout', () => {
    const pixel = Uint8Array.from([10, 20, 30]);
    const spec = { name: 'x', width: 2, height: 2, mean: 5, std: 0.5 } as const; // black: (0 - 5) / 0.5 = -10
    const chw = toTensor(pixel, { ...spec, layout: 'NCHW', channels: 'RGB' }, undefined, { width: 1, height: 1 });
    expect(Array.from(chw.data as Float32Array)).toEqual([10, -10, -10, -10, 30, -10, -10, -10, 50, -10, -10, -10]);
    const hwc = toTensor(pixel, { ...spec, layout: 'NHWC', channels: 'BGR' }, undefined, { width: 1, height: 1 });
    expect(Array.from(hwc.data as Float32Array)).toEqual([50, 30, 10, -10, -10, -10, -10, -10, -10, -10, -10, -10]);
    // A refilled buffer loses what the last input left in the black part.
    const into = new Float32Array(12).fill(99);
    toTensor(Uint8Array.from([1, 2, 3, 4, 5, 6]), { ...spec, layout: 'NCHW', channels: 'RGB' }, into, {
      width: 2,
      height: 1,
    });
    expect(Array.from(into)).toEqual([-8, -2, -10, -10, -6, 0, -10, -10, -4, 2, -10, -10]);
    expect(() =>
      toTensor(pixel, { ...spec, layout: 'NCHW', channels: 'RGB' }, undefined, { width: 2, height: 1 }),
    ).toThrowError(/do not fill 2x1/);
  });

  it('lends each run its own input buffer, and reuses it once the run settled, failed or not', async () => {
    const buffers = new InputBuffers({
      name: 'x',
      width: 2,
      height: 2,
      layout: 'NCHW',
      channels: 'RGB',
      mean: 0,
      std: 1,
    });
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const seen: Float32Array[] = [];
    const first = buffers.with(async (b) => {
      seen.push(b);
      await held;
    });
    // While the first run holds its buffer, a second gets another (runs interleave on one engine thread).
    await buffers.with(async (b) => {
      seen.push(b);
    });
    expect(seen[1]).not.toBe(seen[0]);
    expect(seen[0]).toHaveLength(12);
    release();
    await first;
    await expect(
      buffers.with(async (b) => {
        seen.push(b);
        throw new Error('run failed');
      }),
    ).rejects.toThrowError('run failed');
    expect(seen.slice(0, 2)).toContain(seen[2]);
    await buffers.with(async (b) => {
      seen.push(b);
    });
    expect(seen.slice(0, 2)).toContain(seen[3]);
  });

  it('L2-normalises', () => {
    expect(Array.from(l2Normalise(Float32Array.from([3, 4])))).toEqual([0.6000000238418579, 0.800000011920929]);
  });
});

describe('quality', () => {
  it('gives a flat image no Laplacian variance and a checkerboard a large one', () => {
    const flat = new Uint8Array(16 * 16 * 3).fill(100);
    const checker = Uint8Array.from({ length: 16 * 16 * 3 }, (_, i) =>
      (((i / 3) | 0) % 2) ^ (((i / 48) | 0) % 2) ? 255 : 0,
    );
    expect(laplacianVariance(flat, 16, 16)).toBe(0);
    expect(laplacianVariance(checker, 16, 16)).toBeGreaterThan(1000);
  });

  it('reads roll from the eye line and yaw from the nose offset', () => {
    const frontal = estimatePose({ x: 38, y: 52 }, { x: 74, y: 52 }, { x: 56, y: 72 }, { x: 56, y: 92 });
    expect(Math.abs(frontal.yaw)).toBeLessThan(1);
    expect(Math.abs(frontal.roll)).toBeLessThan(1);
    expect(Math.abs(frontal.pitch)).toBeLessThan(5);
    const tilted = estimatePose({ x: 0, y: 0 }, { x: 10, y: 10 }, { x: 0, y: 10 }, { x: -5, y: 15 });
    expect(tilted.roll).toBeCloseTo(45);
    const turned = estimatePose({ x: 38, y: 52 }, { x: 74, y: 52 }, { x: 70, y: 72 }, { x: 60, y: 92 });
    expect(turned.yaw).toBeGreaterThan(15);
  });

  it('levels and gates', () => {
    const good = { size: 200, blur: 300, yaw: 3, pitch: 2, roll: 0, score: 0.95 };
    expect(qualityLevel(good)).toBe('HIGH');
    expect(qualityLevel({ ...good, yaw: 30 })).toBe('NORMAL');
    expect(qualityLevel({ ...good, size: 25 })).toBe('LOW');
    expect(meetsQuality('NORMAL', 'HIGH')).toBe(false);
    expect(meetsQuality('LOW', 'NONE')).toBe(true);
    expect(meetsQuality('HIGH', 'NORMAL')).toBe(true);
  });
});

describe('scores and thresholds', () => {
  it('maps the cosine threshold onto the default match score, monotonically, and back', () => {
    expect(similarityToScore(0.43, 0.43)).toBe(DEFAULT_MATCH_SCORE);
    expect(similarityToScore(1, 0.43)).toBe(100);
    expect(similarityToScore(-0.2, 0.43)).toBe(0);
    expect(similarityToScore(0.6, 0.43)).toBeGreaterThan(similarityToScore(0.5, 0.43));
    expect(scoreToSimilarity(similarityToScore(0.61, 0.43), 0.43)).toBeCloseTo(0.61, 3);
  });

  it('finds the threshold that accepts at most the allowed share of impostors', () => {
    const impostor = Array.from({ length: 1000 }, (_, i) => i / 1000);
    const t = thresholdAtFar(impostor, 1e-2);
    expect(impostor.filter((s) => s >= t).length).toBe(10);
  });
});
