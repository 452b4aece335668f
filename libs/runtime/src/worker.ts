import type { FaceSearchConfig, JobQueue } from '@facesearch/common';
import type { LocalFaceEngine } from '@facesearch/face-engine';
import type { FaceSearchGrpcServer, GrpcServerOptions } from '@facesearch/proto';
import type { Logger } from 'pino';
import { createLocalEngine } from './analyzer';
import { type MetricsEndpoint, serveWorkerMetrics, WorkerMetrics } from './metrics';
import { buildPorts, closePorts, type Ports } from './ports';

export type WorkerPorts = Pick<Ports, 'library' | 'blobs' | 'queues'>;

export interface ModelWorkerSpec {
  /** `detector` or `embedder`: used in log lines. */
  role: string;
  /** The gRPC server for the gateway's synchronous calls, built on the worker's engine, with `hooks` in its options. */
  server(engine: LocalFaceEngine, hooks: Required<Pick<GrpcServerOptions, 'onCallEnd'>>): FaceSearchGrpcServer;
  /**
   * Starts consuming its queue (QUEUE=bullmq only) and returns the queues to close at shutdown, in order: the one
   * it consumes first, then the one it feeds, so a job finishing during shutdown still hands its work on; and
   * what else to release after them (clients it opened).
   */
  consume(
    ports: WorkerPorts,
    engine: LocalFaceEngine,
  ): Promise<{ queues: JobQueue<unknown>[]; release?: () => Promise<void> }>;
}

export interface ModelWorker {
  /** The port the gRPC service listens on (GRPC_PORT, or the one picked when it is 0). */
  grpcPort: number;
  /** The port of its GET /metrics (METRICS_PORT, or the one picked when it is 0); null when METRICS_PORT is unset. */
  metricsPort: number | null;
  engine: LocalFaceEngine;
  /** Whether this process consumes its queue (QUEUE=bullmq). */
  consumes: boolean;
  close(): Promise<void>;
}

/**
 * Start-up and shutdown shared by the detector and embedder workers: the local engine, a gRPC service, and a queue
 * consumer. On shutdown, calls and jobs stop being taken together; running ones finish within the timeout.
 */
export async function startModelWorker(
  config: FaceSearchConfig,
  logger: Logger,
  spec: ModelWorkerSpec,
): Promise<ModelWorker> {
  const consumes = config.queue === 'bullmq';
  const metrics = new WorkerMetrics(spec.role);
  const engine = await createLocalEngine(config);
  const server = spec.server(engine, {
    onCallEnd: (method, code, seconds) => metrics.calls.observe(method, code, seconds),
  });
  let grpcPort: number;
  try {
    grpcPort = await server.listen(`${config.host}:${config.grpcPort}`);
  } catch (err) {
    await engine.close();
    throw err;
  }
  logger.info({ grpcPort, model: engine.modelId }, `${spec.role} gRPC service on ${config.host}:${grpcPort}`);

  let ports: WorkerPorts | null = null;
  let closeOrder: JobQueue<unknown>[] = [];
  let release: (() => Promise<void>) | undefined;
  let endpoint: MetricsEndpoint | null;
  try {
    if (consumes) {
      ports = await buildPorts(config, logger, {
        need: ['library', 'blobs', 'queues'] as const,
        jobMetrics: metrics.jobs,
      });
      ({ queues: closeOrder, release } = await spec.consume(ports, engine));
    } else {
      logger.warn(`QUEUE is not bullmq: the ${spec.role} serves gRPC only and consumes no jobs`);
    }
    endpoint = await serveWorkerMetrics(config, logger, metrics);
  } catch (err) {
    await server.close(0);
    if (ports) await closePorts(ports, logger);
    await release?.();
    await engine.close();
    throw err;
  }

  let closing: Promise<void> | undefined;
  return {
    grpcPort,
    metricsPort: endpoint?.port ?? null,
    engine,
    consumes,
    close() {
      closing ??= (async () => {
        const stopJobs = async () => {
          for (const queue of closeOrder) await queue.close();
        };
        await Promise.all([stopJobs(), server.close(config.shutdownTimeoutMs * 0.7)]);
        await release?.();
        if (ports) await closePorts(ports, logger);
        await engine.close();
        // Last, so the shutdown itself can be watched.
        await endpoint?.close();
      })();
      return closing;
    },
  };
}
