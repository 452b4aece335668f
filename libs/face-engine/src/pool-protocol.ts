/** Messages between EnginePool and its engine threads (structured clone: typed arrays travel as they are). */
import { type DetectOptions, FaceSearchError } from '@facesearch/common';

export type EngineCall =
  | { id: number; op: 'detect' | 'detectAligned' | 'analyze'; image: Uint8Array; options?: DetectOptions }
  | { id: number; op: 'embed'; crops: Uint8Array[] }
  | { id?: undefined; op: 'close' };

export interface EngineInfo {
  modelId: string;
  embeddingDim: number;
  detectorModelId: string;
  matchThreshold: number;
}

export interface SerializedError {
  message: string;
  /** Set for FaceSearchError: rebuilt as one on the pool's side so codes and statuses reach the API unchanged. */
  code?: string;
  status?: number;
  retryable?: boolean;
}

export type EngineReply =
  | { type: 'ready'; info: EngineInfo }
  | { type: 'failed'; error: SerializedError }
  | { type: 'result'; id: number; result: unknown }
  | { type: 'error'; id: number; error: SerializedError };

export function serializeError(err: unknown): SerializedError {
  if (err instanceof FaceSearchError) {
    return { message: err.message, code: err.code, status: err.status, retryable: err.retryable };
  }
  return { message: err instanceof Error ? err.message : String(err) };
}

export function deserializeError(error: SerializedError): Error {
  if (error.code !== undefined) return new FaceSearchError(error.code, error.message, error.status, error.retryable);
  return new Error(error.message);
}
