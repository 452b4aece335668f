import type { FaceSearchConfig } from '@facesearch/common';
import { createEmbedderServer, type EmbedderImplementation } from '@facesearch/proto';
import { createLocalEngine } from '@facesearch/runtime';
import type { Logger } from 'pino';

export interface EmbedderWorker {
  grpcPort: number;
  modelId: string;
  close(): Promise<void>;
}

/**
 * The embedder: serves the Embedder gRPC service (aligned 112x112 crops in, L2-normalised vectors out). It holds
 * no state and reads no queue: detectors and the gateway call it synchronously, round-robin over the replicas.
 */
export async function startEmbedder(config: FaceSearchConfig, logger: Logger): Promise<EmbedderWorker> {
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
  let closing: Promise<void> | undefined;
  return {
    grpcPort,
    modelId: engine.modelId,
    close() {
      closing ??= server.close(config.shutdownTimeoutMs * 0.8).then(() => engine.close());
      return closing;
    },
  };
}
