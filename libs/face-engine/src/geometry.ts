import type { Point } from '@facesearch/common';

/** A 2-D similarity transform x' = a*x - b*y + tx, y' = b*x + a*y + ty (rotation, uniform scale, shift). */
export interface Similarity {
  a: number;
  b: number;
  tx: number;
  ty: number;
}

/**
 * Least-squares similarity transform mapping `from` onto `to` (Umeyama without reflection).
 * Closed form for 2-D: with centred points, a = sum(x.u + y.v)/sum|p|^2, b = sum(x.v - y.u)/sum|p|^2.
 */
export function estimateSimilarity(from: Point[], to: Point[]): Similarity {
  if (from.length !== to.length || from.length < 2) throw new Error('need at least two point pairs');
  const n = from.length;
  let fx = 0;
  let fy = 0;
  let gx = 0;
  let gy = 0;
  for (let i = 0; i < n; i++) {
    fx += from[i].x;
    fy += from[i].y;
    gx += to[i].x;
    gy += to[i].y;
  }
  fx /= n;
  fy /= n;
  gx /= n;
  gy /= n;
  let norm = 0;
  let dotSum = 0;
  let crossSum = 0;
  for (let i = 0; i < n; i++) {
    const x = from[i].x - fx;
    const y = from[i].y - fy;
    const u = to[i].x - gx;
    const v = to[i].y - gy;
    norm += x * x + y * y;
    dotSum += x * u + y * v;
    crossSum += x * v - y * u;
  }
  if (norm === 0) throw new Error('source points coincide');
  const a = dotSum / norm;
  const b = crossSum / norm;
  return { a, b, tx: gx - (a * fx - b * fy), ty: gy - (b * fx + a * fy) };
}

export function applySimilarity(t: Similarity, p: Point): Point {
  return { x: t.a * p.x - t.b * p.y + t.tx, y: t.b * p.x + t.a * p.y + t.ty };
}

export function invertSimilarity(t: Similarity): Similarity {
  const det = t.a * t.a + t.b * t.b;
  const a = t.a / det;
  const b = -t.b / det;
  return { a, b, tx: -(a * t.tx - b * t.ty), ty: -(b * t.tx + a * t.ty) };
}

/** Scale factor of the transform (output pixels per input pixel). */
export function similarityScale(t: Similarity): number {
  return Math.hypot(t.a, t.b);
}

/**
 * Renders an output image of width x height by sampling `src` (RGB, row-major) through the inverse of
 * `srcToDst`, with bilinear interpolation; outside pixels are black.
 */
export function warpSimilarity(
  src: { data: Uint8Array; width: number; height: number },
  srcToDst: Similarity,
  width: number,
  height: number,
): Uint8Array {
  const inv = invertSimilarity(srcToDst);
  const out = new Uint8Array(width * height * 3);
  const sw = src.width;
  const sh = src.height;
  const sdata = src.data;
  const { a, b, tx, ty } = inv;
  for (let v = 0; v < height; v++) {
    for (let u = 0; u < width; u++) {
      const x = a * u - b * v + tx;
      const y = b * u + a * v + ty;
      const x0 = Math.floor(x);
      const y0 = Math.floor(y);
      const o = (v * width + u) * 3;
      if (x0 < -1 || y0 < -1 || x0 >= sw || y0 >= sh) continue;
      const dx = x - x0;
      const dy = y - y0;
      // All four neighbours inside (nearly every pixel): read directly, without a bounds check per read.
      const inside = x0 >= 0 && y0 >= 0 && x0 + 1 < sw && y0 + 1 < sh;
      const i00 = (y0 * sw + x0) * 3;
      const i01 = i00 + sw * 3;
      for (let c = 0; c < 3; c++) {
        const p00 = inside ? sdata[i00 + c] : pixel(sdata, sw, sh, x0, y0, c);
        const p10 = inside ? sdata[i00 + 3 + c] : pixel(sdata, sw, sh, x0 + 1, y0, c);
        const p01 = inside ? sdata[i01 + c] : pixel(sdata, sw, sh, x0, y0 + 1, c);
        const p11 = inside ? sdata[i01 + 3 + c] : pixel(sdata, sw, sh, x0 + 1, y0 + 1, c);
        const top = p00 + (p10 - p00) * dx;
        const bottom = p01 + (p11 - p01) * dx;
        out[o + c] = Math.round(top + (bottom - top) * dy);
      }
    }
  }
  return out;
}

function pixel(data: Uint8Array, w: number, h: number, x: number, y: number, c: number): number {
  if (x < 0 || y < 0 || x >= w || y >= h) return 0;
  return data[(y * w + x) * 3 + c];
}

export interface ScoredBox {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
  /** Keypoints as flat [x0, y0, x1, y1, ...]. */
  keypoints: number[];
}

/** The box in pixels `factor` times larger (another decode of the same image). */
export function scaleBox(b: ScoredBox, factor: number): ScoredBox {
  return {
    x1: b.x1 * factor,
    y1: b.y1 * factor,
    x2: b.x2 * factor,
    y2: b.y2 * factor,
    score: b.score,
    keypoints: b.keypoints.map((k) => k * factor),
  };
}

export function iou(a: ScoredBox, b: ScoredBox): number {
  const ix = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
  const iy = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const inter = ix * iy;
  const union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * MediaPipe-style weighted NMS: each cluster of boxes overlapping the best remaining one by at least `threshold`
 * IoU is blended into one box (weights = scores), keeping the best score. Steadier boxes and keypoints than hard NMS.
 */
export function weightedNms(boxes: ScoredBox[], threshold: number): ScoredBox[] {
  const remaining = [...boxes].sort((p, q) => q.score - p.score);
  const kept: ScoredBox[] = [];
  while (remaining.length > 0) {
    const best = remaining[0];
    const cluster: ScoredBox[] = [];
    const rest: ScoredBox[] = [];
    for (const box of remaining) (iou(best, box) >= threshold ? cluster : rest).push(box);
    let total = 0;
    const blended: ScoredBox = {
      x1: 0,
      y1: 0,
      x2: 0,
      y2: 0,
      score: best.score,
      keypoints: best.keypoints.map(() => 0),
    };
    for (const box of cluster) {
      total += box.score;
      blended.x1 += box.x1 * box.score;
      blended.y1 += box.y1 * box.score;
      blended.x2 += box.x2 * box.score;
      blended.y2 += box.y2 * box.score;
      box.keypoints.forEach((k, i) => {
        blended.keypoints[i] += k * box.score;
      });
    }
    blended.x1 /= total;
    blended.y1 /= total;
    blended.x2 /= total;
    blended.y2 /= total;
    blended.keypoints = blended.keypoints.map((k) => k / total);
    kept.push(blended);
    remaining.splice(0, remaining.length, ...rest);
  }
  return kept;
}
