import 'reflect-metadata';
import { exitOnSignals, loadConfigOrExit, runMain } from '@facesearch/runtime';
import { createGateway } from './gateway';

runMain('gateway', async () => {
  const config = loadConfigOrExit();
  const gateway = await createGateway(config);
  const { logger } = gateway;
  exitOnSignals(logger, config.shutdownTimeoutMs, () => gateway.close());
  await gateway.app.listen(config.port, config.host);
  logger.info(
    {
      port: config.port,
      host: config.host,
      mode: config.mode,
      dataDir: config.mode === 'embedded' ? config.dataDir : undefined,
    },
    `facesearch gateway listening on http://${config.host}:${config.port} (docs at /docs)`,
  );
  if (!config.adminApiKey) logger.warn('ADMIN_API_KEY is not set: the app and key management routes are disabled');
});
