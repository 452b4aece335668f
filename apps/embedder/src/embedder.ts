import type { FaceSearchConfig } from '@facesearch/common';
import { ImportEmbedStage } from '@facesearch/core';
import { createEmbedderServer } from '@facesearch/proto';
import { type ModelWorker, startModelWorker } from '@facesearch/runtime';
import type { Logger } from 'pino';

/**
 * The embedder: serves the Embedder gRPC service (aligned 112x112 crops in, L2-normalised vectors out) for the
 * gateway's synchronous requests, and consumes the `embed` queue of imports: each job names a crop in the blob
 * store; its vector goes to the `index` queue. It holds no state: any number of replicas can run.
 */
export function startEmbedder(config: FaceSearchConfig, logger: Logger): Promise<ModelWorker> {
  return startModelWorker(config, logger, {
    role: 'embedder',
    server: (engine, hooks) => {
      let calls = 0;
      return createEmbedderServer(
        {
          modelId: engine.modelId,
          embeddingDim: engine.embeddingDim,
          async embed(crops) {
            const vectors = await engine.embed(crops);
            calls++;
            logger.debug({ crops: crops.length, calls }, 'embedded crops');
            return vectors;
          },
        },
        { ...hooks, onUnexpectedError: (err, method) => logger.error({ err, method }, 'embedder call failed') },
      );
    },
    consume: async (ports, engine) => {
      const stage = new ImportEmbedStage(ports.library, ports.blobs, engine, ports.queues.index, {
        // Debug, as the detector's line per item.
        onEmbedded: (job) => logger.debug({ import_id: job.import_id, index: job.index }, 'import item embedded'),
      });
      ports.queues.embed.process((job) => stage.handle(job), {
        concurrency: config.embedConcurrency,
        onFailed: async (job, error) => {
          logger.warn({ import_id: job.import_id, index: job.index, err: error }, 'embed job failed');
          await stage.handleFailed(job, error);
        },
      });
      logger.info({ concurrency: config.embedConcurrency }, 'consuming the embed queue');
      // The index queue closes after the embed jobs that still add to it.
      return { queues: [ports.queues.embed, ports.queues.index] };
    },
  });
}
