/**
 * Collects items submitted one by one (each from its own queue job) and hands them to `flush` together:
 * after `maxWaitMs` from the first item, or as soon as `maxItems` are waiting. Each submit() settles with
 * its batch. When a batch fails, its items are flushed again one by one, so one bad item cannot fail the
 * others; only the items that fail on their own reject.
 */
export interface MicroBatcherOptions {
  /** Default 64. */
  maxItems?: number;
  /** Default 50 ms. */
  maxWaitMs?: number;
}

interface Pending<T> {
  item: T;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class MicroBatcher<T> {
  readonly maxItems: number;
  readonly maxWaitMs: number;
  private pending: Pending<T>[] = [];
  private timer?: NodeJS.Timeout;
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly flush: (items: T[]) => Promise<void>,
    options: MicroBatcherOptions = {},
  ) {
    this.maxItems = Math.max(1, Math.floor(options.maxItems ?? 64));
    this.maxWaitMs = Math.max(0, options.maxWaitMs ?? 50);
  }

  submit(item: T): Promise<void> {
    if (this.closed) return Promise.reject(new Error('MicroBatcher is closed'));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (this.pending.length >= this.maxItems) this.flushNow();
      else this.timer ??= setTimeout(() => this.flushNow(), this.maxWaitMs);
    });
  }

  /** Items waiting for the next flush. */
  get size(): number {
    return this.pending.length;
  }

  /** Flushes what is waiting and waits for every running flush. */
  async close(): Promise<void> {
    this.closed = true;
    this.flushNow();
    await Promise.allSettled([...this.inFlight]);
  }

  private flushNow(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const run = this.run(batch).finally(() => this.inFlight.delete(run));
    this.inFlight.add(run);
  }

  /** Never rejects: outcomes go to each item's own promise. */
  private async run(batch: Pending<T>[]): Promise<void> {
    try {
      await this.flush(batch.map((p) => p.item));
      for (const p of batch) p.resolve();
      return;
    } catch (error) {
      if (batch.length === 1) {
        batch[0].reject(error);
        return;
      }
    }
    for (const p of batch) {
      try {
        await this.flush([p.item]);
        p.resolve();
      } catch (error) {
        p.reject(error);
      }
    }
  }
}
