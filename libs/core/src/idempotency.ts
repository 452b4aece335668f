import { createHash } from 'node:crypto';
import { FaceSearchError } from '@facesearch/common';

/**
 * Idempotency keys (the `Idempotency-Key` header of enrol and import requests). A key does not need a store of
 * its own: it is turned into the id of what the request creates (the face id, the import id), so a repeated
 * request finds the record the first one wrote, and two racing ones collide on the repository's create (409),
 * which is already atomic in both implementations. The first result is returned for as long as that record
 * exists (faces until deleted, imports for as long as they are kept), which covers the usual 24 h retry window.
 */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

export function checkIdempotencyKey(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || !IDEMPOTENCY_KEY_PATTERN.test(value)) {
    throw new FaceSearchError(
      'invalid_idempotency_key',
      'Idempotency-Key: expected 1-255 visible ASCII characters (a UUID is a good choice).',
      400,
    );
  }
  return value;
}

/** The record id a key stands for: per app and per kind of request, so keys never collide across them. */
export function idempotentId(appId: string, scope: 'face' | 'import', key: string): string {
  const digest = createHash('sha256').update(`${appId}\u0000${scope}\u0000${key}`).digest('hex');
  return `idem-${digest.slice(0, 32)}`;
}

export const idempotencyKeyReused = (what: string) =>
  new FaceSearchError(
    'idempotency_key_reused',
    `This Idempotency-Key was already used for a different request (${what}); use a new key for a new request.`,
    409,
  );
