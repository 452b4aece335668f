import type { AnalyzeResult, DetectOptions, DetectResult } from './faces';

/**
 * `handOver`: the caller will not read the image again, so an engine on another thread may take its memory instead
 * of a copy (when the bytes fill their own ArrayBuffer; otherwise, or in process, nothing changes).
 */
export interface AnalyzeCall {
  handOver?: boolean;
}

/**
 * What the gateway and workers need from the face models. Embedded: the engine in process;
 * distributed: detector and embedder services over gRPC.
 */
export interface FaceAnalyzer {
  /** Id of the embedding model; stored with every vector. */
  readonly modelId: string;
  readonly embeddingDim: number;
  detect(image: Uint8Array, options?: DetectOptions, call?: AnalyzeCall): Promise<DetectResult>;
  /** Detect, align and embed every face kept by the options. */
  analyze(image: Uint8Array, options?: DetectOptions, call?: AnalyzeCall): Promise<AnalyzeResult>;
  close(): Promise<void>;
}

/** Cosine similarity of two L2-normalised vectors. */
export function cosineSimilarity(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`vector lengths differ: ${a.length} vs ${b.length}`);
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i] * b[i];
  return dot;
}

/** The score that the default cosine threshold maps to; also the API's default `match_threshold`. */
export const DEFAULT_MATCH_SCORE = 80;

/**
 * Maps cosine similarity to a 0-100 score, piecewise linear so that the calibrated cosine threshold lands
 * on DEFAULT_MATCH_SCORE: users keep one number (80) whatever model and threshold are configured.
 */
export function similarityToScore(similarity: number, cosineThreshold: number): number {
  const s = Math.max(0, Math.min(1, similarity));
  const score =
    s <= cosineThreshold
      ? (s / cosineThreshold) * DEFAULT_MATCH_SCORE
      : DEFAULT_MATCH_SCORE + ((s - cosineThreshold) / (1 - cosineThreshold)) * (100 - DEFAULT_MATCH_SCORE);
  return Math.round(score * 100) / 100;
}

/** Inverse of similarityToScore, for turning a score threshold into a cosine bound for vector search. */
export function scoreToSimilarity(score: number, cosineThreshold: number): number {
  const s = Math.max(0, Math.min(100, score));
  return s <= DEFAULT_MATCH_SCORE
    ? (s / DEFAULT_MATCH_SCORE) * cosineThreshold
    : cosineThreshold + ((s - DEFAULT_MATCH_SCORE) / (100 - DEFAULT_MATCH_SCORE)) * (1 - cosineThreshold);
}
