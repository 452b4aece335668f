import type { JobContext, JobQueue, QueueCounts, QueueJob } from '@facesearch/common';
import {
  type QueueLogger,
  type RetryOptions,
  DEFAULT_ATTEMPTS,
  DEFAULT_BACKOFF_MS,
  DEFAULT_CLOSE_TIMEOUT_MS,
  alreadyProcessingError,
  backoffDelay,
  consoleQueueLogger,
  isRetryable,
  positiveInt,
  queueClosedError,
  toError,
} from './shared';

export interface MemoryJobQueueOptions extends RetryOptions {
  /** How long close() waits for running jobs before giving up on them. Default 30 s. */
  closeTimeoutMs?: number;
  logger?: QueueLogger;
}

type Handler<T> = (data: T, ctx: JobContext) => Promise<void>;
type FailedHandler<T> = (data: T, error: unknown) => Promise<void>;

interface Entry<T> {
  id: string;
  data: T;
  /** Attempts started so far. */
  attempt: number;
  retryTimer?: NodeJS.Timeout;
}

/**
 * The embedded mode's queue: jobs live in this process only (callers re-queue unfinished work after a restart
 * from their own records). Same semantics as the BullMQ queue: dedupe while queued or running, retries with
 * exponential backoff, FaceSearchError with retryable=false fails at once, onFailed once after the last failure.
 */
export class MemoryJobQueue<T> implements JobQueue<T> {
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  private readonly closeTimeoutMs: number;
  private readonly logger: QueueLogger;
  /** Insertion-ordered, so the first key is the oldest job. */
  private readonly waiting = new Map<string, Entry<T>>();
  private readonly delayed = new Map<string, Entry<T>>();
  private readonly running = new Map<string, Promise<void>>();
  private completed = 0;
  private failed = 0;
  private handler?: Handler<T>;
  private onFailed?: FailedHandler<T>;
  private concurrency = 1;
  private closing?: Promise<void>;

  constructor(
    readonly name: string,
    options: MemoryJobQueueOptions = {},
  ) {
    this.maxAttempts = positiveInt(options.attempts, DEFAULT_ATTEMPTS, 'attempts');
    this.backoffMs = Math.max(0, options.backoffMs ?? DEFAULT_BACKOFF_MS);
    this.closeTimeoutMs = Math.max(0, options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
    this.logger = options.logger ?? consoleQueueLogger;
  }

  async add(jobs: QueueJob<T>[]): Promise<void> {
    if (this.closing) throw queueClosedError(this.name);
    for (const job of jobs) {
      if (this.has(job.id)) continue;
      this.waiting.set(job.id, { id: job.id, data: job.data, attempt: 0 });
    }
    this.pump();
  }

  async remove(ids: string[]): Promise<number> {
    let removed = 0;
    for (const id of ids) {
      if (this.waiting.delete(id)) {
        removed++;
        continue;
      }
      const entry = this.delayed.get(id);
      if (entry) {
        clearTimeout(entry.retryTimer);
        this.delayed.delete(id);
        removed++;
      }
    }
    return removed;
  }

  process(handler: Handler<T>, options: { concurrency: number; onFailed?: FailedHandler<T> }): void {
    if (this.closing) throw queueClosedError(this.name);
    if (this.handler) throw alreadyProcessingError(this.name);
    this.concurrency = positiveInt(options.concurrency, 1, 'concurrency');
    this.handler = handler;
    this.onFailed = options.onFailed;
    this.pump();
  }

  /** completed and failed are totals since the queue was created. */
  async counts(): Promise<QueueCounts> {
    return {
      waiting: this.waiting.size,
      active: this.running.size,
      delayed: this.delayed.size,
      failed: this.failed,
      completed: this.completed,
    };
  }

  /** Stops taking and starting jobs, then waits (up to closeTimeoutMs) for the running ones. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (const entry of this.delayed.values()) clearTimeout(entry.retryTimer);
    if (this.delayed.size + this.waiting.size > 0) {
      this.logger.warn(
        { queue: this.name, waiting: this.waiting.size, delayed: this.delayed.size },
        'queue closed with jobs not run; they are dropped',
      );
    }
    if (this.running.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.closeTimeoutMs);
    });
    const outcome = await Promise.race([Promise.allSettled([...this.running.values()]), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.logger.warn(
        { queue: this.name, running: [...this.running.keys()] },
        'queue close timed out waiting for jobs',
      );
    }
  }

  private has(id: string): boolean {
    return this.waiting.has(id) || this.delayed.has(id) || this.running.has(id);
  }

  private pump(): void {
    if (!this.handler || this.closing) return;
    while (this.running.size < this.concurrency && this.waiting.size > 0) {
      const entry = this.waiting.values().next().value as Entry<T>;
      this.waiting.delete(entry.id);
      this.start(entry);
    }
  }

  private start(entry: Entry<T>): void {
    entry.attempt++;
    const run = this.runAttempt(entry)
      .catch((err) => this.logger.error({ queue: this.name, jobId: entry.id, err }, 'queue bookkeeping failed'))
      .finally(() => {
        // A quick retry may already run under the same id; only remove this attempt.
        if (this.running.get(entry.id) === run) this.running.delete(entry.id);
        this.pump();
      });
    this.running.set(entry.id, run);
  }

  /** Never rejects: a handler's failure is this job's business only. */
  private async runAttempt(entry: Entry<T>): Promise<void> {
    const handler = this.handler as Handler<T>;
    try {
      // Through a promise so that a synchronous throw is caught like a rejection.
      await Promise.resolve().then(() =>
        handler(entry.data, { attempt: entry.attempt, maxAttempts: this.maxAttempts }),
      );
      this.completed++;
      return;
    } catch (error) {
      if (isRetryable(error) && entry.attempt < this.maxAttempts) {
        if (this.closing) {
          this.logger.warn(
            { queue: this.name, jobId: entry.id, err: toError(error) },
            'retry dropped: queue is closing',
          );
          return;
        }
        this.scheduleRetry(entry);
        return;
      }
      this.failed++;
      await this.notifyFailed(entry, error);
    }
  }

  private scheduleRetry(entry: Entry<T>): void {
    this.delayed.set(entry.id, entry);
    entry.retryTimer = setTimeout(
      () => {
        this.delayed.delete(entry.id);
        entry.retryTimer = undefined;
        if (this.closing) return;
        this.waiting.set(entry.id, entry);
        this.pump();
      },
      backoffDelay(this.backoffMs, entry.attempt + 1),
    );
  }

  private async notifyFailed(entry: Entry<T>, error: unknown): Promise<void> {
    if (!this.onFailed) {
      this.logger.warn({ queue: this.name, jobId: entry.id, err: toError(error) }, 'job failed');
      return;
    }
    try {
      await this.onFailed(entry.data, error);
    } catch (err) {
      this.logger.error({ queue: this.name, jobId: entry.id, err }, 'onFailed handler threw');
    }
  }
}
