import type { FaceSearchConfig } from '@facesearch/common';
import { ImportDetectStage } from '@facesearch/core';
import { createDetectorServer } from '@facesearch/proto';
import { buildPorts, closePorts, createLocalEngine, type Ports } from '@facesearch/runtime';
import type { Logger } from 'pino';

export interface DetectorWorker {
  /** The port the Detector gRPC service listens on (GRPC_PORT, or the one picked when it is 0). */
  grpcPort: number;
  /** Whether this process consumes the `imports` queue (QUEUE=bullmq). */
  consumesImports: boolean;
  close(): Promise<void>;
}

/**
 * The detector: serves the Detector gRPC service (decode, detect, quality, aligned crops) for the gateway's
 * synchronous requests, and consumes the `imports` queue: each item is detected and aligned here, its crop goes
 * to the blob store and an `embed` job with the crop's key to the embedder workers. It calls no other service.
 */
export async function startDetector(config: FaceSearchConfig, logger: Logger): Promise<DetectorWorker> {
  const consumesImports = config.queue === 'bullmq';
  const engine = await createLocalEngine(config);
  const server = createDetectorServer(engine, {
    maxMessageBytes: Math.max(config.maxImageBytes + 1024 * 1024, 64 * 1024 * 1024),
    onUnexpectedError: (err, method) => logger.error({ err, method }, 'detector call failed'),
  });
  let grpcPort: number;
  try {
    grpcPort = await server.listen(`${config.host}:${config.grpcPort}`);
  } catch (err) {
    await engine.close();
    throw err;
  }
  logger.info({ grpcPort, model: engine.detectorModelId }, `detector gRPC service on ${config.host}:${grpcPort}`);

  let ports: Pick<Ports, 'library' | 'blobs' | 'queues'> | null = null;
  try {
    if (consumesImports) {
      ports = await buildPorts(config, logger, { need: ['library', 'blobs', 'queues'] as const });
      const stage = new ImportDetectStage(ports.library, ports.blobs, engine, ports.queues.embed, {
        maxFacesPerUser: config.maxFacesPerUser,
        onDetected: (job) => logger.info({ import_id: job.import_id, index: job.index }, 'import item analysed'),
      });
      const queue = ports.queues.imports;
      queue.process((data, ctx) => stage.handle(data, ctx), {
        concurrency: config.importConcurrency,
        onFailed: async (data, error) => {
          logger.warn({ import_id: data.import_id, index: data.index, err: error }, 'import item failed');
          await stage.handleFailed(data, error);
        },
      });
      logger.info({ concurrency: config.importConcurrency }, 'consuming the imports queue');
    } else {
      logger.warn('QUEUE is not bullmq: serving gRPC only, not consuming import jobs');
    }
  } catch (err) {
    await server.close(0);
    if (ports) await closePorts(ports, logger);
    await engine.close();
    throw err;
  }

  let closing: Promise<void> | undefined;
  return {
    grpcPort,
    consumesImports,
    close() {
      closing ??= (async () => {
        // Stop taking jobs and calls together; running ones finish (within the shutdown timeout). The embed
        // queue closes only after the import jobs: a job finishing during shutdown still hands its face on.
        const stopImports = async () => {
          if (!ports) return;
          await ports.queues.imports.close();
          await ports.queues.embed.close();
        };
        await Promise.all([stopImports(), server.close(config.shutdownTimeoutMs * 0.7)]);
        if (ports) await closePorts(ports, logger);
        await engine.close();
      })();
      return closing;
    },
  };
}
