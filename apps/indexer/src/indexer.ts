import { type FaceSearchConfig, FaceSearchError } from '@facesearch/common';
import { ImportIndexStage } from '@facesearch/core';
import { buildPorts, closePorts } from '@facesearch/runtime';
import type { Logger } from 'pino';

export interface IndexerWorker {
  close(): Promise<void>;
}

/**
 * The indexer: consumes the `index` queue and writes analysed faces in batches (one vector upsert per batch,
 * then the face records and item results). Idempotent: the face id is deterministic, so a redelivered job
 * writes the same point and record once.
 */
export async function startIndexer(config: FaceSearchConfig, logger: Logger): Promise<IndexerWorker> {
  if (config.queue !== 'bullmq') {
    throw new FaceSearchError('invalid_config', 'the indexer consumes a shared queue: it needs QUEUE=bullmq', 500);
  }
  const ports = await buildPorts(config, logger, { need: ['library', 'vectors', 'blobs', 'queues'] as const });
  const stage = new ImportIndexStage(ports.library, ports.vectors, ports.blobs, {
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
  logger.info(
    { concurrency: config.indexConcurrency, batchSize: config.indexBatchSize, batchWaitMs: config.indexBatchWaitMs },
    'consuming the index queue',
  );
  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= (async () => {
        await Promise.all([ports.queues.index.close(), ports.queues.imports.close()]);
        await stage.close();
        await closePorts(ports, logger);
      })();
      return closing;
    },
  };
}
