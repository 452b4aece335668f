import { type FaceSearchConfig, FaceSearchError } from '@facesearch/common';
import { DeleteStage, ImportIndexStage } from '@facesearch/core';
import { buildPorts, closePorts, type MetricsEndpoint, serveWorkerMetrics, WorkerMetrics } from '@facesearch/runtime';
import type { Logger } from 'pino';

export interface IndexerWorker {
  /** The port of its GET /metrics (METRICS_PORT, or the one picked when it is 0); null when METRICS_PORT is unset. */
  metricsPort: number | null;
  close(): Promise<void>;
}

/** Delete jobs removed at once: each is one filtered delete, so a few are plenty. */
export const DELETE_CONCURRENCY = 4;

/**
 * The indexer: consumes the `index` queue and writes embedded faces in batches (one vector upsert per batch,
 * then the face records and item results). Idempotent: the face id is deterministic, so a redelivered job
 * writes the same point and record once. It also consumes the `deletes` queue: the vectors (filtered delete)
 * and images of faces, users and groups whose records the gateway deleted, retried until done.
 */
export async function startIndexer(config: FaceSearchConfig, logger: Logger): Promise<IndexerWorker> {
  if (config.queue !== 'bullmq') {
    throw new FaceSearchError('invalid_config', 'the indexer consumes a shared queue: it needs QUEUE=bullmq', 500);
  }
  const metrics = new WorkerMetrics('indexer');
  const ports = await buildPorts(config, logger, {
    need: ['library', 'vectors', 'blobs', 'queues'] as const,
    jobMetrics: metrics.jobs,
  });
  const stage = new ImportIndexStage(ports.library, ports.vectors, ports.blobs, {
    maxFacesPerUser: config.maxFacesPerUser,
    maxItems: config.indexBatchSize,
    maxWaitMs: config.indexBatchWaitMs,
    onBatch: (faces) => logger.info({ faces }, 'index batch written'),
  });
  ports.queues.index.process((job) => stage.handle(job), {
    concurrency: Math.max(config.indexConcurrency, 1),
    onFailed: async (job, error) => {
      logger.warn({ import_id: job.import_id, index: job.index, err: error }, 'index job failed');
      await stage.handleFailed(job, error);
    },
  });
  const deletes = new DeleteStage(ports.library, ports.vectors, ports.blobs, ports.queues.deletes, {
    onDeleted: (job) => logger.info({ kind: job.kind, delete_id: job.delete_id, round: job.round }, 'delete job done'),
    onRetry: (job, err) =>
      logger.warn({ kind: job.kind, delete_id: job.delete_id, round: job.round, err }, 'delete job retried'),
    onLost: (job, err) =>
      logger.error({ job, err }, 'delete job could not be queued again: its vectors stay (hidden from search)'),
  });
  deletes.start(DELETE_CONCURRENCY);
  logger.info(
    { concurrency: config.indexConcurrency, batchSize: config.indexBatchSize, batchWaitMs: config.indexBatchWaitMs },
    'consuming the index queue',
  );
  const stop = async () => {
    deletes.close();
    await Promise.all([ports.queues.index.close(), ports.queues.deletes.close()]);
    await stage.close();
    await closePorts(ports, logger);
  };
  let endpoint: MetricsEndpoint | null;
  try {
    endpoint = await serveWorkerMetrics(config, logger, metrics);
  } catch (err) {
    await stop();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    metricsPort: endpoint?.port ?? null,
    close() {
      closing ??= (async () => {
        await stop();
        // Last, so the shutdown itself can be watched.
        await endpoint?.close();
      })();
      return closing;
    },
  };
}
