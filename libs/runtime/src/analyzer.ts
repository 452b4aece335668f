import { type FaceAnalyzer, type FaceSearchConfig, FaceSearchError } from '@facesearch/common';
import type { CropEmbedder, FaceAligner } from '@facesearch/core';
import type { LocalFaceEngine } from '@facesearch/face-engine';
import type { Logger } from 'pino';

// The engine (sharp, onnxruntime) and gRPC are loaded when an analyzer is made, not with this library: processes
// that run none (the indexer) stay ~40 MiB smaller and start sooner (BENCHMARKS.md, session 15).

/** How long a process waits at start for the embedder service to answer (it may start at the same time). */
export const ENGINE_CONNECT_TIMEOUT_MS = 60_000;

/**
 * The analyzer ENGINE names: the models in process (local), or the detector and embedder services (grpc; without
 * EMBEDDER_GRPC_URL the detector services embed too).
 */
export async function createAnalyzer(config: FaceSearchConfig, logger: Logger): Promise<FaceAnalyzer> {
  if (config.engine === 'local') return createLocalEngine(config);
  const { GrpcFaceAnalyzer } = await import('@facesearch/proto');
  const analyzer = await GrpcFaceAnalyzer.connect({
    detector: config.detectorGrpcUrls.join(','),
    embedderAddresses: config.embedderGrpcUrls.join(','),
    connectTimeoutMs: ENGINE_CONNECT_TIMEOUT_MS,
  });
  return withCalibratedThreshold(analyzer, config, logger, (await import('@facesearch/face-engine')).loadManifest);
}

/** The models in this process: on ENGINE_WORKERS threads (0: on this thread). */
export async function createLocalEngine(config: FaceSearchConfig): Promise<LocalFaceEngine> {
  const { createLocalFaceAnalyzer } = await import('@facesearch/face-engine');
  return createLocalFaceAnalyzer({
    workers: config.engineWorkers,
    modelDir: config.modelDir ?? undefined,
    detectorManifest: config.detectorManifest ?? undefined,
    embedderManifest: config.embedderManifest ?? undefined,
    maxImageBytes: config.maxImageBytes,
    maxImagePixels: config.maxImagePixels,
    previewMaxSide: config.enginePreviewMaxSide,
  });
}

/**
 * Remote analyzers do not carry the embedding model's calibrated threshold; take it from the model manifest
 * when it describes the model the embedder runs, so scores match the embedded mode's. Otherwise the configured
 * MATCH_COSINE_THRESHOLD or the fallback applies (cosineThreshold in ports.ts).
 */
function withCalibratedThreshold<A extends FaceAnalyzer>(
  analyzer: A,
  config: FaceSearchConfig,
  logger: Logger,
  loadManifest: typeof import('@facesearch/face-engine').loadManifest,
): A {
  try {
    const { manifest } = loadManifest('embedder', {
      modelDir: config.modelDir ?? undefined,
      manifestPath: config.embedderManifest ?? undefined,
    });
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
 * The two halves of an analyzer that the import stages use separately (detect and align; embed crops): the
 * engine in process (or a test fake with the same methods), or the detector and embedder services.
 */
export function importEngines(analyzer: FaceAnalyzer): { aligner: FaceAligner; embedder: CropEmbedder } {
  // The gRPC analyzer (by shape: see engineChecks): its detector aligns, its embedder service embeds the crops.
  const remote = analyzer as Partial<{ detector: FaceAligner; cropEmbedder(): CropEmbedder }>;
  if (typeof remote.cropEmbedder === 'function' && remote.detector) {
    return { aligner: remote.detector, embedder: remote.cropEmbedder() };
  }
  const both = analyzer as Partial<FaceAligner & CropEmbedder>;
  if (typeof both.detectAligned === 'function' && typeof both.embed === 'function') {
    return { aligner: both as FaceAligner, embedder: both as CropEmbedder };
  }
  throw new FaceSearchError(
    'invalid_config',
    'This analyzer cannot run the import stages (no detectAligned/embed).',
    500,
  );
}
