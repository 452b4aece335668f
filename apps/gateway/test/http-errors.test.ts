/** The error mapping of the HTTP layer, apart from any server: statuses, codes and when to retry. */
import { FaceSearchError } from '@facesearch/common';
import { describe, expect, it } from 'vitest';
import { fromBodyParserError, retryAfterFor, toErrorResponse } from '../src/http/errors';

describe('retryAfterFor', () => {
  it('tells clients when to come back after 429, 503 and 504 (an engine that timed out), and not otherwise', () => {
    const timeout = new FaceSearchError('engine_timeout', 'Face engine service timed out', 504, true);
    expect(retryAfterFor(timeout, 504)).toBe(5);
    expect(retryAfterFor(new FaceSearchError('engine_busy', 'busy', 503, true), 503)).toBe(5);
    expect(retryAfterFor(new FaceSearchError('rate_limited', 'slow down', 429), 429)).toBe(1);
    const own = new FaceSearchError('queue_full', 'full', 429);
    own.retryAfterSeconds = 2.2;
    expect(retryAfterFor(own, 429)).toBe(3);
    for (const status of [400, 404, 413, 500, 502]) expect(retryAfterFor(new Error('x'), status)).toBeNull();
  });
});

describe('body parser errors', () => {
  it('maps a body that does not decompress (zlib and brotli codes) to 400 invalid_body_encoding', () => {
    for (const code of ['Z_DATA_ERROR', 'Z_BUF_ERROR', 'ERR__ERROR_FORMAT_PADDING_2']) {
      const err = Object.assign(new Error('incorrect header check'), { code, status: 400, expose: true });
      expect(fromBodyParserError(err)).toMatchObject({ code: 'invalid_body_encoding', status: 400 });
      expect(toErrorResponse(err)).toMatchObject({ status: 400, unexpected: false });
    }
  });

  it('keeps other errors unknown (500, logged) unless they are client errors marked safe to show', () => {
    expect(toErrorResponse(new Error('boom'))).toMatchObject({ status: 500, unexpected: true });
    const safe = Object.assign(new Error('bad'), { status: 400, expose: true });
    expect(toErrorResponse(safe)).toMatchObject({ status: 400, body: { error: { code: 'invalid_request' } } });
  });
});

describe('dependency failures', () => {
  it('answer with a plain message: hosts, buckets, scripts and gRPC targets stay in the log', () => {
    for (const err of [
      new FaceSearchError(
        'library_unavailable',
        'The library store (Redis) failed: ERR user_script:4: Expected value script: 237cbb1b, on @user_script:4.',
        503,
        true,
      ),
      new FaceSearchError(
        'blob_store_unavailable',
        'S3 put did not answer within 30000 ms (http://10.0.0.5:9000/faces).',
        503,
        true,
      ),
      new FaceSearchError('vector_store_unavailable', 'Qdrant request timed out (http://qdrant:6333).', 503, true),
      new FaceSearchError(
        'engine_timeout',
        'Face engine service timed out (dns:///detector:50051: Deadline)',
        504,
        true,
      ),
    ]) {
      const { status, body, unexpected } = toErrorResponse(err);
      expect(status).toBe(err.status);
      expect(unexpected).toBe(true); // logged with the whole message
      expect(body.error.code).toBe(err.code);
      expect(body.error.message).not.toMatch(/script|http:|dns:|:\d{2,5}\b/);
      expect(body.error.message).toMatch(/retry later/);
    }
    // Client errors keep their own, useful messages.
    const bad = new FaceSearchError('invalid_request', 'group_ids: Too big', 400);
    expect(toErrorResponse(bad).body.error.message).toBe('group_ids: Too big');
  });
});
