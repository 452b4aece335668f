import { FaceSearchError } from '@facesearch/common';
import { HttpException } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { Logger } from 'pino';

export interface ErrorBody {
  error: { code: string; message: string };
}

/** Seconds a client should wait before retrying a 429, 503 or 504 that does not name its own delay. */
export const DEFAULT_RETRY_AFTER_SECONDS: Record<number, number> = { 429: 1, 503: 5, 504: 5 };

/** The Retry-After value for an error response, or null when the status is not one to retry later. */
export function retryAfterFor(err: unknown, status: number): number | null {
  if (DEFAULT_RETRY_AFTER_SECONDS[status] === undefined) return null;
  const own = err instanceof FaceSearchError ? err.retryAfterSeconds : undefined;
  return typeof own === 'number' && own >= 0 ? Math.ceil(own) : DEFAULT_RETRY_AFTER_SECONDS[status];
}

const CODE_BY_STATUS: Record<number, string> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  422: 'unprocessable',
  429: 'rate_limited',
  503: 'unavailable',
};

/**
 * What clients read when a dependency fails: the adapters' own messages name hosts, buckets, Lua scripts and gRPC
 * targets, which belong in the log (the error filter logs every 5xx with its error), not in a response.
 */
const PUBLIC_MESSAGE: Record<string, string> = {
  library_unavailable: 'The library store (Redis) is unavailable; retry later.',
  queue_unavailable: 'The job queue (Redis) is unavailable; retry later.',
  blob_store_unavailable: 'The image store (S3) is unavailable; retry later.',
  vector_store_unavailable: 'The vector store is unavailable; retry later.',
  engine_unavailable: 'The face engine is unavailable; retry later.',
  engine_timeout: 'The face engine did not answer in time; retry later.',
  engine_overloaded: 'The face engine is overloaded; retry later.',
};

/** Maps anything thrown to the public error shape; unknown errors become a 500 without details. */
export function toErrorResponse(err: unknown): { status: number; body: ErrorBody; unexpected: boolean } {
  if (err instanceof FaceSearchError) {
    const message = (err.status >= 500 && PUBLIC_MESSAGE[err.code]) || err.message;
    return {
      status: err.status,
      body: { error: { code: err.code, message } },
      unexpected: err.status >= 500,
    };
  }
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const response = err.getResponse();
    const message =
      typeof response === 'string'
        ? response
        : typeof (response as { message?: unknown }).message === 'string'
          ? (response as { message: string }).message
          : err.message;
    return {
      status,
      body: { error: { code: CODE_BY_STATUS[status] ?? (status >= 500 ? 'internal' : 'invalid_request'), message } },
      unexpected: status >= 500,
    };
  }
  const bodyError = fromBodyParserError(err);
  if (bodyError) return { status: bodyError.status, body: { error: bodyError.toJSON() }, unexpected: false };
  return {
    status: 500,
    body: { error: { code: 'internal', message: 'Internal error; see the server log.' } },
    unexpected: true,
  };
}

/** body-parser / raw-body errors carry `type` and `status`; a body that fails to decompress, zlib's `code`. */
export function fromBodyParserError(err: unknown): FaceSearchError | null {
  if (!err || typeof err !== 'object') return null;
  const e = err as {
    type?: string;
    code?: unknown;
    status?: unknown;
    expose?: unknown;
    limit?: number;
    message?: string;
  };
  // zlib's codes (gzip, deflate: Z_DATA_ERROR, Z_BUF_ERROR) and brotli's (ERR__ERROR_FORMAT_...).
  if (typeof e.code === 'string' && /^(Z_|ERR__ERROR_)/.test(e.code)) {
    return new FaceSearchError(
      'invalid_body_encoding',
      `The request body does not decompress as its Content-Encoding says: ${e.message ?? e.code}`,
      400,
    );
  }
  switch (e.type) {
    case 'entity.too.large':
      return new FaceSearchError(
        'payload_too_large',
        `The request body is larger than the limit of ${e.limit} bytes.`,
        413,
      );
    case 'entity.parse.failed':
      return new FaceSearchError('invalid_json', `The request body is not valid JSON: ${e.message ?? ''}`.trim(), 400);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new FaceSearchError('unsupported_media_type', e.message ?? 'Unsupported body encoding.', 415);
    case 'request.aborted':
      return new FaceSearchError('request_aborted', 'The client aborted the request.', 400);
    case 'request.size.invalid':
      return new FaceSearchError('invalid_request', 'The request body size does not match Content-Length.', 400);
    default:
      // Any other client error body-parser raises (http-errors marks those safe to show).
      if (typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.expose === true) {
        return new FaceSearchError(
          'invalid_request',
          `The request body could not be read: ${e.message ?? ''}`,
          e.status,
        );
      }
      return null;
  }
}

/**
 * Answers a request refused before routing (its body's type, size or encoding). The request logger has not seen it
 * yet, so the refusal is logged here: at info like any 4xx, at error with the cause for anything unexpected.
 */
export function refuseBeforeRouting(
  req: Request,
  res: Response,
  err: unknown,
  logger: Logger,
  options: { closeConnection?: boolean } = {},
): void {
  const { status, body, unexpected } = toErrorResponse(err);
  const fields = { method: req.method, url: req.originalUrl, statusCode: status, code: body.error.code };
  if (unexpected) logger.error({ ...fields, err }, 'request failed before routing');
  else logger.info(fields, 'request refused before routing');
  if (res.headersSent) return;
  // The rest of the body is not read: close the connection after answering rather than drain it.
  if (options.closeConnection || status === 413) res.setHeader('connection', 'close');
  res.status(status).json(body);
}
