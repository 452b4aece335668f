import { FaceSearchError, type JobContext, type JobQueue, type QueueCounts, type QueueJob } from '@facesearch/common';
import { type Job, type KeepJobs, Queue, UnrecoverableError, Worker } from 'bullmq';
import IORedis, { type ChainableCommander, type Redis } from 'ioredis';
import {
  type QueueLogger,
  type RetryOptions,
  DEFAULT_ATTEMPTS,
  DEFAULT_BACKOFF_MS,
  DEFAULT_CLOSE_TIMEOUT_MS,
  alreadyProcessingError,
  consoleQueueLogger,
  isRetryable,
  positiveInt,
  queueClosedError,
  toError,
} from './shared';

export interface BullMqJobQueueOptions extends RetryOptions {
  /** redis://[user:pass@]host:port[/db] */
  redisUrl: string;
  /** Key prefix in Redis. Default `facesearch`. */
  prefix?: string;
  /** Finished jobs kept for inspection and counts. Default: 1 hour, at most 1000. */
  removeOnComplete?: KeepJobs;
  /** Default: 7 days, at most 10 000. */
  removeOnFail?: KeepJobs;
  /** How long close() waits for running jobs before closing the worker by force. Default 30 s. */
  closeTimeoutMs?: number;
  /**
   * Job lock: a job whose worker stopped renewing it (the process died) is moved back to waiting by the stalled
   * check, which runs every lockDurationMs / 2. Default 30 s.
   */
  lockDurationMs?: number;
  /** Times a job may stall (its worker die) before it fails for good. Default: attempts. */
  maxStalledCount?: number;
  logger?: QueueLogger;
}

const DAY_SECONDS = 24 * 3600;
const ADD_CHUNK = 500;
/** BullMQ's reasons for failing a job without running our handler (it stalled or started too often). */
const NOT_RUN_FAILURE = /allowable limit/;

/**
 * BullMQ ids may not be plain integers nor contain ':'; ours are free-form strings, so encode them.
 * encodeURIComponent turns ':' into %3A and the prefix keeps "42" from looking like an integer.
 */
export function bullJobId(id: string): string {
  return `j-${encodeURIComponent(id)}`;
}

type Handler<T> = (data: T, ctx: JobContext) => Promise<void>;
type FailedHandler<T> = (data: T, error: unknown) => Promise<void>;

/**
 * The distributed mode's queue on Redis. One instance holds a BullMQ Queue (to add, remove and count) and,
 * once process() is called, a Worker on the same queue name: a process may only produce, or also consume.
 *
 * Job data is stored as JSON: T must be JSON-serialisable (no Uint8Array, Map, Date objects, bigint...);
 * put bytes in the blob store and pass their key.
 *
 * onFailed runs inside the last attempt, before the job is marked failed in Redis: if the process dies in
 * between, the job stalls, is retried and onFailed may run a second time, so onFailed must be idempotent
 * (a lost call would be worse: the job's owner would never learn it failed).
 */
export class BullMqJobQueue<T> implements JobQueue<T> {
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly closeTimeoutMs: number;
  private readonly logger: QueueLogger;
  private readonly queueConnection: Redis;
  private workerConnection?: Redis;
  private readonly queue: Queue;
  private worker?: Worker;
  private closing?: Promise<void>;

  constructor(
    readonly name: string,
    private readonly options: BullMqJobQueueOptions,
  ) {
    this.attempts = positiveInt(options.attempts, DEFAULT_ATTEMPTS, 'attempts');
    this.backoffMs = Math.max(0, options.backoffMs ?? DEFAULT_BACKOFF_MS);
    this.closeTimeoutMs = Math.max(0, options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
    this.logger = options.logger ?? consoleQueueLogger;
    // Producer side: fail a command after a few retries rather than hang an HTTP request forever.
    this.queueConnection = new IORedis(options.redisUrl, { maxRetriesPerRequest: 3 });
    this.queueConnection.on('error', (err) => this.logger.error({ queue: name, err }, 'redis connection error'));
    this.queue = new Queue(name, {
      connection: this.queueConnection,
      prefix: options.prefix ?? 'facesearch',
      defaultJobOptions: this.jobOptions(),
    });
    this.queue.on('error', (err) => this.logger.error({ queue: name, err }, 'queue error'));
  }

  async add(jobs: QueueJob<T>[]): Promise<void> {
    if (this.closing) throw queueClosedError(this.name);
    const unique = new Map<string, QueueJob<T>>();
    for (const job of jobs) if (!unique.has(job.id)) unique.set(job.id, job);
    const all = [...unique.values()];
    for (let i = 0; i < all.length; i += ADD_CHUNK) {
      const chunk = all.slice(i, i + ADD_CHUNK);
      // BullMQ ignores an id it still keeps, even finished; the port dedupes only queued or running jobs,
      // so a finished job's record is dropped first and the job runs again.
      const finished = await this.finishedJobIds(chunk.map((job) => bullJobId(job.id)));
      await Promise.all(finished.map((jobId) => this.queue.remove(jobId)));
      await this.queue.addBulk(
        chunk.map((job) => ({
          name: this.name,
          data: job.data,
          opts: { ...this.jobOptions(), jobId: bullJobId(job.id) },
        })),
      );
    }
  }

  async remove(ids: string[]): Promise<number> {
    const jobIds = [...new Set(ids)].map(bullJobId);
    // Finished jobs stay (the port removes queued ones); BullMQ's remove refuses a running (locked) job by itself.
    const finished = new Set(await this.finishedJobIds(jobIds));
    let removed = 0;
    for (const jobId of await this.heldJobIds(jobIds.filter((jobId) => !finished.has(jobId)))) {
      try {
        removed += (await this.queue.remove(jobId)) === 1 ? 1 : 0;
      } catch (err) {
        this.logger.warn({ queue: this.name, jobId, err }, 'job could not be removed');
      }
    }
    return removed;
  }

  process(handler: Handler<T>, options: { concurrency: number; onFailed?: FailedHandler<T> }): void {
    if (this.closing) throw queueClosedError(this.name);
    if (this.worker) throw alreadyProcessingError(this.name);
    const concurrency = positiveInt(options.concurrency, 1, 'concurrency');
    // BullMQ requires maxRetriesPerRequest null on the worker's (blocking) connection.
    this.workerConnection = new IORedis(this.options.redisUrl, { maxRetriesPerRequest: null });
    this.workerConnection.on('error', (err) => this.logger.error({ queue: this.name, err }, 'redis connection error'));
    const lockDuration = Math.max(1000, this.options.lockDurationMs ?? 30_000);
    this.worker = new Worker(this.name, (job: Job) => this.runAttempt(job, handler, options.onFailed), {
      connection: this.workerConnection,
      prefix: this.options.prefix ?? 'facesearch',
      concurrency,
      lockDuration,
      stalledInterval: Math.max(500, Math.floor(lockDuration / 2)),
      maxStalledCount: this.options.maxStalledCount ?? this.attempts,
    });
    this.worker.on('error', (err) => this.logger.error({ queue: this.name, err }, 'worker error'));
    this.worker.on('stalled', (jobId) =>
      this.logger.warn({ queue: this.name, jobId }, 'job stalled; back in the queue'),
    );
    // A job that stalled too often is failed by BullMQ without reaching runAttempt: its owner must still learn it.
    this.worker.on('failed', (job, err) => {
      if (!job || !NOT_RUN_FAILURE.test(err.message)) return;
      this.logger.warn({ queue: this.name, jobId: job.id, err }, 'job failed without running (its workers died)');
      const reason = new FaceSearchError('job_stalled', `Its workers stopped while running it (${err.message}).`, 503);
      void this.notifyFailed(job, reason, options.onFailed);
    });
  }

  /** completed and failed count the finished jobs BullMQ still keeps (see removeOnComplete/removeOnFail). */
  async counts(): Promise<QueueCounts> {
    const c = await this.queue.getJobCounts(
      'waiting',
      'prioritized',
      'paused',
      'active',
      'delayed',
      'failed',
      'completed',
    );
    return {
      waiting: (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.paused ?? 0),
      active: c.active ?? 0,
      delayed: c.delayed ?? 0,
      failed: c.failed ?? 0,
      completed: c.completed ?? 0,
    };
  }

  /** Closes the worker (waiting up to closeTimeoutMs for running jobs), then the queue, then the connections. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** Deletes the queue and all its jobs from Redis (tests, and removing a queue for good). */
  async obliterate(): Promise<void> {
    await this.queue.obliterate({ force: true });
  }

  private async shutdown(): Promise<void> {
    if (this.worker) {
      const worker = this.worker;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), this.closeTimeoutMs);
      });
      const outcome = await Promise.race([worker.close().then(() => 'closed' as const), timedOut]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        // The running jobs keep their locks until these expire; BullMQ then hands them to another worker.
        this.logger.warn({ queue: this.name }, 'worker close timed out; forcing');
        await worker.close(true);
      }
    }
    await this.queue.close();
    await Promise.all([quit(this.workerConnection), quit(this.queueConnection)]);
  }

  /**
   * Of these ids, those BullMQ keeps as finished: in its completed or failed sorted set (two ZSCOREs each, O(1), all
   * in one round trip). BullMQ's getJobState would look for every id not finished, new ones included, through the
   * whole waiting list (LPOS): behind 100k waiting jobs that took 1.5 ms of Redis's single thread per item
   * (scripts/bench/queue-add.mjs).
   */
  private async finishedJobIds(jobIds: string[]): Promise<string[]> {
    const { completed, failed } = this.queue.keys;
    const replies = await this.pipelined(jobIds, (pipeline, jobId) =>
      pipeline.zscore(completed, jobId).zscore(failed, jobId),
    );
    return jobIds.filter((_, k) => replies[2 * k] !== null || replies[2 * k + 1] !== null);
  }

  /** The ids BullMQ holds a job for, in any state: one EXISTS on each job's hash (BullMQ's own duplicate test). */
  private async heldJobIds(jobIds: string[]): Promise<string[]> {
    const replies = await this.pipelined(jobIds, (pipeline, jobId) => pipeline.exists(this.queue.toKey(jobId)));
    return jobIds.filter((_, k) => replies[k] === 1);
  }

  /** Runs `commands` for each id in one pipeline (one round trip); the replies in order, or the first error. */
  private async pipelined(
    jobIds: string[],
    commands: (pipeline: ChainableCommander, jobId: string) => void,
  ): Promise<unknown[]> {
    if (jobIds.length === 0) return [];
    const pipeline = this.queueConnection.pipeline();
    for (const jobId of jobIds) commands(pipeline, jobId);
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([err, reply]) => {
      if (err) throw err;
      return reply;
    });
  }

  private jobOptions() {
    return {
      attempts: this.attempts,
      backoff: { type: 'exponential', delay: this.backoffMs },
      removeOnComplete: this.options.removeOnComplete ?? { age: 3600, count: 1000 },
      removeOnFail: this.options.removeOnFail ?? { age: 7 * DAY_SECONDS, count: 10_000 },
    };
  }

  private async runAttempt(job: Job, handler: Handler<T>, onFailed?: FailedHandler<T>): Promise<void> {
    // attemptsMade counts finished tries; the job's own options win over ours (another process added it).
    const attempt = job.attemptsMade + 1;
    const maxAttempts = job.opts.attempts ?? this.attempts;
    try {
      await Promise.resolve().then(() => handler(job.data as T, { attempt, maxAttempts }));
    } catch (error) {
      const err = toError(error);
      if (isRetryable(error) && attempt < maxAttempts) throw err;
      await this.notifyFailed(job, error, onFailed);
      // Final either way: make sure BullMQ agrees and does not try again.
      const code = (error as { code?: unknown } | null)?.code;
      throw new UnrecoverableError(typeof code === 'string' ? `${code}: ${err.message}` : err.message);
    }
  }

  private async notifyFailed(job: Job, error: unknown, onFailed?: FailedHandler<T>): Promise<void> {
    if (!onFailed) return;
    try {
      await onFailed(job.data as T, error);
    } catch (err) {
      this.logger.error({ queue: this.name, jobId: job.id, err }, 'onFailed handler threw');
    }
  }
}

async function quit(connection: Redis | undefined): Promise<void> {
  if (!connection || connection.status === 'end') return;
  try {
    await connection.quit();
  } catch {
    connection.disconnect();
  }
}
