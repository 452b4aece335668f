import { StageTimings } from '@facesearch/core';
import type { NextFunction, Request, Response } from 'express';

/** When the request's headers reached the gateway (performance.now()), for the `gateway` Server-Timing entry. */
export function markArrival(_req: Request, res: Response, next: NextFunction): void {
  res.locals.receivedAt = performance.now();
  next();
}

/**
 * Answers with a `Server-Timing` header: the time of each stage inside this request (analyze, with engine inside it;
 * vectors; library) and `gateway`, from the request's arrival to the answer being ready (body upload, multipart,
 * auth and validation included; the stages inside it); `record` gets the same figures (the stage metrics).
 */
export async function withServerTiming<T>(
  res: Response,
  work: (timings: StageTimings) => Promise<T>,
  record?: (stages: Map<string, number>) => void,
): Promise<T> {
  const timings = new StageTimings();
  const result = await work(timings);
  const receivedAt = res.locals.receivedAt;
  if (typeof receivedAt === 'number') timings.add('gateway', performance.now() - receivedAt);
  res.setHeader('Server-Timing', timings.header());
  record?.(timings.stages());
  return result;
}
