import { createLogger, exitOnSignals, loadConfigOrExit, runMain } from '@facesearch/runtime';
import { startDetector } from './detector';

runMain('detector', async () => {
  // Detection always runs here: the detector calls no other engine service (crops go to the embed queue).
  const config = loadConfigOrExit({ ...process.env, ENGINE: 'local' });
  const logger = createLogger(config, 'detector');
  const worker = await startDetector(config, logger);
  exitOnSignals(logger, config.shutdownTimeoutMs, () => worker.close());
});
