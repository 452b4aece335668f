import type { JobQueue } from '@facesearch/common';
import { JobMetrics } from '@facesearch/runtime';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of one gateway instance (own registry, so several apps can live in one process). */
export class Metrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly facesIndexed: Counter;
  /** Where the time of detect, compare and search requests went (the Server-Timing stages), for every request. */
  readonly stageDuration: Histogram<'route' | 'stage'>;
  /** The import and delete jobs this gateway runs itself (embedded mode). */
  readonly jobs: JobMetrics;

  constructor(queues: Array<JobQueue<unknown>>) {
    collectDefaultMetrics({ register: this.registry });
    this.httpDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
    this.stageDuration = new Histogram({
      name: 'facesearch_request_stage_seconds',
      help: 'Time of each stage of detect, compare and search requests (analyze, engine, vectors, library, gateway)',
      labelNames: ['route', 'stage'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    this.jobs = new JobMetrics(this.registry);
    this.facesIndexed = new Counter({
      name: 'facesearch_faces_indexed_total',
      help: 'Faces indexed by this process (enrol, import, copy)',
      registers: [this.registry],
    });
    new Gauge({
      name: 'facesearch_queue_jobs',
      help: 'Jobs per queue and state',
      labelNames: ['queue', 'state'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const queue of queues) {
          try {
            const counts = await queue.counts();
            for (const [state, n] of Object.entries(counts)) this.set({ queue: queue.name, state }, n);
          } catch {
            // a queue that cannot answer shows no numbers; /health/ready reports the outage
          }
        }
      },
    });
    new Gauge({
      name: 'facesearch_queue_depth',
      help: 'Jobs waiting or delayed per queue',
      labelNames: ['queue'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const queue of queues) {
          try {
            const c = await queue.counts();
            this.set({ queue: queue.name }, c.waiting + c.delayed);
          } catch {
            // see above
          }
        }
      },
    });
  }

  /** One answered request's stages (ms, as in its Server-Timing header). */
  observeStages(route: string, stages: Map<string, number>): void {
    for (const [stage, ms] of stages) this.stageDuration.observe({ route, stage }, ms / 1000);
  }
}
