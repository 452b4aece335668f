import type { AnalyzeResult, DetectOptions, DetectResult, EngineTiming, FaceAnalyzer } from '@facesearch/common';
import { FaceSearchError } from '@facesearch/common';
import { type BalancedClient, DetectorClient, EmbedderClient, type GrpcClientOptions } from './client';
import { DETECTOR_SERVICE, EMBEDDER_SERVICE } from './load';
import type { DetectorImplementation } from './server';

export interface GrpcFaceAnalyzerOptions extends GrpcClientOptions {
  /**
   * DETECTOR_GRPC_URL (`host:port,host:port` or `dns:///name:port`), or a detector in this process: the
   * detector worker detects and aligns itself, so only the 37 KB crops cross the network. A local detector
   * belongs to the caller and is not closed with the analyzer.
   */
  detector: string | DetectorImplementation;
  /**
   * EMBEDDER_GRPC_URL. Empty: the detector services embed too (Detector.Analyze), one call per image instead of
   * two; only with a detector address.
   */
  embedderAddresses?: string;
  /** How long connect() keeps asking for the model while the service is unavailable. Default 30 s. */
  connectTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How many addresses of a gRPC client answered their health check SERVING. */
export interface WorkerHealth {
  serving: number;
  total: number;
  targets: Array<{ target: string; status: string }>;
}

/** Asks every address of a gRPC client for the service's health; throws unless at least one is SERVING. */
export async function requireServing(client: BalancedClient, service: string, timeoutMs = 2000): Promise<WorkerHealth> {
  const targets = await client.checkHealth(service, timeoutMs);
  const serving = targets.filter((t) => t.status === 'SERVING').length;
  const health = { serving, total: targets.length, targets };
  if (serving === 0) {
    const detail = targets.map((t) => `${t.target} ${t.status}`).join(', ');
    throw Object.assign(new Error(`no ${service} instance is serving (${detail})`), { health });
  }
  return health;
}

/** Both services' engine time, when every call reported one (older servers do not). */
function engineTime(...calls: EngineTiming[]): EngineTiming {
  let total = 0;
  for (const call of calls) {
    if (call.engine_ms === undefined) return {};
    total += call.engine_ms;
  }
  return { engine_ms: total };
}

/**
 * FaceAnalyzer over the detector service (or a detector in process) and the embedder service; without an
 * embedder address, over the detector service alone.
 */
export class GrpcFaceAnalyzer implements FaceAnalyzer {
  private constructor(
    readonly detector: DetectorImplementation,
    /** null: the detector services embed (Detector.Analyze). */
    readonly embedder: EmbedderClient | null,
    readonly modelId: string,
    readonly embeddingDim: number,
  ) {}

  /** Learns the embedding model from the service that embeds (waiting for it to come up), then returns the analyzer. */
  static async connect(options: GrpcFaceAnalyzerOptions): Promise<GrpcFaceAnalyzer> {
    const detector =
      typeof options.detector === 'string' ? new DetectorClient(options.detector, options) : options.detector;
    const embedder = options.embedderAddresses ? new EmbedderClient(options.embedderAddresses, options) : null;
    const close = () => {
      if (detector instanceof DetectorClient) detector.close();
      embedder?.close();
    };
    const modelSource = embedder ?? (detector instanceof DetectorClient ? detector : null);
    if (!modelSource) {
      close();
      throw new FaceSearchError(
        'invalid_config',
        'GrpcFaceAnalyzer: a detector in this process needs embedder addresses',
        500,
      );
    }
    const giveUpAt = Date.now() + (options.connectTimeoutMs ?? 30_000);
    for (;;) {
      try {
        const { modelId, dim } = await modelSource.info();
        return new GrpcFaceAnalyzer(detector, embedder, modelId, dim);
      } catch (error) {
        if (error instanceof FaceSearchError && error.retryable && Date.now() < giveUpAt) {
          await sleep(500);
          continue;
        }
        close();
        throw error;
      }
    }
  }

  detect(image: Uint8Array, options: DetectOptions = {}): Promise<DetectResult> {
    return this.detector.detect(image, options);
  }

  async analyze(image: Uint8Array, options: DetectOptions = {}): Promise<AnalyzeResult> {
    if (!this.embedder) return (this.detector as DetectorClient).analyze(image, options);
    const detected = await this.detector.detectAligned(image, options);
    const { image: info, faces } = detected;
    if (faces.length === 0) return { image: info, faces: [], modelId: this.modelId, ...engineTime(detected) };
    const embedded = await this.embedder.embed(faces.map((f) => f.crop));
    return {
      image: info,
      faces: faces.map(({ crop: _crop, ...face }, i) => ({ ...face, embedding: embedded.embeddings[i] })),
      // The id that produced these vectors; differs from this.modelId only during a model roll-out.
      modelId: embedded.modelId,
      ...engineTime(detected, embedded),
    };
  }

  /**
   * The embedder service as the import stages use it (aligned crops in, vectors out). Throws invalid_config
   * without one (the detector services then embed whole images only).
   */
  cropEmbedder(): { readonly modelId: string; embed(crops: Uint8Array[]): Promise<Float32Array[]> } {
    const client = this.embedder;
    if (!client) {
      throw new FaceSearchError(
        'invalid_config',
        'The import stages embed crops through the embedder service: set EMBEDDER_GRPC_URL.',
        500,
      );
    }
    return { modelId: this.modelId, embed: async (crops) => (await client.embed(crops)).embeddings };
  }

  /** Readiness: at least one detector service (when remote) and one embedder service (when used) answer SERVING. */
  readinessChecks(): Record<string, () => Promise<WorkerHealth>> {
    const { detector, embedder } = this;
    return {
      ...(detector instanceof DetectorClient ? { detectors: () => requireServing(detector, DETECTOR_SERVICE) } : {}),
      ...(embedder ? { embedders: () => requireServing(embedder, EMBEDDER_SERVICE) } : {}),
    };
  }

  async close(): Promise<void> {
    if (this.detector instanceof DetectorClient) this.detector.close();
    this.embedder?.close();
  }
}

export function createGrpcFaceAnalyzer(options: GrpcFaceAnalyzerOptions): Promise<GrpcFaceAnalyzer> {
  return GrpcFaceAnalyzer.connect(options);
}
