import { ConfigError, type FaceSearchConfig, loadConfig } from '@facesearch/common';
import type { Logger } from 'pino';

/** Validates the environment; a bad configuration stops the process with exit code 2 and every problem named. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): FaceSearchConfig {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
}

/** Runs an app's start-up; a failure is printed and ends the process with exit code 1. */
export function runMain(service: string, main: () => Promise<void>): void {
  main().catch((err) => {
    console.error(`facesearch ${service} failed to start:`, err);
    process.exit(1);
  });
}

/**
 * On the first SIGTERM or SIGINT, runs `stop` (stop taking work, finish what runs, close connections) and exits 0;
 * exits 1 if it fails or takes longer than timeoutMs. A second signal does not interrupt the first stop.
 */
export function exitOnSignals(logger: Logger, timeoutMs: number, stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, timeoutMs }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown took too long; exiting anyway');
      process.exit(1);
    }, timeoutMs);
    timer.unref();
    stop().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
