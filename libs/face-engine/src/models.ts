import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { FaceSearchError } from '@facesearch/common';
import * as ort from 'onnxruntime-node';
import { rewriteGraph } from './graph-rewrite';

export interface TensorInputSpec {
  name: string;
  width: number;
  height: number;
  layout: 'NHWC' | 'NCHW';
  channels: 'RGB' | 'BGR';
  /** value = (pixel - mean) / std */
  mean: number;
  std: number;
}

interface ModelManifestBase {
  id: string;
  file: string;
  sha256?: string;
  licence?: string;
  input: TensorInputSpec;
}

export interface DetectorManifest extends ModelManifestBase {
  role: 'detector';
  format: 'blazeface';
  outputs: { scores: string[]; regressors: string[] };
  grids: Array<{ cells: number; anchorsPerCell: number }>;
  keypoints: { leftEye: number; rightEye: number; nose: number; mouthCenter: number };
}

export interface EmbedderManifest extends ModelManifestBase {
  role: 'embedder';
  output: { name: string; dim: number };
  /** Cosine threshold calibrated for this model (see the README); the service default if configured none. */
  matchThreshold?: number;
}

export type ModelManifest = DetectorManifest | EmbedderManifest;

/** Where `pnpm install` puts the models: <repo>/models (this file sits in libs/face-engine/{src,dist}). */
export const DEFAULT_MODEL_DIR = resolve(__dirname, '..', '..', '..', 'models');

/**
 * Reads a model manifest. `source` is either a JSON file holding one model (its `file` relative to that
 * file's folder) or omitted, meaning the pinned default for that role in `<modelDir>/manifest.json`.
 */
export function loadManifest<R extends ModelManifest['role']>(
  role: R,
  options: { modelDir?: string; manifestPath?: string } = {},
): { manifest: Extract<ModelManifest, { role: R }>; path: string } {
  const modelDir = options.modelDir ?? DEFAULT_MODEL_DIR;
  let manifest: ModelManifest | undefined;
  let baseDir = modelDir;
  if (options.manifestPath) {
    const text = readOrFail(options.manifestPath, `model manifest ${options.manifestPath}`);
    manifest = JSON.parse(text) as ModelManifest;
    baseDir = dirname(resolve(options.manifestPath));
  } else {
    const listPath = join(modelDir, 'manifest.json');
    const list = JSON.parse(readOrFail(listPath, 'model manifest list')) as { models: ModelManifest[] };
    manifest = list.models.find((m) => m.role === role);
  }
  if (!manifest || manifest.role !== role) {
    throw new FaceSearchError('model_manifest_invalid', `No ${role} model is described in the manifest.`, 500);
  }
  const path = isAbsolute(manifest.file) ? manifest.file : join(baseDir, manifest.file);
  return { manifest: manifest as Extract<ModelManifest, { role: R }>, path };
}

function readOrFail(path: string, what: string): string {
  if (!existsSync(path)) throw new FaceSearchError('model_missing', `The ${what} was not found at ${path}.`, 500);
  return readFileSync(path, 'utf8');
}

export interface SessionOptions {
  /** Rewrite the graph into ops ORT runs faster (graph-rewrite.ts: PRelu, channel pads) before loading. Default true. */
  rewrite?: boolean;
}

/**
 * Opens an ONNX session after checking that the file exists and matches its pinned checksum (of the file: the
 * rewrite happens in memory).
 */
export async function openSession(
  manifest: ModelManifest,
  path: string,
  threads: number,
  options: SessionOptions = {},
): Promise<ort.InferenceSession> {
  if (!existsSync(path)) {
    throw new FaceSearchError(
      'model_missing',
      `Model ${manifest.id} is missing at ${path}. Run \`pnpm install\` (or \`pnpm models\`) to fetch the pinned models.`,
      500,
    );
  }
  const bytes = readFileSync(path);
  if (manifest.sha256) {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== manifest.sha256) {
      throw new FaceSearchError(
        'model_corrupt',
        `Model ${manifest.id} at ${path} has sha256 ${actual}, expected ${manifest.sha256}. Delete it and run \`pnpm models\`.`,
        500,
      );
    }
  }
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
  const session = options.rewrite === false ? undefined : await openRewritten(bytes, sessionOptions, manifest.input);
  return session ?? ort.InferenceSession.create(bytes, sessionOptions);
}

/**
 * The session of the rewritten model (graph-rewrite.ts); undefined when nothing was rewritten, or when the rewrite or
 * onnxruntime refuses it: a file this reader cannot walk, or a graph that loads but cannot run, e.g. a PRelu on
 * other than an NCHW input, which may only show at run time. So the rewritten model runs once on a blank input of
 * the size the engine feeds it, and must give finite outputs. Otherwise the original loads as it is, and reports
 * its own errors.
 */
async function openRewritten(
  bytes: Uint8Array,
  sessionOptions: ort.InferenceSession.SessionOptions,
  input: TensorInputSpec,
): Promise<ort.InferenceSession | undefined> {
  let session: ort.InferenceSession | undefined;
  try {
    const { model, rewritten } = rewriteGraph(bytes);
    if (rewritten === 0) return undefined;
    session = await ort.InferenceSession.create(model, sessionOptions);
    const blank = new Uint8Array(input.width * input.height * 3).fill(128);
    const outputs = await session.run({ [input.name]: toTensor(blank, input) });
    const finite = Object.values(outputs).every((t) => (t.data as Float32Array).every(Number.isFinite));
    if (!finite) throw new Error('non-finite output');
    return session;
  } catch {
    await session?.release().catch(() => undefined);
    return undefined;
  }
}

/**
 * Fills a float tensor from RGB bytes following the model's layout, channel order and normalisation, with no
 * per-channel index table: it runs for every detector and embedder input (~0.8 ms for 256x256). `out` (from
 * InputBuffers) is filled instead of a new array. `filled`: the RGB covers only that top-left part of the input, the
 * rest is black (the detector's letterbox, without a padded copy of the pixels).
 */
export function toTensor(
  rgb: Uint8Array,
  spec: TensorInputSpec,
  out: Float32Array = new Float32Array(spec.width * spec.height * 3),
  filled: { width: number; height: number } = spec,
): ort.Tensor {
  const { width, height, mean, std } = spec;
  const plane = width * height;
  if (out.length !== plane * 3) {
    throw new Error(`tensor buffer of ${out.length} floats for a ${width}x${height}x3 input`);
  }
  if (filled.width > width || filled.height > height || rgb.length < filled.width * filled.height * 3) {
    throw new Error(
      `${rgb.length} RGB bytes do not fill ${filled.width}x${filled.height} of a ${width}x${height} input`,
    );
  }
  const inv = 1 / std;
  const black = -mean * inv;
  // Where the tensor's first and third channels come from in each RGB pixel.
  const [first, third] = spec.channels === 'RGB' ? [0, 2] : [2, 0];
  // Channel c of pixel p is at c * plane + p (NCHW) or 3 * p + c (NHWC).
  const nchw = spec.layout === 'NCHW';
  const step = nchw ? 1 : 3;
  const channel = nchw ? plane : 1;
  for (let y = 0; y < height; y++) {
    const rowWidth = y < filled.height ? filled.width : 0;
    let i = y * width * step;
    let j = y * filled.width * 3;
    for (let x = 0; x < rowWidth; x++, i += step, j += 3) {
      out[i] = (rgb[j + first] - mean) * inv;
      out[i + channel] = (rgb[j + 1] - mean) * inv;
      out[i + 2 * channel] = (rgb[j + third] - mean) * inv;
    }
    for (let x = rowWidth; x < width; x++, i += step) {
      out[i] = black;
      out[i + channel] = black;
      out[i + 2 * channel] = black;
    }
  }
  return new ort.Tensor('float32', out, nchw ? [1, 3, height, width] : [1, height, width, 3]);
}

/**
 * A model's input tensors, refilled instead of allocated per run. Each detector run allocated a fresh 786 KB
 * Float32Array (each embedding 150 KB) outside V8's heap, and that external memory set off a full garbage
 * collection every ~7 images on each engine thread (58 per 400 photos in bench engine-pool.mjs, 42 with the
 * inputs reused). A run holds its buffer from filling it to its end: onnxruntime-node runs the session after a
 * setImmediate, when another call on the same thread may be filling one.
 */
export class InputBuffers {
  private readonly free: Float32Array[] = [];

  constructor(
    private readonly spec: TensorInputSpec,
    /** Buffers kept between runs: about the runs one thread has in flight. */
    private readonly keep = 4,
  ) {}

  /** Runs `use` with a buffer of the input's size, taken back when `use` settles. */
  async with<T>(use: (buffer: Float32Array) => Promise<T>): Promise<T> {
    const buffer = this.free.pop() ?? new Float32Array(this.spec.width * this.spec.height * 3);
    try {
      return await use(buffer);
    } finally {
      if (this.free.length < this.keep) this.free.push(buffer);
    }
  }
}
