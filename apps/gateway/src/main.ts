import 'reflect-metadata';
import { ConfigError, loadConfig } from '@facesearch/common';
import { createGateway } from './gateway';

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const gateway = await createGateway(config);
  const { logger } = gateway;
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

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    try {
      await gateway.close();
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((err) => {
  console.error('facesearch gateway failed to start:', err);
  process.exit(1);
});
