/**
 * Where one request's time went, by stage (the models, the vector store, the library records), for the
 * `Server-Timing` response header: the model's share of a request and everything around it, measured in the same
 * process (a benchmark comparing the service with the bare model across runs cannot resolve a few ms).
 */
export class StageTimings {
  private readonly ms = new Map<string, number>();

  /** Runs `work`, adding its duration to `stage` (a stage may be timed several times: the durations add up). */
  async time<T>(stage: string, work: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await work();
    } finally {
      this.ms.set(stage, (this.ms.get(stage) ?? 0) + performance.now() - start);
    }
  }

  /** Adds a duration measured elsewhere (e.g. the engine's own time inside `analyze`); nothing when unknown. */
  add(stage: string, ms: number | undefined): void {
    if (ms === undefined || !Number.isFinite(ms)) return;
    this.ms.set(stage, (this.ms.get(stage) ?? 0) + ms);
  }

  /** The Server-Timing header value, e.g. `analyze;dur=63.2, vectors;dur=21.0`; empty when nothing was timed. */
  header(): string {
    return [...this.ms].map(([stage, ms]) => `${stage};dur=${ms.toFixed(1)}`).join(', ');
  }
}
