import { FaceSearchError } from '@facesearch/common';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { refuseBeforeRouting } from './errors';

const ACCEPTED = ['application/json', 'application/*+json', 'multipart/form-data'];

/**
 * Request bodies are JSON or multipart; anything else (text/plain, XML, form-urlencoded, a bare image) is
 * answered 415 before any parser runs, instead of being ignored and reported as a missing field.
 * `except` names requests that take other bodies (the gateway's raw upload URL).
 */
export function requireBodyContentType(except: (req: Request) => boolean, logger: Logger): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (except(req) || !hasBody(req) || req.is(ACCEPTED)) return next();
    const type = req.headers['content-type'];
    const err = new FaceSearchError(
      'unsupported_media_type',
      `${type ? `Content-Type '${String(type).slice(0, 100)}' is not accepted` : 'The body has no Content-Type'}; ` +
        'send application/json or multipart/form-data.',
      415,
    );
    refuseBeforeRouting(req, res, err, logger, { closeConnection: true });
  };
}

/** As body-parser decides: a body is announced by Transfer-Encoding or a non-zero Content-Length. */
function hasBody(req: Request): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && length !== '0';
}
