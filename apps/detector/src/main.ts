import { createLogger, exitOnSignals, loadConfigOrExit, runMain } from '@facesearch/runtime';
import { startDetector } from './detector';

runMain('detector', async () => {
  // The models always run here (both: Detector.Analyze and IMPORT_EMBED=inline embed with this engine); the only
  // other engine service a detector may call is the embedder, for IMPORT_EMBED=inline with EMBEDDER_GRPC_URL.
  const config = loadConfigOrExit({ ...process.env, ENGINE: 'local' });
  const logger = createLogger(config, 'detector');
  const worker = await startDetector(config, logger);
  exitOnSignals(logger, config.shutdownTimeoutMs, () => worker.close());
});
