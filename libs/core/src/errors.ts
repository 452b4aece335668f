import { FaceSearchError, ID_PATTERN, tooManyFacesError } from '@facesearch/common';

/** The service's own error codes (the engine's image codes live in @facesearch/common). */
export const errors = {
  invalidRequest: (message: string) => new FaceSearchError('invalid_request', message, 400),
  unauthorized: (message = 'A valid API key is required: send `Authorization: Bearer KEY` or `x-api-key: KEY`.') =>
    new FaceSearchError('unauthorized', message, 401),
  forbidden: (message: string) => new FaceSearchError('forbidden', message, 403),
  rateLimited: (limit: number) =>
    new FaceSearchError(
      'rate_limited',
      `More than ${limit} requests in a minute with this key; retry later.`,
      429,
      true,
    ),
  appNotFound: (appId: string) => new FaceSearchError('app_not_found', `App '${appId}' does not exist.`, 404),
  appExists: (appId: string) => new FaceSearchError('app_exists', `App '${appId}' already exists.`, 409),
  keyNotFound: (keyId: string) =>
    new FaceSearchError('key_not_found', `Key '${keyId}' does not exist in this app.`, 404),
  groupNotFound: (groupId: string) => new FaceSearchError('group_not_found', `Group '${groupId}' does not exist.`, 404),
  groupExists: (groupId: string) => new FaceSearchError('group_exists', `Group '${groupId}' already exists.`, 409),
  userNotFound: (groupId: string, userId: string) =>
    new FaceSearchError('user_not_found', `User '${userId}' does not exist in group '${groupId}'.`, 404),
  faceNotFound: (faceId: string) => new FaceSearchError('face_not_found', `Face '${faceId}' does not exist.`, 404),
  tooManyFaces: tooManyFacesError,
  noFace: (what = 'the image') => new FaceSearchError('no_face_detected', `No face was found in ${what}.`, 422),
  qualityTooLow: (level: string, required: string) =>
    new FaceSearchError(
      'face_quality_too_low',
      `The face's quality is ${level}; quality_control ${required} requires ${required} or better.`,
      422,
    ),
  importNotFound: (importId: string) =>
    new FaceSearchError('import_not_found', `Import '${importId}' does not exist.`, 404),
  importFinished: (importId: string, status: string) =>
    new FaceSearchError('import_finished', `Import '${importId}' is already ${status}.`, 409),
  uploadNotFound: (key: string) =>
    new FaceSearchError(
      'upload_not_found',
      `Nothing was uploaded under object_key '${key}' (or it belongs to another app).`,
      400,
    ),
  modelMismatch: (faceId: string) =>
    new FaceSearchError('face_model_mismatch', `Face '${faceId}' was indexed with another model; re-enrol it.`, 409),
};

/** Ids: letters, digits, `_` and `-`, 1 to 128 characters. */
export function checkId(field: string, value: unknown): string {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) {
    throw errors.invalidRequest(`${field}: must be 1-128 letters, digits, '_' or '-'`);
  }
  return value;
}

/** A repository's "that record exists already" (not any 409: too_many_faces is one too). */
export function isConflict(err: unknown): boolean {
  return err instanceof FaceSearchError && err.code === 'conflict';
}

export function nowIso(): string {
  return new Date().toISOString();
}
