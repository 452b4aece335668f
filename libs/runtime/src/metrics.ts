import { createServer, type Server } from 'node:http';
import type { FaceSearchConfig, JobContext, JobQueue, QueueCounts, QueueJob } from '@facesearch/common';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

// Jobs take from ~1 ms (an index job joining a batch) to tens of seconds (a detection retried on a loaded worker).
const JOB_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
// A model call is 20-200 ms on a core; the low buckets show the hop's own cost when the handler is quick.
const CALL_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * What the queue consumers of one process did: every attempt with its outcome and duration, and the jobs that
 * failed for good (after their last attempt). Registered in the process's registry (gateway or worker).
 */
export class JobMetrics {
  readonly attempts: Counter<'queue' | 'outcome'>;
  readonly duration: Histogram<'queue' | 'outcome'>;
  readonly failed: Counter<'queue'>;

  constructor(registry: Registry) {
    this.attempts = new Counter({
      name: 'facesearch_job_attempts_total',
      help: 'Job attempts run by this process, by queue and outcome (succeeded, or error: retried or failed)',
      labelNames: ['queue', 'outcome'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'facesearch_job_duration_seconds',
      help: 'Time of one job attempt in this process, by queue and outcome',
      labelNames: ['queue', 'outcome'],
      buckets: JOB_BUCKETS,
      registers: [registry],
    });
    this.failed = new Counter({
      name: 'facesearch_jobs_failed_total',
      help: 'Jobs that failed for good in this process (after their last attempt), by queue',
      labelNames: ['queue'],
      registers: [registry],
    });
  }

  /** The queue, with its consumer's attempts and final failures counted here. */
  instrument<T>(queue: JobQueue<T>): JobQueue<T> {
    return new InstrumentedJobQueue(queue, this);
  }
}

/** Counts and times what a queue's handler does; everything else goes straight to the queue. */
class InstrumentedJobQueue<T> implements JobQueue<T> {
  constructor(
    private readonly inner: JobQueue<T>,
    private readonly metrics: JobMetrics,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  add(jobs: QueueJob<T>[]): Promise<void> {
    return this.inner.add(jobs);
  }

  remove(ids: string[]): Promise<number> {
    return this.inner.remove(ids);
  }

  process(
    handler: (data: T, ctx: JobContext) => Promise<void>,
    options: { concurrency: number; onFailed?: (data: T, error: unknown) => Promise<void> },
  ): void {
    const queue = this.inner.name;
    const { attempts, duration, failed } = this.metrics;
    const onFailed = options.onFailed;
    this.inner.process(
      async (data, ctx) => {
        const end = duration.startTimer({ queue });
        try {
          await handler(data, ctx);
          end({ outcome: 'succeeded' });
          attempts.inc({ queue, outcome: 'succeeded' });
        } catch (err) {
          end({ outcome: 'error' });
          attempts.inc({ queue, outcome: 'error' });
          throw err;
        }
      },
      {
        ...options,
        onFailed: async (data, error) => {
          failed.inc({ queue });
          await onFailed?.(data, error);
        },
      },
    );
  }

  counts(): Promise<QueueCounts> {
    return this.inner.counts();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** The gRPC calls a worker served: duration by method and status code (OK, INVALID_ARGUMENT, ...). */
export class CallMetrics {
  readonly duration: Histogram<'method' | 'code'>;

  constructor(registry: Registry) {
    this.duration = new Histogram({
      name: 'facesearch_grpc_server_duration_seconds',
      help: 'gRPC calls served by this worker, by method and status code',
      labelNames: ['method', 'code'],
      buckets: CALL_BUCKETS,
      registers: [registry],
    });
  }

  observe(method: string, code: string, seconds: number): void {
    this.duration.observe({ method, code }, seconds);
  }
}

/** A worker's metrics: the process's own (CPU, memory, event loop lag, GC), its jobs and its gRPC calls. */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly jobs: JobMetrics;
  readonly calls: CallMetrics;

  constructor(service: string) {
    this.registry.setDefaultLabels({ service });
    collectDefaultMetrics({ register: this.registry });
    this.jobs = new JobMetrics(this.registry);
    this.calls = new CallMetrics(this.registry);
  }
}

export interface MetricsEndpoint {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (Prometheus text format) on host:port, for a worker that has no HTTP server of its own;
 * port 0 picks a free one (logged). Anything else answers 404.
 */
export async function serveMetrics(
  registry: Registry,
  host: string,
  port: number,
  logger: Logger,
): Promise<MetricsEndpoint> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        logger.error({ err }, 'metrics could not be collected');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics could not be collected\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as { port: number }).port;
  logger.info({ metricsPort: bound }, `metrics on http://${host}:${bound}/metrics`);
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Serves a worker's metrics on METRICS_PORT; null when it is unset. Called once the worker is up. */
export function serveWorkerMetrics(
  config: FaceSearchConfig,
  logger: Logger,
  metrics: WorkerMetrics,
): Promise<MetricsEndpoint | null> {
  if (config.metricsPort === null) return Promise.resolve(null);
  return serveMetrics(metrics.registry, config.host, config.metricsPort, logger);
}
