import type {
  AlignedFace,
  AnalyzeResult,
  DetectOptions,
  DetectResult,
  EmbeddedFace,
  ImageInfo,
  EngineTiming,
  Landmarks,
  Point,
} from '@facesearch/common';
import { alignFace, alignmentTransform } from './align';
import { BlazeFaceDetector, type DetectorOptions } from './detector';
import { OnnxEmbedder } from './embedder';
import { type ScoredBox, scaleBox, similarityScale } from './geometry';
import {
  DEFAULT_IMAGE_LIMITS,
  type DecodedImage,
  decodeImage,
  type ImageHeader,
  type ImageLimits,
  inspectImage,
} from './image';
import { loadManifest } from './models';
import { EnginePool, type LocalFaceEngine } from './pool';
import {
  DEFAULT_QUALITY_THRESHOLDS,
  estimatePose,
  laplacianVariance,
  type QualityThresholds,
  qualityLevel,
} from './quality';

export interface FaceEngineOptions {
  /** Folder holding manifest.json and the model files; defaults to <repo>/models. */
  modelDir?: string;
  /** A JSON manifest describing another detector / embedder (see models/manifest.json for the fields). */
  detectorManifest?: string;
  embedderManifest?: string;
  maxImageBytes?: number;
  maxImagePixels?: number;
  /** ONNX intra-op threads per session. One per session and parallel requests use the cores best. */
  threads?: number;
  tiling?: DetectorOptions['tiling'];
  quality?: QualityThresholds;
  /** Overrides the embedder manifest's calibrated cosine threshold. */
  matchThreshold?: number;
  /**
   * Longer side of a first, small decode of a large JPEG: the full-frame detection pass (the model sees 256 px) and
   * the crops of faces large enough in it use it, and the image is decoded again at the working size only when the
   * tiles pass or a smaller face needs it. 0 always decodes once at the working size. Default 512.
   */
  previewMaxSide?: number;
  /**
   * When only the largest face is wanted (maxFaces 1) and the full frame found it small, look closer around it (one
   * model run) instead of over four tiles. Default true; false keeps the tiles (for comparing, in bench:engine).
   */
  closeUp?: boolean;
  /** Rewrite the models into ops ORT runs faster (graph-rewrite.ts). Default true; false for bench:engine. */
  rewriteGraphs?: boolean;
}

export const DEFAULT_PREVIEW_MAX_SIDE = 512;
// The preview serves when the 112 px crop of every selected face does not enlarge it (template px per preview px).
const PREVIEW_CROP_MAX_SCALE = 1;

export const DEFAULT_DETECT_OPTIONS: Required<DetectOptions> = { maxFaces: 20, minFaceSize: 20, scoreThreshold: 0.6 };

/** Milliseconds spent per stage, summed over calls; for the evaluation and benchmark commands. */
export interface StageTimings {
  decode: number;
  detect: number;
  align: number;
  embed: number;
}

/**
 * The face pipeline in one process: decode, detect, align, assess quality, embed.
 * Implements FaceAnalyzer, and offers the two halves separately for the detector and embedder services.
 */
export class FaceEngine implements LocalFaceEngine {
  readonly timings: StageTimings = { decode: 0, detect: 0, align: 0, embed: 0 };

  private constructor(
    private readonly detector: BlazeFaceDetector,
    private readonly embedder: OnnxEmbedder,
    private readonly limits: ImageLimits,
    private readonly tiling: DetectorOptions['tiling'],
    private readonly quality: QualityThresholds,
    readonly matchThreshold: number,
    private readonly previewMaxSide: number,
    private readonly closeUp: boolean,
  ) {}

  static async create(options: FaceEngineOptions = {}): Promise<FaceEngine> {
    const threads = options.threads ?? 1;
    const det = loadManifest('detector', { modelDir: options.modelDir, manifestPath: options.detectorManifest });
    const emb = loadManifest('embedder', { modelDir: options.modelDir, manifestPath: options.embedderManifest });
    const [detector, embedder] = await Promise.all([
      BlazeFaceDetector.open(det.manifest, det.path, threads, { rewrite: options.rewriteGraphs }),
      OnnxEmbedder.open(emb.manifest, emb.path, threads, { rewrite: options.rewriteGraphs }),
    ]);
    return new FaceEngine(
      detector,
      embedder,
      {
        ...DEFAULT_IMAGE_LIMITS,
        maxBytes: options.maxImageBytes ?? DEFAULT_IMAGE_LIMITS.maxBytes,
        maxPixels: options.maxImagePixels ?? DEFAULT_IMAGE_LIMITS.maxPixels,
      },
      options.tiling ?? 'auto',
      options.quality ?? DEFAULT_QUALITY_THRESHOLDS,
      options.matchThreshold ?? emb.manifest.matchThreshold ?? 0.45,
      options.previewMaxSide ?? DEFAULT_PREVIEW_MAX_SIDE,
      options.closeUp ?? true,
    );
  }

  get modelId(): string {
    return this.embedder.manifest.id;
  }

  get embeddingDim(): number {
    return this.embedder.dim;
  }

  get detectorModelId(): string {
    return this.detector.manifest.id;
  }

  /** Runs `work`, adding its duration to `stage` in `timings`. */
  private async timed<T>(stage: keyof StageTimings, work: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await work();
    } finally {
      this.timings[stage] += performance.now() - start;
    }
  }

  /** Decodes at the working size (or `maxSide`), checking the header unless given; the time counts as decode. */
  decode(input: Uint8Array, header?: ImageHeader, maxSide?: number): Promise<DecodedImage> {
    return this.timed('decode', () => decodeImage(input, this.limits, { header, maxSide }));
  }

  /**
   * Faces with their aligned crops, largest first. A large JPEG is decoded small first (previewMaxSide): JPEG
   * decodes at 1/2, 1/4 or 1/8 scale for a fraction of the cost, and most photos need nothing more.
   */
  async detectAligned(
    input: Uint8Array,
    options: DetectOptions = {},
  ): Promise<{ image: ImageInfo; faces: AlignedFace[] } & EngineTiming> {
    const start = performance.now();
    const header = await this.timed('decode', () => inspectImage(input, this.limits));
    const image = { width: header.width, height: header.height, format: header.format };
    // Only JPEG decodes faster when smaller; other formats would pay a second full decode for nothing.
    const preview =
      this.previewMaxSide > 0 &&
      header.format === 'jpeg' &&
      Math.max(header.width, header.height) >= 2 * this.previewMaxSide;
    let faces: AlignedFace[];
    if (!preview) {
      faces = await this.findFaces(await this.decode(input, header), options);
    } else {
      const workingSize = () => this.decode(input, header);
      faces = await this.findFaces(await this.decode(input, header, this.previewMaxSide), options, workingSize);
    }
    return { image, faces, engine_ms: performance.now() - start };
  }

  async detect(input: Uint8Array, options: DetectOptions = {}): Promise<DetectResult> {
    const { image, faces, engine_ms } = await this.detectAligned(input, options);
    return { image, faces: faces.map(({ crop: _crop, ...face }) => face), engine_ms };
  }

  async analyze(input: Uint8Array, options: DetectOptions = {}): Promise<AnalyzeResult> {
    const start = performance.now();
    const { image, faces } = await this.detectAligned(input, options);
    const embeddings = await this.embed(faces.map((f) => f.crop));
    const embedded: EmbeddedFace[] = faces.map(({ crop: _crop, ...face }, i) => ({
      ...face,
      embedding: embeddings[i],
    }));
    return { image, faces: embedded, modelId: this.modelId, engine_ms: performance.now() - start };
  }

  /** Embeds aligned 112x112 RGB crops, one after another (the model's batch size is fixed at 1). */
  embed(crops: Uint8Array[]): Promise<Float32Array[]> {
    return this.timed('embed', async () => {
      const out: Float32Array[] = [];
      for (const crop of crops) out.push(await this.embedder.embed(crop));
      return out;
    });
  }

  /**
   * Detects, selects and aligns the faces of `decoded`. With `workingSize`, `decoded` is a preview: when no second
   * pass is due and every selected face is large enough in it, the faces come from the preview alone; otherwise from
   * the working-size decode that `workingSize` returns, where the second pass runs and the crops are cut.
   * The second pass (faces small in the full frame, or none found): the tiles; or, when only the largest face is
   * wanted (maxFaces 1: search, compare, enrolment, import) and the full frame found one, a close-up around it.
   */
  async findFaces(
    decoded: DecodedImage,
    options: DetectOptions = {},
    workingSize?: () => Promise<DecodedImage>,
  ): Promise<AlignedFace[]> {
    const opts = { ...DEFAULT_DETECT_OPTIONS, ...stripUndefined(options) };
    const threshold = opts.scoreThreshold;
    let start = performance.now();
    let frame = await this.detector.detectFrame(decoded.working, threshold);
    // The preview's pixels -> the working size's, where a second pass would run.
    const toWorking = workingSize
      ? Math.min(1, this.limits.workingMaxSide / Math.max(decoded.width, decoded.height)) / decoded.scale
      : 1;
    let source = decoded;
    let boxes: ScoredBox[];
    if (!this.detector.wantsSecondPass(decoded.working, frame, this.tiling, toWorking)) {
      boxes = this.detector.merge(frame);
    } else {
      if (workingSize) {
        this.timings.detect += performance.now() - start;
        source = await workingSize();
        start = performance.now();
        // The full-frame pass saw the image at the model's 256 px whatever the decode: its boxes carry over.
        frame = frame.map((b) => scaleBox(b, source.scale / decoded.scale));
      }
      const largest =
        this.closeUp && opts.maxFaces === 1 && this.tiling === 'auto'
          ? this.select(this.detector.merge(frame), source.scale, opts)[0]
          : undefined;
      boxes = largest
        ? await this.detector.detectAround(source.working, largest.b, frame, threshold)
        : await this.detector.detectTiles(source.working, frame, threshold);
    }
    this.timings.detect += performance.now() - start;

    let candidates = this.select(boxes, source.scale, opts);
    if (
      workingSize &&
      source === decoded &&
      candidates.some(({ b }) => similarityScale(this.transformOf(b)) > PREVIEW_CROP_MAX_SCALE)
    ) {
      // A face too small in the preview for a sharp 112 px crop: the crops come from the working size.
      source = await workingSize();
      const factor = source.scale / decoded.scale;
      candidates = candidates.map(({ b, size }) => ({ b: scaleBox(b, factor), size }));
    }

    const alignStart = performance.now();
    const faces: AlignedFace[] = [];
    for (const { b, size } of candidates) faces.push(await this.describe(source, b, size));
    this.timings.align += performance.now() - alignStart;
    return faces;
  }

  /** The faces to report: at least minFaceSize (in original pixels), largest first, at most maxFaces. */
  private select(boxes: ScoredBox[], scale: number, opts: Required<DetectOptions>) {
    const inv = 1 / scale;
    return (
      boxes
        // Rounded as reported (quality.size), so that min_face_size = a reported size keeps that face.
        .map((b) => ({ b, size: Math.round(Math.min(b.x2 - b.x1, b.y2 - b.y1) * inv) }))
        .filter((c) => c.size >= opts.minFaceSize)
        .sort((p, q) => q.size - p.size)
        .slice(0, Math.max(0, opts.maxFaces))
    );
  }

  /** The keypoints the alignment uses, in the box's image pixels. */
  private landmarksOf(b: ScoredBox): { leftEye: Point; rightEye: Point; nose: Point; mouth: Point } {
    const k = b.keypoints;
    const { leftEye, rightEye, nose, mouthCenter } = this.detector.manifest.keypoints;
    const point = (i: number) => ({ x: k[i * 2], y: k[i * 2 + 1] });
    return { leftEye: point(leftEye), rightEye: point(rightEye), nose: point(nose), mouth: point(mouthCenter) };
  }

  private transformOf(b: ScoredBox) {
    const p = this.landmarksOf(b);
    return alignmentTransform(p.leftEye, p.rightEye, p.nose, p.mouth);
  }

  private async describe(decoded: DecodedImage, b: ScoredBox, size: number): Promise<AlignedFace> {
    const working = this.landmarksOf(b);
    const crop = await alignFace(decoded.working, this.transformOf(b));

    const inv = 1 / decoded.scale;
    const toOriginal = (p: { x: number; y: number }) => ({ x: round1(p.x * inv), y: round1(p.y * inv) });
    const landmarks: Landmarks = {
      left_eye: toOriginal(working.leftEye),
      right_eye: toOriginal(working.rightEye),
      nose: toOriginal(working.nose),
      mouth: toOriginal(working.mouth),
    };
    const x1 = clamp(b.x1 * inv, 0, decoded.width);
    const y1 = clamp(b.y1 * inv, 0, decoded.height);
    const x2 = clamp(b.x2 * inv, 0, decoded.width);
    const y2 = clamp(b.y2 * inv, 0, decoded.height);
    const pose = estimatePose(working.leftEye, working.rightEye, working.nose, working.mouth);
    const measured = {
      size,
      blur: round1(laplacianVariance(crop, 112, 112)),
      ...pose,
      score: round3(b.score),
    };
    return {
      box: { x: round1(x1), y: round1(y1), width: round1(x2 - x1), height: round1(y2 - y1) },
      landmarks,
      score: round3(b.score),
      quality: { ...measured, level: qualityLevel(measured, this.quality) },
      crop,
    };
  }

  resetTimings(): void {
    Object.assign(this.timings, { decode: 0, detect: 0, align: 0, embed: 0 });
  }

  async close(): Promise<void> {
    await Promise.all([this.detector.close(), this.embedder.close()]);
  }
}

/**
 * The FaceAnalyzer for the embedded mode and the worker services: with `workers` > 0 the models run on that many
 * worker threads (EnginePool), else on the calling thread.
 */
export function createLocalFaceAnalyzer(
  options: FaceEngineOptions & { workers?: number } = {},
): Promise<LocalFaceEngine> {
  const { workers = 0, ...engineOptions } = options;
  return workers > 0 ? EnginePool.create({ ...engineOptions, workers }) : FaceEngine.create(engineOptions);
}

const clamp = (x: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, x));
const round1 = (x: number) => Math.round(x * 10) / 10;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
