import {
  type AnalyzeCall,
  type AnalyzeResult,
  type DetectOptions,
  type DetectResult,
  type FaceAnalyzer,
  FaceSearchError,
} from '@facesearch/common';

/** Seconds a refused caller is told to wait: an analysis takes well under a second. */
export const ENGINE_BUSY_RETRY_AFTER_SECONDS = 1;

export const engineBusy = (limit: number) =>
  new FaceSearchError(
    'engine_busy',
    `The face engine is running ${limit} analyses already; retry shortly.`,
    503,
    true,
  ).retryAfter(ENGINE_BUSY_RETRY_AFTER_SECONDS);

/**
 * Admission control in front of an analyzer: at most `maxConcurrent` calls run (or wait inside the engine) at
 * once; one more is refused at once with 503 `engine_busy`, so a saturated server answers quickly instead of
 * letting requests queue until clients time out. 0 turns the limit off.
 */
export class AdmissionLimitedAnalyzer implements FaceAnalyzer {
  private active = 0;
  /** Calls refused since start (metrics, tests). */
  refused = 0;

  constructor(
    readonly inner: FaceAnalyzer,
    readonly maxConcurrent: number,
  ) {}

  get modelId(): string {
    return this.inner.modelId;
  }

  get embeddingDim(): number {
    return this.inner.embeddingDim;
  }

  /** Calls running now. */
  get running(): number {
    return this.active;
  }

  detect(image: Uint8Array, options?: DetectOptions, call?: AnalyzeCall): Promise<DetectResult> {
    return this.admit(() => this.inner.detect(image, options, call));
  }

  analyze(image: Uint8Array, options?: DetectOptions, call?: AnalyzeCall): Promise<AnalyzeResult> {
    return this.admit(() => this.inner.analyze(image, options, call));
  }

  /** The inner analyzer belongs to whoever built it. */
  async close(): Promise<void> {}

  private async admit<T>(call: () => Promise<T>): Promise<T> {
    if (this.maxConcurrent > 0 && this.active >= this.maxConcurrent) {
      this.refused++;
      throw engineBusy(this.maxConcurrent);
    }
    this.active++;
    try {
      return await call();
    } finally {
      this.active--;
    }
  }
}
