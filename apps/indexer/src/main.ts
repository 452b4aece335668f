import { createLogger, exitOnSignals, loadConfigOrExit, runMain } from '@facesearch/runtime';
import { startIndexer } from './indexer';

runMain('indexer', async () => {
  // The indexer runs no model: it needs no engine addresses.
  const config = loadConfigOrExit({ ...process.env, ENGINE: 'local' });
  const logger = createLogger(config, 'indexer');
  const worker = await startIndexer(config, logger);
  exitOnSignals(logger, config.shutdownTimeoutMs, () => worker.close());
});
