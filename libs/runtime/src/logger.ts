import type { FaceSearchConfig } from '@facesearch/common';
import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Secrets in logged objects: API keys in request headers, and the token of signed upload URLs, which is in the
 * query string (of the request log's `req.url` and `req.query`, and of the `url` the error filter logs).
 */
export const REDACTED_LOG_PATHS = ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.query.token'];
const URL_PATHS = ['req.url', 'url'];

/** Keeps a logged URL readable while hiding its `token` query parameter. */
export function redactUrlToken(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]');
}

/**
 * JSON logs on stdout (or `destination`, for tests that read them); `service` names the app so merged logs stay
 * readable.
 */
export function createLogger(
  config: Pick<FaceSearchConfig, 'logLevel'>,
  service = 'gateway',
  destination?: DestinationStream,
): Logger {
  const options = {
    level: config.logLevel,
    base: { service, pid: process.pid },
    // API keys and upload tokens are secrets: never log them.
    redact: {
      paths: [...REDACTED_LOG_PATHS, ...URL_PATHS],
      censor: (value: unknown, path: string[]) =>
        URL_PATHS.includes(path.join('.')) && typeof value === 'string' ? redactUrlToken(value) : '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
