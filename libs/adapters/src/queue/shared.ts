import { FaceSearchError } from '@facesearch/common';

/** Retry settings shared by both queue implementations. */
export interface RetryOptions {
  /** Tries per job, the first included. Default 3. */
  attempts?: number;
  /** Delay before the first retry; doubles on each further retry. Default 200 ms. */
  backoffMs?: number;
}

/** The subset of a pino logger the queues use; a pino logger fits as is. */
export interface QueueLogger {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export const consoleQueueLogger: QueueLogger = {
  error: (obj, msg) => console.error(msg, obj),
  warn: (obj, msg) => console.warn(msg, obj),
};

export const DEFAULT_ATTEMPTS = 3;
export const DEFAULT_BACKOFF_MS = 200;
export const DEFAULT_CLOSE_TIMEOUT_MS = 30_000;

/** Only a FaceSearchError can declare itself final; anything else (bugs, network) gets the retries. */
export function isRetryable(error: unknown): boolean {
  return !(error instanceof FaceSearchError) || error.retryable;
}

/** Delay before attempt `nextAttempt` (2, 3, ...): base, 2x base, 4x base, ... */
export function backoffDelay(baseMs: number, nextAttempt: number): number {
  return baseMs * 2 ** Math.max(0, nextAttempt - 2);
}

/** Handlers may throw anything (strings, plain objects); give it a message for logs and BullMQ. */
export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  if (typeof value === 'string') return new Error(value);
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return new Error(`non-Error value thrown: ${text}`);
}

export function positiveInt(value: number | undefined, fallback: number, what: string): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1)
    throw new FaceSearchError('invalid_queue_option', `${what} must be an integer >= 1, got ${v}`, 500);
  return v;
}

export function queueClosedError(name: string): FaceSearchError {
  return new FaceSearchError('queue_closed', `queue ${name} is closed`, 503, false);
}

export function alreadyProcessingError(name: string): FaceSearchError {
  return new FaceSearchError('queue_already_processing', `queue ${name} already has a handler`, 500, false);
}
