import { type ArgumentsHost, Catch, type ExceptionFilter, ServiceUnavailableException } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { Logger } from 'pino';
import { retryAfterFor, toErrorResponse } from './errors';

/** Every error leaves as `{"error":{"code","message"}}` with its status; stacks go to the log only. */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  constructor(private readonly logger: Logger) {}

  catch(err: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const res = ctx.getResponse<Response>();
    const req = ctx.getRequest<Request>();
    // Terminus' readiness report keeps its own documented shape.
    if (err instanceof ServiceUnavailableException && isHealthReport(err.getResponse())) {
      res.status(503).json(err.getResponse());
      return;
    }
    const { status, body, unexpected } = toErrorResponse(err);
    if (unexpected) this.logger.error({ err, method: req.method, url: req.originalUrl }, 'request failed');
    if (res.headersSent) return;
    // Overload and outages: tell clients when to come back rather than let them hammer or time out.
    const retryAfter = retryAfterFor(err, status);
    if (retryAfter !== null && !res.getHeader('retry-after')) res.setHeader('retry-after', String(retryAfter));
    res.status(status).json(body);
  }
}

function isHealthReport(body: unknown): boolean {
  return !!body && typeof body === 'object' && 'status' in body && 'details' in body;
}
