import type { FaceSearchConfig } from '@facesearch/common';
import { type CropEmbedder, ImportDetectStage } from '@facesearch/core';
import type { LocalFaceEngine } from '@facesearch/face-engine';
import { createDetectorServer, GrpcFaceAnalyzer } from '@facesearch/proto';
import { ENGINE_CONNECT_TIMEOUT_MS, importEngines, type ModelWorker, startModelWorker } from '@facesearch/runtime';
import type { Logger } from 'pino';

/**
 * The detector: serves the Detector gRPC service (decode, detect, quality, aligned crops; and Analyze, which
 * embeds too, for a gateway without EMBEDDER_GRPC_URL) for the gateway's synchronous requests, and consumes the
 * `imports` queue: each item is detected and aligned here. With
 * IMPORT_EMBED=queue its crop goes to the blob store and an `embed` job to the embedder workers; with
 * IMPORT_EMBED=inline it is embedded at once (by the embedder service when EMBEDDER_GRPC_URL is set, else by this
 * process's own engine) and the index job is queued.
 */
export function startDetector(config: FaceSearchConfig, logger: Logger): Promise<ModelWorker> {
  return startModelWorker(config, logger, {
    role: 'detector',
    server: (engine, hooks) =>
      createDetectorServer(engine, {
        ...hooks,
        maxMessageBytes: Math.max(config.maxImageBytes + 1024 * 1024, 64 * 1024 * 1024),
        onUnexpectedError: (err, method) => logger.error({ err, method }, 'detector call failed'),
      }),
    consume: async (ports, engine) => {
      const inline = config.importEmbed === 'inline' ? await inlineEmbedder(config, engine) : null;
      const stage = new ImportDetectStage(ports.library, ports.blobs, engine, ports.queues.embed, {
        maxFacesPerUser: config.maxFacesPerUser,
        inline: inline ? { embedder: inline.embedder, indexQueue: ports.queues.index } : undefined,
        // Debug: one line per item is what a million-image import cannot afford at info (its results are in the
        // import's items and the workers' metrics); failures stay at warn.
        onDetected: (job) => logger.debug({ import_id: job.import_id, index: job.index }, 'import item analysed'),
      });
      ports.queues.imports.process((data, ctx) => stage.handle(data, ctx), {
        concurrency: config.importConcurrency,
        onFailed: async (data, error) => {
          logger.warn({ import_id: data.import_id, index: data.index, err: error }, 'import item failed');
          await stage.handleFailed(data, error);
        },
      });
      logger.info(
        { concurrency: config.importConcurrency, importEmbed: config.importEmbed, embedder: inline?.where },
        'consuming the imports queue',
      );
      // The queue it feeds closes after the import jobs: a job finishing during shutdown still hands its face on.
      const next = inline ? ports.queues.index : ports.queues.embed;
      return { queues: [ports.queues.imports, next], release: inline?.release };
    },
  });
}

/** Who embeds import items in IMPORT_EMBED=inline: the embedder service if configured, else this engine. */
async function inlineEmbedder(
  config: FaceSearchConfig,
  engine: LocalFaceEngine,
): Promise<{ embedder: CropEmbedder; where: string; release?: () => Promise<void> }> {
  if (config.embedderGrpcUrls.length === 0) return { embedder: engine, where: 'this process' };
  const remote = await GrpcFaceAnalyzer.connect({
    detector: engine,
    embedderAddresses: config.embedderGrpcUrls.join(','),
    connectTimeoutMs: ENGINE_CONNECT_TIMEOUT_MS,
  });
  return {
    embedder: importEngines(remote).embedder,
    where: config.embedderGrpcUrls.join(','),
    release: () => remote.close(),
  };
}
