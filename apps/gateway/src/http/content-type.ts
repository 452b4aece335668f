import { FaceSearchError } from '@facesearch/common';
import { type CallHandler, type ExecutionContext, Injectable, type NestInterceptor } from '@nestjs/common';
import { INTERCEPTORS_METADATA } from '@nestjs/common/constants';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Observable } from 'rxjs';
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

/** Marks an interceptor class that reads multipart bodies (see Multipart). */
export const READS_MULTIPART = Symbol('reads multipart');

/**
 * A multipart body sent to a route that takes JSON only is refused with 415: nothing would read it, so the route
 * would run on an empty body (a reindex, say, with its defaults) instead of saying what is wrong.
 */
@Injectable()
export class RefuseUnreadMultipart implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = context.switchToHttp().getRequest<Request>();
    if (req.is('multipart/form-data') && !readsMultipart(context)) {
      // The body is not read: close the connection after answering rather than drain it.
      context.switchToHttp().getResponse<Response>().setHeader('connection', 'close');
      throw new FaceSearchError(
        'unsupported_media_type',
        `${req.method} ${req.route?.path ?? req.path} takes a JSON body, not multipart/form-data.`,
        415,
      );
    }
    return next.handle();
  }
}

function readsMultipart(context: ExecutionContext): boolean {
  const declared = [
    ...(Reflect.getMetadata(INTERCEPTORS_METADATA, context.getHandler()) ?? []),
    ...(Reflect.getMetadata(INTERCEPTORS_METADATA, context.getClass()) ?? []),
  ] as Array<{ [READS_MULTIPART]?: boolean }>;
  return declared.some((interceptor) => interceptor?.[READS_MULTIPART] === true);
}
