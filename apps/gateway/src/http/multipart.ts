import { FaceSearchError, type FaceSearchConfig } from '@facesearch/common';
import {
  type CallHandler,
  type ExecutionContext,
  Inject,
  Injectable,
  mixin,
  type NestInterceptor,
  type Type,
} from '@nestjs/common';
import type { Request, Response } from 'express';
import multer from 'multer';
import type { Observable } from 'rxjs';
import { CONFIG } from '../tokens';
import { READS_MULTIPART } from './content-type';

export interface FileField {
  name: string;
  maxCount: number;
}

/** Parses multipart bodies in memory with the configured limits; multer errors become FaceSearchErrors. */
export function Multipart(fields: FileField[]): Type<NestInterceptor> {
  @Injectable()
  class MultipartInterceptor implements NestInterceptor {
    static readonly [READS_MULTIPART] = true;
    private readonly upload: ReturnType<ReturnType<typeof multer>['fields']>;
    private readonly maxImageBytes: number;
    private readonly maxRequestBytes: number;

    constructor(@Inject(CONFIG) config: FaceSearchConfig) {
      this.maxImageBytes = config.maxImageBytes;
      this.maxRequestBytes = config.maxRequestBytes;
      this.upload = multer({
        storage: multer.memoryStorage(),
        limits: {
          fileSize: config.maxImageBytes,
          files: fields.reduce((n, f) => n + f.maxCount, 0),
          fieldSize: config.maxRequestBytes,
          fields: 100,
          parts: 10_000,
        },
      }).fields(fields);
    }

    async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
      const http = context.switchToHttp();
      const req = http.getRequest<Request>();
      const res = http.getResponse<Response>();
      const declared = Number(req.headers['content-length'] ?? 0);
      // multer has no total-size limit; the whole request is bounded like a JSON body.
      if (req.is('multipart/form-data') && declared > this.maxRequestBytes) {
        res.setHeader('connection', 'close');
        throw tooLarge(this.maxRequestBytes);
      }
      await new Promise<void>((resolve, reject) => {
        // A chunked body announces no length: count what arrives and stop reading past the limit.
        let received = 0;
        let settled = false;
        const settle = (err?: unknown) => {
          if (settled) return;
          settled = true;
          req.off('data', count);
          if (err) {
            res.setHeader('connection', 'close'); // the rest of the body is not read
            reject(err);
          } else resolve();
        };
        const count = (chunk: Buffer) => {
          received += chunk.length;
          if (received > this.maxRequestBytes) {
            req.unpipe();
            req.pause();
            settle(tooLarge(this.maxRequestBytes));
          }
        };
        req.on('data', count);
        this.upload(req, res, (err: unknown) => settle(err ? multerError(err, this.maxImageBytes) : undefined));
      });
      return next.handle();
    }
  }
  return mixin(MultipartInterceptor);
}

const tooLarge = (limit: number) =>
  new FaceSearchError('payload_too_large', `The request body is larger than the limit of ${limit} bytes.`, 413);

function multerError(err: unknown, maxImageBytes: number): unknown {
  if (err instanceof multer.MulterError) {
    switch (err.code) {
      case 'LIMIT_FILE_SIZE':
        return new FaceSearchError(
          'image_too_large',
          `File \`${err.field}\` is larger than the limit of ${maxImageBytes} bytes.`,
          413,
        );
      case 'LIMIT_FILE_COUNT':
        return new FaceSearchError('too_many_files', 'Too many files in one request.', 413);
      case 'LIMIT_FIELD_VALUE':
      case 'LIMIT_PART_COUNT':
      case 'LIMIT_FIELD_COUNT':
      case 'LIMIT_FIELD_KEY':
        return new FaceSearchError('payload_too_large', `Multipart limit exceeded (${err.code}).`, 413);
      case 'LIMIT_UNEXPECTED_FILE':
        return new FaceSearchError('unexpected_file_field', `Unexpected file field \`${err.field}\`.`, 400);
      default:
        return new FaceSearchError('invalid_multipart', err.message, 400);
    }
  }
  // multer's own words when the client goes away mid-body (as body-parser's request.aborted for JSON).
  if (err instanceof Error && /^(Request (aborted|closed|error)|aborted)$/.test(err.message)) {
    return new FaceSearchError('request_aborted', 'The client aborted the request.', 400);
  }
  if (err instanceof Error && /multipart|boundary|part|form/i.test(err.message)) {
    return new FaceSearchError('invalid_multipart', `Malformed multipart body: ${err.message}`, 400);
  }
  return err;
}
