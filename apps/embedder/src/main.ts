import { createLogger, exitOnSignals, loadConfigOrExit, runMain } from '@facesearch/runtime';
import { startEmbedder } from './embedder';

runMain('embedder', async () => {
  // The embedder runs the model itself: it needs no engine addresses (imports reach it through the embed queue).
  const config = loadConfigOrExit({ ...process.env, ENGINE: 'local' });
  const logger = createLogger(config, 'embedder');
  const worker = await startEmbedder(config, logger);
  exitOnSignals(logger, config.shutdownTimeoutMs, () => worker.close());
});
