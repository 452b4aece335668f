import type { ScoredBox } from './geometry';

export interface AnchorGrid {
  cells: number;
  anchorsPerCell: number;
}

/** Anchor centres (normalised 0..1), grid by grid, row-major, `anchorsPerCell` repeats per cell. */
export function blazefaceAnchors(grids: AnchorGrid[]): Float32Array[] {
  return grids.map(({ cells, anchorsPerCell }) => {
    const anchors = new Float32Array(cells * cells * anchorsPerCell * 2);
    let i = 0;
    for (let y = 0; y < cells; y++) {
      for (let x = 0; x < cells; x++) {
        for (let k = 0; k < anchorsPerCell; k++) {
          anchors[i++] = (x + 0.5) / cells;
          anchors[i++] = (y + 0.5) / cells;
        }
      }
    }
    return anchors;
  });
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-Math.max(-100, Math.min(100, x))));

/**
 * Turns raw BlazeFace outputs into boxes in input pixels. Regressor layout per anchor: dx, dy, w, h, then six
 * keypoints (kx, ky), all in input pixels relative to the anchor centre.
 */
export function decodeBlazeface(
  scores: Float32Array[],
  regressors: Float32Array[],
  anchors: Float32Array[],
  inputSize: number,
  scoreThreshold: number,
): ScoredBox[] {
  const boxes: ScoredBox[] = [];
  for (let g = 0; g < anchors.length; g++) {
    const count = anchors[g].length / 2;
    const reg = regressors[g];
    const stride = reg.length / count;
    for (let i = 0; i < count; i++) {
      const score = sigmoid(scores[g][i]);
      if (score < scoreThreshold) continue;
      const ax = anchors[g][i * 2] * inputSize;
      const ay = anchors[g][i * 2 + 1] * inputSize;
      const o = i * stride;
      const cx = ax + reg[o];
      const cy = ay + reg[o + 1];
      const w = reg[o + 2];
      const h = reg[o + 3];
      const keypoints: number[] = [];
      for (let k = 4; k + 1 < stride; k += 2) keypoints.push(ax + reg[o + k], ay + reg[o + k + 1]);
      boxes.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score, keypoints });
    }
  }
  return boxes;
}
