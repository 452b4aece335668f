import type { FaceQuality, Point, QualityLevel } from '@facesearch/common';

/** Variance of the 4-neighbour Laplacian over the grey version of an RGB image: low means blurred. */
export function laplacianVariance(rgb: Uint8Array, width: number, height: number): number {
  const grey = new Float32Array(width * height);
  for (let i = 0; i < width * height; i++) {
    grey[i] = 0.299 * rgb[i * 3] + 0.587 * rgb[i * 3 + 1] + 0.114 * rgb[i * 3 + 2];
  }
  let sum = 0;
  let sumSq = 0;
  let n = 0;
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const i = y * width + x;
      const lap = grey[i - 1] + grey[i + 1] + grey[i - width] + grey[i + width] - 4 * grey[i];
      sum += lap;
      sumSq += lap * lap;
      n++;
    }
  }
  const mean = sum / n;
  return sumSq / n - mean * mean;
}

const deg = (rad: number) => (rad * 180) / Math.PI;
const clampUnit = (x: number) => Math.max(-1, Math.min(1, x));

/**
 * Head pose estimated from eyes, nose and mouth (a rough geometric model, good enough as a quality gate):
 * roll from the eye line; yaw from how far the nose sits off the eyes' midline; pitch from where the nose sits
 * between the eye line and the mouth, relative to the ArcFace template's 0.49.
 */
export function estimatePose(
  leftEye: Point,
  rightEye: Point,
  nose: Point,
  mouth: Point,
): { yaw: number; pitch: number; roll: number } {
  const roll = Math.atan2(rightEye.y - leftEye.y, rightEye.x - leftEye.x);
  const cos = Math.cos(-roll);
  const sin = Math.sin(-roll);
  const mid = { x: (leftEye.x + rightEye.x) / 2, y: (leftEye.y + rightEye.y) / 2 };
  const upright = (p: Point) => ({
    x: (p.x - mid.x) * cos - (p.y - mid.y) * sin,
    y: (p.x - mid.x) * sin + (p.y - mid.y) * cos,
  });
  const eyeDistance = Math.hypot(rightEye.x - leftEye.x, rightEye.y - leftEye.y) || 1;
  const n = upright(nose);
  const m = upright(mouth);
  // A frontal nose tip sits on the midline; at 90 degrees of yaw it is about one eye distance off it.
  const yaw = deg(Math.asin(clampUnit(n.x / eyeDistance)));
  const verticalRatio = m.y > 0 ? n.y / m.y : 0.49;
  const pitch = deg(Math.asin(clampUnit((verticalRatio - 0.49) * 2.5)));
  return { yaw: round1(yaw), pitch: round1(pitch), roll: round1(deg(roll)) };
}

const round1 = (x: number) => Math.round(x * 10) / 10;

export interface QualityThresholds {
  /** [NORMAL, HIGH] minimum face size in pixels. */
  size: [number, number];
  /** [NORMAL, HIGH] minimum Laplacian variance. */
  blur: [number, number];
  /** [NORMAL, HIGH] maximum |yaw| and |pitch| in degrees. */
  pose: [number, number];
  /** [NORMAL, HIGH] minimum detection score. */
  score: [number, number];
}

export const DEFAULT_QUALITY_THRESHOLDS: QualityThresholds = {
  size: [40, 80],
  blur: [15, 60],
  pose: [40, 25],
  score: [0.6, 0.8],
};

export function qualityLevel(
  q: Omit<FaceQuality, 'level'>,
  t: QualityThresholds = DEFAULT_QUALITY_THRESHOLDS,
): QualityLevel {
  const passes = (i: 0 | 1) =>
    q.size >= t.size[i] &&
    q.blur >= t.blur[i] &&
    Math.abs(q.yaw) <= t.pose[i] &&
    Math.abs(q.pitch) <= t.pose[i] &&
    q.score >= t.score[i];
  if (passes(1)) return 'HIGH';
  if (passes(0)) return 'NORMAL';
  return 'LOW';
}
