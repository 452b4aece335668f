import { FaceSearchError, type JobContext, type JobQueue, type QueueCounts, type QueueJob } from '@facesearch/common';

/**
 * A queue whose producer-side failures are a clear 503: when Redis is down, BullMQ and ioredis throw their own
 * errors, which would otherwise reach an HTTP client as a 500.
 */
export class GuardedJobQueue<T> implements JobQueue<T> {
  constructor(readonly inner: JobQueue<T>) {}

  get name(): string {
    return this.inner.name;
  }

  add(jobs: QueueJob<T>[]): Promise<void> {
    return this.guard('add', () => this.inner.add(jobs));
  }

  remove(ids: string[]): Promise<number> {
    return this.guard('remove', () => this.inner.remove(ids));
  }

  process(
    handler: (data: T, ctx: JobContext) => Promise<void>,
    options: { concurrency: number; onFailed?: (data: T, error: unknown) => Promise<void> },
  ): void {
    this.inner.process(handler, options);
  }

  counts(): Promise<QueueCounts> {
    return this.guard('counts', () => this.inner.counts());
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async guard<R>(operation: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof FaceSearchError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new FaceSearchError(
        'queue_unavailable',
        `The job queue (Redis) failed on ${operation} of queue ${this.inner.name}: ${message}`,
        503,
        true,
      );
    }
  }
}
