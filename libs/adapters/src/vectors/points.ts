import { FaceSearchError, ID_PATTERN, type VectorPoint } from '@facesearch/common';

/** sqlite-vec refuses k above 4096; Qdrant has no such cap but a search never needs more. */
export const MAX_SEARCH_LIMIT = 4096;

/**
 * The store-wide key of a face. Face ids are unique per app, not globally, so the key includes the app.
 * Ids match ID_PATTERN (no `/`), which keeps the join unambiguous.
 */
export function faceKey(appId: string, faceId: string): string {
  checkId('app_id', appId);
  checkId('face_id', faceId);
  return `${appId}/${faceId}`;
}

export function checkId(field: string, value: string): void {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) {
    throw new FaceSearchError('invalid_id', `${field} must be 1 to 128 letters, digits, '_' or '-'.`, 400);
  }
}

/**
 * Checks a point and returns its vector scaled to unit length. Both stores keep unit vectors (Qdrant's Cosine
 * distance normalises on insert), so `retrieve` answers the same from either.
 */
export function normalizedVector(point: VectorPoint, dim: number): Float32Array {
  const { payload } = point;
  if (point.id !== payload.face_id) {
    throw new FaceSearchError(
      'invalid_vector_point',
      `Point id ${point.id} differs from its face_id ${payload.face_id}.`,
      500,
    );
  }
  for (const field of ['app_id', 'group_id', 'user_id', 'face_id'] as const) checkId(field, payload[field]);
  // Model ids come from the operator's model manifest (e.g. `fr_feature@faceplugin-0.0.1`), not from API callers.
  if (typeof payload.model_id !== 'string' || payload.model_id.length === 0 || payload.model_id.length > 200) {
    throw new FaceSearchError(
      'invalid_vector_point',
      'model_id must be a non-empty string of at most 200 characters.',
      500,
    );
  }
  return normalize(point.vector, dim);
}

export function normalize(vector: Float32Array, dim: number): Float32Array {
  if (!(vector instanceof Float32Array) || vector.length !== dim) {
    throw new FaceSearchError(
      'vector_dimension_mismatch',
      `Expected a Float32Array of ${dim} values, got ${vector instanceof Float32Array ? vector.length : typeof vector}.`,
      500,
    );
  }
  let sum = 0;
  for (const x of vector) sum += x * x;
  const norm = Math.sqrt(sum);
  if (!Number.isFinite(norm) || norm === 0) {
    throw new FaceSearchError('invalid_vector', 'A vector must be finite and not all zeros.', 500);
  }
  const out = new Float32Array(dim);
  for (let i = 0; i < dim; i++) out[i] = vector[i] / norm;
  return out;
}

export function notInitialized(store: string): FaceSearchError {
  return new FaceSearchError('vector_store_not_initialized', `${store}: call init(dim) before using the store.`, 500);
}

export function dimensionMismatch(where: string, existing: number, wanted: number): FaceSearchError {
  return new FaceSearchError(
    'vector_dimension_mismatch',
    `${where} holds ${existing}-dimensional vectors but the embedding model produces ${wanted}. ` +
      'Use a new collection/table (or a fresh data folder) for the new model, or re-index.',
    500,
  );
}
