import type { FaceSearchConfig } from '@facesearch/common';
import pino, { type Logger } from 'pino';

/** JSON logs on stdout; `service` names the app so merged logs stay readable. */
export function createLogger(config: Pick<FaceSearchConfig, 'logLevel'>, service = 'gateway'): Logger {
  return pino({
    level: config.logLevel,
    base: { service, pid: process.pid },
    // API keys are secrets: never log them.
    redact: { paths: ['req.headers.authorization', 'req.headers["x-api-key"]'], censor: '[redacted]' },
  });
}
