/**
 * Where one request's time went, by stage (the models, the vector store, the library records), for the
 * `Server-Timing` response header: the model's share of a request and everything around it, measured in the same
 * process (a benchmark comparing the service with the bare model across runs cannot resolve a few ms).
 */
export class StageTimings {
  /** Per stage, the [start, end] of each timed piece of work, in the order they started. */
  private readonly spans = new Map<string, Array<[number, number]>>();
  /** Per stage, durations measured elsewhere (added up). */
  private readonly added = new Map<string, number>();

  /**
   * Runs `work` as part of `stage`. A stage's time is how long at least one of its pieces was running: pieces one
   * after another add up, pieces running at once (an M:N search's faces, a compare's two images) count once.
   */
  async time<T>(stage: string, work: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await work();
    } finally {
      const spans = this.spans.get(stage) ?? [];
      spans.push([start, performance.now()]);
      this.spans.set(stage, spans);
    }
  }

  /** Adds a duration measured elsewhere (e.g. the engine's own time inside `analyze`); nothing when unknown. */
  add(stage: string, ms: number | undefined): void {
    if (ms === undefined || !Number.isFinite(ms)) return;
    this.added.set(stage, (this.added.get(stage) ?? 0) + ms);
  }

  /** Each stage's time in ms, in the order the stages were first timed or added. */
  stages(): Map<string, number> {
    const ms = new Map<string, number>();
    for (const [stage, spans] of this.spans) ms.set(stage, coveredMs(spans));
    for (const [stage, extra] of this.added) ms.set(stage, (ms.get(stage) ?? 0) + extra);
    return ms;
  }

  /** The Server-Timing header value, e.g. `analyze;dur=63.2, vectors;dur=21.0`; empty when nothing was timed. */
  header(): string {
    return [...this.stages()].map(([stage, ms]) => `${stage};dur=${ms.toFixed(1)}`).join(', ');
  }
}

/** The length of the union of the spans. */
function coveredMs(spans: Array<[number, number]>): number {
  const sorted = [...spans].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let [from, to] = sorted[0] ?? [0, 0];
  for (const [start, end] of sorted.slice(1)) {
    if (start > to) {
      total += to - from;
      from = start;
    }
    to = Math.max(to, end);
  }
  return total + (to - from);
}
