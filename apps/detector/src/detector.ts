import { type FaceSearchConfig, FaceSearchError } from '@facesearch/common';
import { ImportAnalysisStage } from '@facesearch/core';
import type { FaceEngine } from '@facesearch/face-engine';
import { createDetectorServer, GrpcFaceAnalyzer } from '@facesearch/proto';
import { buildPorts, closePorts, createLocalEngine, ENGINE_CONNECT_TIMEOUT_MS } from '@facesearch/runtime';
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
 * synchronous requests, and consumes the `imports` queue: each item is detected and aligned here, its crop is
 * embedded by the embedder service, and the result goes to the `index` queue.
 */
export async function startDetector(config: FaceSearchConfig, logger: Logger): Promise<DetectorWorker> {
  const consumesImports = config.queue === 'bullmq';
  if (consumesImports && config.embedderGrpcUrls.length === 0) {
    throw new FaceSearchError('invalid_config', 'EMBEDDER_GRPC_URL is required: import items are embedded there', 500);
  }
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

  let ports: Awaited<ReturnType<typeof buildImportPorts>> | null = null;
  try {
    if (consumesImports) {
      ports = await buildImportPorts(config, logger, engine);
      const stage = new ImportAnalysisStage(ports.library, ports.blobs, ports.analyzer, ports.queues.index, {
        maxFacesPerUser: config.maxFacesPerUser,
        onAnalysed: (job) => logger.info({ import_id: job.import_id, index: job.index }, 'import item analysed'),
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
        // Stop taking jobs and calls together; running ones finish (within the shutdown timeout). The index
        // queue closes only after the import jobs: a job finishing during shutdown still hands its face on.
        const stopImports = async () => {
          if (!ports) return;
          await ports.queues.imports.close();
          await ports.queues.index.close();
        };
        await Promise.all([stopImports(), server.close(config.shutdownTimeoutMs * 0.7)]);
        if (ports) await closePorts(ports, logger);
        await engine.close();
      })();
      return closing;
    },
  };
}

function buildImportPorts(config: FaceSearchConfig, logger: Logger, engine: FaceEngine) {
  return buildPorts(config, logger, {
    need: ['library', 'blobs', 'queues', 'analyzer'] as const,
    analyzer: () =>
      GrpcFaceAnalyzer.connect({
        detector: engine,
        embedderAddresses: config.embedderGrpcUrls.join(','),
        connectTimeoutMs: ENGINE_CONNECT_TIMEOUT_MS,
      }),
  });
}
