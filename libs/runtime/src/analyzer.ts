import {
  type AnalyzeResult,
  type DetectOptions,
  type DetectResult,
  type FaceAnalyzer,
  type FaceSearchConfig,
  FaceSearchError,
} from '@facesearch/common';
import { createLocalFaceAnalyzer, type FaceEngine, loadManifest } from '@facesearch/face-engine';
import { EmbedderClient, GrpcFaceAnalyzer } from '@facesearch/proto';
import type { Logger } from 'pino';

/** How long a process waits at start for the embedder service to answer (it may start at the same time). */
export const ENGINE_CONNECT_TIMEOUT_MS = 60_000;

/** The analyzer ENGINE names: the models in process (local), or the detector and embedder services (grpc). */
export async function createAnalyzer(config: FaceSearchConfig, logger: Logger): Promise<FaceAnalyzer> {
  if (config.engine === 'local') return createLocalEngine(config);
  const analyzer = await GrpcFaceAnalyzer.connect({
    detectorAddresses: config.detectorGrpcUrls.join(','),
    embedderAddresses: config.embedderGrpcUrls.join(','),
    connectTimeoutMs: ENGINE_CONNECT_TIMEOUT_MS,
  });
  return withCalibratedThreshold(analyzer, config, logger);
}

export function createLocalEngine(config: FaceSearchConfig): Promise<FaceEngine> {
  return createLocalFaceAnalyzer({
    modelDir: config.modelDir ?? undefined,
    maxImageBytes: config.maxImageBytes,
    maxImagePixels: config.maxImagePixels,
  });
}

/**
 * Remote analyzers do not carry the embedding model's calibrated threshold; take it from the model manifest
 * when it describes the model the embedder runs, so scores match the embedded mode's. Otherwise the configured
 * MATCH_COSINE_THRESHOLD or the fallback applies (cosineThreshold in ports.ts).
 */
function withCalibratedThreshold<A extends FaceAnalyzer>(analyzer: A, config: FaceSearchConfig, logger: Logger): A {
  try {
    const { manifest } = loadManifest('embedder', { modelDir: config.modelDir ?? undefined });
    const threshold = (manifest as { matchThreshold?: number }).matchThreshold;
    if (manifest.id === analyzer.modelId && typeof threshold === 'number') {
      return Object.assign(analyzer, { matchThreshold: threshold });
    }
  } catch {
    // no manifest here: see below
  }
  if (config.matchCosineThreshold === null) {
    logger.warn(
      { modelId: analyzer.modelId },
      "no calibrated threshold for the embedder model here; set MATCH_COSINE_THRESHOLD to the model's value",
    );
  }
  return analyzer;
}

/**
 * The detector worker's analyzer: decode, detect and align with the local engine (the image never leaves the
 * process), embed the aligned crops on the embedder service. Only crops (37 KB each) cross the network.
 */
export class LocalDetectRemoteEmbedAnalyzer implements FaceAnalyzer {
  private constructor(
    readonly engine: FaceEngine,
    readonly embedder: EmbedderClient,
    readonly modelId: string,
    readonly embeddingDim: number,
  ) {}

  static async connect(engine: FaceEngine, embedderAddresses: string): Promise<LocalDetectRemoteEmbedAnalyzer> {
    const embedder = new EmbedderClient(embedderAddresses);
    const giveUpAt = Date.now() + ENGINE_CONNECT_TIMEOUT_MS;
    for (;;) {
      try {
        const { modelId, dim } = await embedder.info();
        return new LocalDetectRemoteEmbedAnalyzer(engine, embedder, modelId, dim);
      } catch (error) {
        if (error instanceof FaceSearchError && error.retryable && Date.now() < giveUpAt) {
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        embedder.close();
        throw error;
      }
    }
  }

  detect(image: Uint8Array, options?: DetectOptions): Promise<DetectResult> {
    return this.engine.detect(image, options);
  }

  async analyze(image: Uint8Array, options?: DetectOptions): Promise<AnalyzeResult> {
    const { image: info, faces } = await this.engine.detectAligned(image, options);
    if (faces.length === 0) return { image: info, faces: [], modelId: this.modelId };
    const { modelId, embeddings } = await this.embedder.embed(faces.map((f) => f.crop));
    return {
      image: info,
      faces: faces.map(({ crop: _crop, ...face }, i) => ({ ...face, embedding: embeddings[i] })),
      modelId,
    };
  }

  /** The engine belongs to the caller (the detector's gRPC server uses it too). */
  async close(): Promise<void> {
    this.embedder.close();
  }
}
