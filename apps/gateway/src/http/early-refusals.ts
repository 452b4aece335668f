/**
 * What the gateway refuses before a route sees the request: bodies past their limit or that do not parse, upload
 * URLs without a valid token, and what Node's HTTP parser itself refuses. Each answers in the API's error shape.
 */
import { type Server, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { FaceSearchError } from '@facesearch/common';
import { checkId, type UploadService, uploadKey } from '@facesearch/core';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { refuseBeforeRouting } from './errors';

/**
 * Runs a body parser and answers its errors (too large, bad JSON) in the API's error shape. Bodies past `limit`
 * are refused as soon as that is known (announced Content-Length, or counted while a chunked body arrives):
 * body-parser alone would read the whole oversized body before answering.
 */
export function guardParser(
  parser: RequestHandler,
  limit: number,
  applies: (req: Request) => boolean,
  logger: Logger,
): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (!applies(req)) return next();
    const answer = (err: unknown) => refuseBeforeRouting(req, res, err, logger);
    const tooLarge = { type: 'entity.too.large', limit };
    if (Number(req.headers['content-length'] ?? 0) > limit) return answer(tooLarge);
    let received = 0;
    let refused = false;
    // Attached in the same tick as the parser's own listeners, so both see every chunk.
    const count = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limit && !refused) {
        refused = true;
        answer(tooLarge);
      }
    };
    req.on('data', count);
    parser(req, res, (err?: unknown) => {
      req.off('data', count);
      if (refused) return;
      if (!err) return next();
      answer(err);
    });
  };
}

/**
 * The gateway's upload URL is authorised by its signed token alone: checked before the body is read, so that
 * nobody without one can make the gateway take in MAX_IMAGE_BYTES per request (the route checks it again).
 */
export function verifyUploadTokenFirst(uploads: UploadService, logger: Logger): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const target = /^\/([^/]+)\/([^/]+)\/?$/.exec(req.path);
    if (req.method !== 'PUT' || !target) return next();
    try {
      const [appId, uploadId] = target.slice(1).map((part) => decodeURIComponent(part));
      const token = typeof req.query.token === 'string' ? req.query.token : undefined;
      uploads.verify(uploadKey(checkId('app_id', appId), checkId('upload_id', uploadId)), token);
    } catch (err) {
      const refused =
        err instanceof URIError ? new FaceSearchError('invalid_request', 'The upload URL is not valid.', 400) : err;
      return refuseBeforeRouting(req, res, refused, logger, { closeConnection: true });
    }
    next();
  };
}

/**
 * Requests Node's HTTP parser refuses before any handler sees them (headers over its 16 KiB, a bad request line,
 * a broken chunk or Content-Length, a request that took too long to arrive) get the API's error shape too; Node's
 * default answer is a bare status line with no body.
 */
export function answerMalformedHttp(server: Server, logger: Logger): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, code, message] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'headers_too_large', 'The request line and headers are larger than the server accepts (16 KiB).']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'request_timeout', 'The request did not arrive in time.']
          : [400, 'malformed_http', `The request is not valid HTTP/1.1 (${err.code ?? 'parse error'}).`];
    // Scanners send these by the thousand: not worth more than a debug line each.
    logger.debug({ code: err.code, status }, 'malformed HTTP request refused');
    const body = JSON.stringify({ error: { code, message } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
}
