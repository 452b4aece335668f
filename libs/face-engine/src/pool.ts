import type {
  AlignedFace,
  AnalyzeCall,
  AnalyzeResult,
  DetectOptions,
  DetectResult,
  EngineTiming,
  FaceAnalyzer,
  ImageInfo,
  PoolThread,
} from '@facesearch/common';
import { FaceSearchError, resolveThreadScript, ThreadPool } from '@facesearch/common';
import type { FaceEngineOptions } from './engine';

/** What the services need from a local engine: FaceEngine and EnginePool both offer it. */
export interface LocalFaceEngine extends FaceAnalyzer {
  readonly matchThreshold: number;
  readonly detectorModelId: string;
  detectAligned(
    image: Uint8Array,
    options?: DetectOptions,
    call?: AnalyzeCall,
  ): Promise<{ image: ImageInfo; faces: AlignedFace[] } & EngineTiming>;
  embed(crops: Uint8Array[]): Promise<Float32Array[]>;
}

export interface EnginePoolOptions extends FaceEngineOptions {
  /** Engine threads, each with its own ONNX sessions (one ONNX thread each unless `threads` says otherwise). */
  workers: number;
  /**
   * Calls one thread holds at once. 2 lets a thread decode the next image (in libuv) while it runs a model;
   * more only holds more decoded images in memory.
   */
  callsPerWorker?: number;
  /** Wait before starting a thread again after one failed to start, so a crash loop does not spin. Default 1000. */
  respawnDelayMs?: number;
}

/** A call to an engine thread (pool-worker.ts); structured clone carries the typed arrays as they are. */
export type EngineCall =
  | { op: 'detect' | 'detectAligned' | 'analyze'; image: Uint8Array; options?: DetectOptions }
  | { op: 'embed'; crops: Uint8Array[] };

/** What every engine thread reports once its models are open. */
export interface EngineInfo {
  modelId: string;
  embeddingDim: number;
  detectorModelId: string;
  matchThreshold: number;
}

/**
 * The face engine on worker threads: a FaceAnalyzer whose calls run on the least busy engine thread, so the
 * models use every core while the caller's thread stays free for HTTP, queues and storage. Calls beyond
 * `workers x callsPerWorker` wait here, as compressed bytes. A thread that dies fails only its own calls
 * (503 engine_unavailable, retryable) and is replaced.
 */
export class EnginePool implements LocalFaceEngine {
  private constructor(private readonly pool: ThreadPool<EngineCall, unknown, EngineInfo>) {}

  /** Starts the threads and waits until each has its models open; throws the engine's error if one cannot. */
  static async create(options: EnginePoolOptions): Promise<EnginePool> {
    const { workers, callsPerWorker, respawnDelayMs, ...engineOptions } = options;
    const pool = await ThreadPool.start<EngineCall, unknown, EngineInfo>({
      script: resolveThreadScript(__dirname, 'pool-worker.js', '../dist'),
      workerData: { ...engineOptions, threads: options.threads ?? 1 } satisfies FaceEngineOptions,
      threads: workers,
      callsPerThread: callsPerWorker ?? 2,
      respawnDelayMs,
      unavailable: (why) => new FaceSearchError('engine_unavailable', `Face engine: ${why}; retry.`, 503, true),
    });
    return new EnginePool(pool);
  }

  get modelId(): string {
    return this.pool.info.modelId;
  }

  get embeddingDim(): number {
    return this.pool.info.embeddingDim;
  }

  get detectorModelId(): string {
    return this.pool.info.detectorModelId;
  }

  get matchThreshold(): number {
    return this.pool.info.matchThreshold;
  }

  /** Engine threads alive and ready now. */
  get size(): number {
    return this.pool.size;
  }

  /** Engine threads alive now, ready or starting (read-only; tests kill one as a crash would). */
  get threads(): ReadonlySet<PoolThread> {
    return this.pool.threads;
  }

  detect(image: Uint8Array, options?: DetectOptions, call: AnalyzeCall = {}): Promise<DetectResult> {
    return this.pool.call({ op: 'detect', image, options }, handedOver(image, call)) as Promise<DetectResult>;
  }

  detectAligned(
    image: Uint8Array,
    options?: DetectOptions,
    call: AnalyzeCall = {},
  ): Promise<{ image: ImageInfo; faces: AlignedFace[] } & EngineTiming> {
    return this.pool.call({ op: 'detectAligned', image, options }, handedOver(image, call)) as Promise<
      { image: ImageInfo; faces: AlignedFace[] } & EngineTiming
    >;
  }

  analyze(image: Uint8Array, options?: DetectOptions, call: AnalyzeCall = {}): Promise<AnalyzeResult> {
    return this.pool.call({ op: 'analyze', image, options }, handedOver(image, call)) as Promise<AnalyzeResult>;
  }

  embed(crops: Uint8Array[]): Promise<Float32Array[]> {
    if (crops.length === 0) return Promise.resolve([]);
    return this.pool.call({ op: 'embed', crops }) as Promise<Float32Array[]>;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * What the engine thread may take: the image's ArrayBuffer when the caller hands it over and the image is all of it
 * (never a slice of Node's shared Buffer pool, which would take its neighbours along).
 */
function handedOver(image: Uint8Array, call: AnalyzeCall): ArrayBuffer[] {
  const { buffer } = image;
  return call.handOver &&
    buffer instanceof ArrayBuffer &&
    image.byteOffset === 0 &&
    image.byteLength === buffer.byteLength
    ? [buffer]
    : [];
}
