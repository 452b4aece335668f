import type { FaceSearchConfig } from '@facesearch/common';
import { ImportEmbedStage } from '@facesearch/core';
import { createEmbedderServer, type EmbedderImplementation } from '@facesearch/proto';
import { buildPorts, closePorts, createLocalEngine, type Ports } from '@facesearch/runtime';
import type { Logger } from 'pino';

export interface EmbedderWorker {
  grpcPort: number;
  modelId: string;
  /** Whether this process consumes the `embed` queue (QUEUE=bullmq). */
  consumesEmbeds: boolean;
  close(): Promise<void>;
}

/**
 * The embedder: serves the Embedder gRPC service (aligned 112x112 crops in, L2-normalised vectors out) for the
 * gateway's synchronous requests, and consumes the `embed` queue of imports: each job names a crop in the blob
 * store; its vector goes to the `index` queue. It holds no state: any number of replicas can run.
 */
export async function startEmbedder(config: FaceSearchConfig, logger: Logger): Promise<EmbedderWorker> {
  const consumesEmbeds = config.queue === 'bullmq';
  const engine = await createLocalEngine(config);
  let calls = 0;
  const impl: EmbedderImplementation = {
    modelId: engine.modelId,
    embeddingDim: engine.embeddingDim,
    async embed(crops) {
      const vectors = await engine.embed(crops);
      calls++;
      logger.debug({ crops: crops.length, calls }, 'embedded crops');
      return vectors;
    },
  };
  const server = createEmbedderServer(impl, {
    onUnexpectedError: (err, method) => logger.error({ err, method }, 'embedder call failed'),
  });
  let grpcPort: number;
  try {
    grpcPort = await server.listen(`${config.host}:${config.grpcPort}`);
  } catch (err) {
    await engine.close();
    throw err;
  }
  logger.info(
    { grpcPort, model: engine.modelId, dim: engine.embeddingDim },
    `embedder gRPC service on ${config.host}:${grpcPort}`,
  );

  let ports: Pick<Ports, 'library' | 'blobs' | 'queues'> | null = null;
  try {
    if (consumesEmbeds) {
      ports = await buildPorts(config, logger, { need: ['library', 'blobs', 'queues'] as const });
      const stage = new ImportEmbedStage(ports.library, ports.blobs, engine, ports.queues.index, {
        onEmbedded: (job) => logger.info({ import_id: job.import_id, index: job.index }, 'import item embedded'),
      });
      ports.queues.embed.process((job) => stage.handle(job), {
        concurrency: config.embedConcurrency,
        onFailed: async (job, error) => {
          logger.warn({ import_id: job.import_id, index: job.index, err: error }, 'embed job failed');
          await stage.handleFailed(job, error);
        },
      });
      logger.info({ concurrency: config.embedConcurrency }, 'consuming the embed queue');
    } else {
      logger.warn('QUEUE is not bullmq: serving gRPC only, not consuming embed jobs');
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
    modelId: engine.modelId,
    consumesEmbeds,
    close() {
      closing ??= (async () => {
        // Stop taking jobs and calls together; the index queue closes after the embed jobs that still add to it.
        const stopEmbeds = async () => {
          if (!ports) return;
          await ports.queues.embed.close();
          await ports.queues.index.close();
        };
        await Promise.all([stopEmbeds(), server.close(config.shutdownTimeoutMs * 0.7)]);
        if (ports) await closePorts(ports, logger);
        await engine.close();
      })();
      return closing;
    },
  };
}
