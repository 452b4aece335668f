import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type {
  AlignedFace,
  AnalyzeResult,
  DetectOptions,
  DetectResult,
  FaceAnalyzer,
  ImageInfo,
} from '@facesearch/common';
import { FaceSearchError } from '@facesearch/common';
import type { FaceEngineOptions } from './engine';
import { deserializeError, type EngineCall, type EngineInfo, type EngineReply } from './pool-protocol';

/** What the services need from a local engine: FaceEngine and EnginePool both offer it. */
export interface LocalFaceEngine extends FaceAnalyzer {
  readonly matchThreshold: number;
  readonly detectorModelId: string;
  detectAligned(image: Uint8Array, options?: DetectOptions): Promise<{ image: ImageInfo; faces: AlignedFace[] }>;
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
  /** Wait before replacing a thread that died, so a crash loop does not spin. Default 1000 ms. */
  respawnDelayMs?: number;
}

type PendingCall = {
  message: Exclude<EngineCall, { op: 'close' }>;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
};

interface EngineThread {
  worker: Worker;
  inFlight: Map<number, PendingCall>;
  ready: boolean;
}

type CallBody =
  | { op: 'detect' | 'detectAligned' | 'analyze'; image: Uint8Array; options?: DetectOptions }
  | { op: 'embed'; crops: Uint8Array[] };

/**
 * The face engine on worker threads: a FaceAnalyzer whose calls run on the least busy engine thread, so the
 * models use every core while the caller's thread stays free for HTTP, queues and storage. Calls beyond
 * `workers x callsPerWorker` wait here, as compressed bytes. A thread that dies fails only its own calls
 * (503 engine_unavailable, retryable) and is replaced.
 */
export class EnginePool implements LocalFaceEngine {
  private readonly threads = new Set<EngineThread>();
  private readonly waiting: PendingCall[] = [];
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly options: EnginePoolOptions,
    private readonly info: EngineInfo,
  ) {}

  static async create(options: EnginePoolOptions): Promise<EnginePool> {
    if (!Number.isInteger(options.workers) || options.workers < 1) {
      throw new Error(`EnginePool needs at least one worker, got ${options.workers}`);
    }
    const started = await Promise.allSettled(Array.from({ length: options.workers }, () => startThread(options)));
    const failure = started.find((s) => s.status === 'rejected');
    if (failure) {
      await Promise.all(started.map((s) => (s.status === 'fulfilled' ? s.value.worker.terminate() : undefined)));
      throw failure.reason;
    }
    const threads = started.map((s) => (s as PromiseFulfilledResult<{ worker: Worker; info: EngineInfo }>).value);
    const pool = new EnginePool(options, threads[0].info);
    for (const { worker } of threads) pool.adopt(worker);
    return pool;
  }

  get modelId(): string {
    return this.info.modelId;
  }

  get embeddingDim(): number {
    return this.info.embeddingDim;
  }

  get detectorModelId(): string {
    return this.info.detectorModelId;
  }

  get matchThreshold(): number {
    return this.info.matchThreshold;
  }

  /** Engine threads alive and ready now. */
  get size(): number {
    let n = 0;
    for (const t of this.threads) if (t.ready) n++;
    return n;
  }

  detect(image: Uint8Array, options?: DetectOptions): Promise<DetectResult> {
    return this.call({ op: 'detect', image, options }) as Promise<DetectResult>;
  }

  detectAligned(image: Uint8Array, options?: DetectOptions): Promise<{ image: ImageInfo; faces: AlignedFace[] }> {
    return this.call({ op: 'detectAligned', image, options }) as Promise<{ image: ImageInfo; faces: AlignedFace[] }>;
  }

  analyze(image: Uint8Array, options?: DetectOptions): Promise<AnalyzeResult> {
    return this.call({ op: 'analyze', image, options }) as Promise<AnalyzeResult>;
  }

  embed(crops: Uint8Array[]): Promise<Float32Array[]> {
    if (crops.length === 0) return Promise.resolve([]);
    return this.call({ op: 'embed', crops }) as Promise<Float32Array[]>;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const call of this.waiting.splice(0)) call.reject(poolClosed());
    await Promise.all(
      [...this.threads].map(async (thread) => {
        for (const call of thread.inFlight.values()) call.reject(poolClosed());
        thread.inFlight.clear();
        await thread.worker.terminate();
      }),
    );
    this.threads.clear();
  }

  private call(body: CallBody): Promise<unknown> {
    if (this.closed) return Promise.reject(poolClosed());
    return new Promise((resolve, reject) => {
      this.waiting.push({ message: { ...body, id: this.nextId++ }, resolve, reject });
      this.dispatch();
    });
  }

  /** Hands waiting calls to the least busy ready threads, up to callsPerWorker each. */
  private dispatch(): void {
    const limit = this.options.callsPerWorker ?? 2;
    while (this.waiting.length > 0) {
      let best: EngineThread | undefined;
      for (const t of this.threads) {
        if (t.ready && t.inFlight.size < limit && (!best || t.inFlight.size < best.inFlight.size)) best = t;
      }
      if (!best) return;
      const call = this.waiting.shift() as PendingCall;
      best.inFlight.set(call.message.id, call);
      best.worker.postMessage(call.message);
    }
  }

  private adopt(worker: Worker): void {
    const thread: EngineThread = { worker, inFlight: new Map(), ready: true };
    this.threads.add(thread);
    worker.on('message', (reply: EngineReply) => {
      if (reply.type !== 'result' && reply.type !== 'error') return;
      const call = thread.inFlight.get(reply.id);
      if (!call) return;
      thread.inFlight.delete(reply.id);
      if (reply.type === 'result') call.resolve(reply.result);
      else call.reject(deserializeError(reply.error));
      this.dispatch();
    });
    worker.on('error', () => {
      // 'exit' follows and does the cleanup; without a listener the error would crash the process.
    });
    worker.once('exit', (code) => {
      thread.ready = false;
      this.threads.delete(thread);
      for (const call of thread.inFlight.values()) {
        call.reject(
          new FaceSearchError(
            'engine_unavailable',
            `A face engine thread stopped (exit code ${code}); retry.`,
            503,
            true,
          ),
        );
      }
      thread.inFlight.clear();
      if (!this.closed) this.replaceLater();
    });
  }

  private replaceLater(): void {
    const timer = setTimeout(() => {
      if (this.closed) return;
      startThread(this.options).then(
        ({ worker }) => {
          if (this.closed) {
            void worker.terminate();
            return;
          }
          this.adopt(worker);
          this.dispatch();
        },
        () => this.replaceLater(),
      );
    }, this.options.respawnDelayMs ?? 1000);
    timer.unref();
    // With no thread left, waiting calls would wait for a replacement that may never start: fail them now.
    if (this.size === 0) {
      for (const call of this.waiting.splice(0)) {
        call.reject(new FaceSearchError('engine_unavailable', 'No face engine thread is running; retry.', 503, true));
      }
    }
  }
}

function poolClosed(): FaceSearchError {
  return new FaceSearchError('engine_unavailable', 'The face engine is shutting down.', 503, true);
}

/** Starts one engine thread and waits until its models are open. */
function startThread(options: EnginePoolOptions): Promise<{ worker: Worker; info: EngineInfo }> {
  const { workers: _w, callsPerWorker: _c, respawnDelayMs: _r, ...engineOptions } = options;
  const worker = new Worker(workerScript(), { workerData: { ...engineOptions, threads: options.threads ?? 1 } });
  return new Promise((resolve, reject) => {
    const onExit = (code: number) => reject(new Error(`face engine thread exited during start-up (code ${code})`));
    worker.once('exit', onExit);
    worker.once('error', reject);
    worker.once('message', (reply: EngineReply) => {
      worker.off('exit', onExit);
      worker.off('error', reject);
      if (reply.type === 'ready') resolve({ worker, info: reply.info });
      else {
        void worker.terminate();
        reject(reply.type === 'failed' ? deserializeError(reply.error) : new Error('unexpected first message'));
      }
    });
  });
}

/** The compiled thread script; tests run this file from src/ (through an alias), the build lives in dist/. */
function workerScript(): string {
  for (const candidate of [join(__dirname, 'pool-worker.js'), join(__dirname, '..', 'dist', 'pool-worker.js')]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`pool-worker.js not found beside ${__dirname} or in ../dist: build @facesearch/face-engine first`);
}
