import type { FaceSearchConfig } from '@facesearch/common';
import { ImportDetectStage } from '@facesearch/core';
import { createDetectorServer } from '@facesearch/proto';
import { type ModelWorker, startModelWorker } from '@facesearch/runtime';
import type { Logger } from 'pino';

/**
 * The detector: serves the Detector gRPC service (decode, detect, quality, aligned crops) for the gateway's
 * synchronous requests, and consumes the `imports` queue: each item is detected and aligned here, its crop goes
 * to the blob store and an `embed` job with the crop's key to the embedder workers. It calls no other service.
 */
export function startDetector(config: FaceSearchConfig, logger: Logger): Promise<ModelWorker> {
  return startModelWorker(config, logger, {
    role: 'detector',
    server: (engine) =>
      createDetectorServer(engine, {
        maxMessageBytes: Math.max(config.maxImageBytes + 1024 * 1024, 64 * 1024 * 1024),
        onUnexpectedError: (err, method) => logger.error({ err, method }, 'detector call failed'),
      }),
    consume: (ports, engine) => {
      const stage = new ImportDetectStage(ports.library, ports.blobs, engine, ports.queues.embed, {
        maxFacesPerUser: config.maxFacesPerUser,
        onDetected: (job) => logger.info({ import_id: job.import_id, index: job.index }, 'import item analysed'),
      });
      ports.queues.imports.process((data, ctx) => stage.handle(data, ctx), {
        concurrency: config.importConcurrency,
        onFailed: async (data, error) => {
          logger.warn({ import_id: data.import_id, index: data.index, err: error }, 'import item failed');
          await stage.handleFailed(data, error);
        },
      });
      logger.info({ concurrency: config.importConcurrency }, 'consuming the imports queue');
      // The embed queue closes after the import jobs: a job finishing during shutdown still hands its face on.
      return [ports.queues.imports, ports.queues.embed];
    },
  });
}
