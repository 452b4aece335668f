import type * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { blazefaceAnchors, decodeBlazeface } from './blazeface';
import { iou, type ScoredBox, weightedNms } from './geometry';
import type { RgbImage } from './image';
import { type DetectorManifest, InputBuffers, openSession, type SessionOptions, toTensor } from './models';

export interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface DetectorOptions {
  /**
   * 'auto': a second pass when the full-frame pass finds no face or only small ones (over overlapping tiles, or a
   * close-up of the largest face when only that one is wanted); 'always': the tiles always; 'never': no second pass.
   */
  tiling: 'auto' | 'always' | 'never';
}

const NMS_IOU = 0.3;
// A tile's detection touching an inner tile edge is a cut-off face; the full-frame pass or a neighbour tile sees it whole.
const TILE_EDGE_MARGIN = 0.02;
// Below this share of the image's longer side, the full-frame pass at 256 px starts to miss faces.
const SMALL_FACE_SHARE = 1 / 6;
// The close-up pass around one face sees this many times the face's longer side: the face fills a third of the
// model's input (~85 px of 256), where its landmarks are as sharp as in a tile, with room for a loose box.
const CLOSE_UP_CONTEXT = 3;
// A frame box overlapping a close-up box this much is the same face.
const CLOSE_UP_REPLACES_IOU = 0.1;

/** BlazeFace over a whole image and, for small faces, over overlapping tiles or around one face. Boxes in image pixels. */
export class BlazeFaceDetector {
  private readonly anchors: Float32Array[];
  private readonly inputs: InputBuffers;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly manifest: DetectorManifest,
  ) {
    this.anchors = blazefaceAnchors(manifest.grids);
    this.inputs = new InputBuffers(manifest.input);
  }

  static async open(
    manifest: DetectorManifest,
    path: string,
    threads: number,
    options: SessionOptions = {},
  ): Promise<BlazeFaceDetector> {
    return new BlazeFaceDetector(await openSession(manifest, path, threads, options), manifest);
  }

  /** The full-frame pass alone (boxes before NMS): the image is shrunk to the model's input anyway. */
  detectFrame(image: RgbImage, scoreThreshold: number): Promise<ScoredBox[]> {
    return this.detectRegion(image, { left: 0, top: 0, width: image.width, height: image.height }, scoreThreshold);
  }

  /**
   * Whether a second pass (the tiles, or a close-up) should follow the full-frame boxes. `image` may be a smaller
   * decode than the one the second pass would run on: `toSecond` is the factor from its pixels to those (the rule
   * compares faces with the longer side, so only the minimum image size needs it).
   */
  wantsSecondPass(
    image: { width: number; height: number },
    frame: ScoredBox[],
    tiling: DetectorOptions['tiling'],
    toSecond = 1,
  ): boolean {
    if (tiling !== 'auto') return tiling === 'always';
    const longer = Math.max(image.width, image.height);
    const largest = Math.max(0, ...frame.map((b) => Math.max(b.x2 - b.x1, b.y2 - b.y1)));
    return longer * toSecond >= 2 * this.manifest.input.width && largest < longer * SMALL_FACE_SHARE;
  }

  /**
   * One pass over a square region around `face` (CLOSE_UP_CONTEXT x its longer side, inside the image): the face's
   * box and landmarks in the detail a tile gives, for one model run instead of four, when only that face is wanted.
   * Inside the region the close view replaces the full frame's: frame boxes overlapping what it found go (they are
   * the same faces seen at a few pixels, and could stay apart in the merge as a second, coarser box).
   */
  async detectAround(
    image: RgbImage,
    face: ScoredBox,
    frame: ScoredBox[],
    scoreThreshold: number,
  ): Promise<ScoredBox[]> {
    const side = Math.max(face.x2 - face.x1, face.y2 - face.y1) * CLOSE_UP_CONTEXT;
    const left = Math.max(0, Math.floor((face.x1 + face.x2 - side) / 2));
    const top = Math.max(0, Math.floor((face.y1 + face.y2 - side) / 2));
    const region = {
      left,
      top,
      width: Math.max(1, Math.min(image.width, Math.ceil(left + side)) - left),
      height: Math.max(1, Math.min(image.height, Math.ceil(top + side)) - top),
    };
    const found = (await this.detectRegion(image, region, scoreThreshold)).filter(
      (b) => !touchesInnerEdge(b, region, image),
    );
    const elsewhere = frame.filter((b) => !found.some((f) => iou(b, f) >= CLOSE_UP_REPLACES_IOU));
    return this.merge(elsewhere.concat(found));
  }

  /** The tiles pass over `image`, merged with the full-frame boxes (in `image`'s pixels) and NMS-ed. */
  async detectTiles(image: RgbImage, frame: ScoredBox[], scoreThreshold: number): Promise<ScoredBox[]> {
    let boxes = frame;
    for (const tile of overlappingTiles(image.width, image.height)) {
      const found = await this.detectRegion(image, tile, scoreThreshold);
      boxes = boxes.concat(found.filter((b) => !touchesInnerEdge(b, tile, image)));
    }
    return this.merge(boxes);
  }

  /** One box per face out of overlapping detections (weighted NMS). */
  merge(boxes: ScoredBox[]): ScoredBox[] {
    return weightedNms(boxes, NMS_IOU);
  }

  private async detectRegion(image: RgbImage, region: Region, scoreThreshold: number): Promise<ScoredBox[]> {
    const size = this.manifest.input.width;
    const scale = size / Math.max(region.width, region.height);
    const width = Math.max(1, Math.round(region.width * scale));
    const height = Math.max(1, Math.round(region.height * scale));
    const rgb = await modelInput(image, region, width, height);
    // The resized region at the top left of the model's square input, the rest black.
    const out = await this.inputs.with((buffer) =>
      this.session.run({ [this.manifest.input.name]: toTensor(rgb, this.manifest.input, buffer, { width, height }) }),
    );
    const scores = this.manifest.outputs.scores.map((n) => out[n].data as Float32Array);
    const regressors = this.manifest.outputs.regressors.map((n) => out[n].data as Float32Array);
    const sx = region.width / width;
    const sy = region.height / height;
    return decodeBlazeface(scores, regressors, this.anchors, size, scoreThreshold).map((b) => ({
      x1: region.left + b.x1 * sx,
      y1: region.top + b.y1 * sy,
      x2: region.left + b.x2 * sx,
      y2: region.top + b.y2 * sy,
      score: b.score,
      keypoints: b.keypoints.map((k, i) => (i % 2 === 0 ? region.left + k * sx : region.top + k * sy)),
    }));
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

/**
 * `region` of `image` resized to width x height (toTensor puts it at the top left of the model's black square). The
 * extract is left out for the whole image: 1.2-1.6 ms less per detector run than sharp's extract and extend (each
 * sharp operation costs ~1 ms on this VM; BENCHMARKS.md, session 9), and the padding costs no copy.
 */
async function modelInput(image: RgbImage, region: Region, width: number, height: number): Promise<Buffer> {
  let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  const whole = region.left === 0 && region.top === 0 && region.width === image.width && region.height === image.height;
  if (!whole) pipeline = pipeline.extract(region);
  return pipeline.resize(width, height, { fit: 'fill' }).raw().toBuffer();
}

/** A 2x2 grid of tiles, each 60% of the image in both directions, overlapping by 20%. */
export function overlappingTiles(width: number, height: number): Region[] {
  const tw = Math.round(width * 0.6);
  const th = Math.round(height * 0.6);
  const tiles: Region[] = [];
  for (const top of [0, height - th])
    for (const left of [0, width - tw]) tiles.push({ left, top, width: tw, height: th });
  return tiles;
}

function touchesInnerEdge(box: ScoredBox, tile: Region, image: RgbImage): boolean {
  const mx = tile.width * TILE_EDGE_MARGIN;
  const my = tile.height * TILE_EDGE_MARGIN;
  const right = tile.left + tile.width;
  const bottom = tile.top + tile.height;
  return (
    (tile.left > 0 && box.x1 <= tile.left + mx) ||
    (tile.top > 0 && box.y1 <= tile.top + my) ||
    (right < image.width && box.x2 >= right - mx) ||
    (bottom < image.height && box.y2 >= bottom - my)
  );
}
