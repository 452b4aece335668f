import type { FaceSearchConfig } from '@facesearch/common';
import { DeleteStage, ImportDetectStage, ImportEmbedStage, ImportIndexStage, UploadHandoff } from '@facesearch/core';
import {
  ALL_PORTS,
  buildPorts,
  closePorts,
  createLogger,
  importEngines,
  instrumentQueues,
  type Ports,
  QUEUE_ORDER,
} from '@facesearch/runtime';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import express, { type Request, type RequestHandler } from 'express';
import { Logger as NestPinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import { buildServices, GatewayModule, type Services } from './app.module';
import { RefuseUnreadMultipart, requireBodyContentType } from './http/content-type';
import { ErrorFilter } from './http/error.filter';
import { answerMalformedHttp, guardParser, verifyUploadTokenFirst } from './http/early-refusals';
import { markArrival } from './http/server-timing';

export interface GatewayOptions {
  /** Ports built elsewhere (tests); otherwise built from the config. */
  ports?: Ports;
  logger?: Logger;
  /**
   * Run the three import stages (detection, embedding, indexing) and the deletes in this process. Default: when
   * the queues are in-process (embedded); in distributed mode the detector, embedder and indexer workers do.
   */
  runImportWorker?: boolean;
}

export interface Gateway {
  app: NestExpressApplication;
  services: Services;
  ports: Ports;
  logger: Logger;
  close(): Promise<void>;
}

export { createLogger };

/** Builds the whole gateway (ports, services, HTTP app) without listening. */
export async function createGateway(config: FaceSearchConfig, options: GatewayOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? createLogger(config);
  const ports = options.ports ?? (await buildPorts(config, logger, { need: ALL_PORTS }));
  let indexStage: ImportIndexStage | null = null;
  let deleteStage: DeleteStage | null = null;
  try {
    const runWorker = options.runImportWorker ?? config.queue === 'memory';
    // The detection stage running here takes this process's uploads from memory instead of reading them back.
    const uploadHandoff =
      runWorker && config.importHandoffBytes > 0 ? new UploadHandoff(config.importHandoffBytes) : undefined;
    const services = buildServices(config, ports, { uploadHandoff });
    const { generatedKey } = await services.auth.bootstrap();
    if (generatedKey) {
      // Shown once: only its hash is stored. Printed plainly so a newcomer sees it among the JSON logs.
      process.stdout.write(
        `\nfacesearch: created the app 'default' with the API key ${generatedKey.key}\n` +
          'facesearch: keep it now, it is not shown again (or set DEFAULT_APP_API_KEY)\n\n',
      );
    }

    const app = await NestFactory.create<NestExpressApplication>(
      GatewayModule.create(config, ports, services, logger),
      {
        bodyParser: false,
        bufferLogs: true,
      },
    );
    app.useLogger(app.get(NestPinoLogger));
    app.disable('x-powered-by');
    app.use(markArrival);
    app.use(requestMetrics(services));
    // The gateway's own upload URL takes raw bytes; everything else is JSON or multipart.
    const isRawUpload = (req: Request) => req.method === 'PUT' && req.path.startsWith('/v1/uploads/');
    app.use(requireBodyContentType(isRawUpload, logger));
    app.use('/v1/uploads', verifyUploadTokenFirst(services.uploads, logger));
    app.use(
      '/v1/uploads',
      guardParser(
        express.raw({ type: () => true, limit: config.maxImageBytes }),
        config.maxImageBytes,
        (req) => req.method === 'PUT',
        logger,
      ),
    );
    app.use(
      guardParser(
        express.json({ limit: config.maxRequestBytes, type: JSON_TYPES }),
        config.maxRequestBytes,
        (req) => !!req.is(JSON_TYPES),
        logger,
      ),
    );
    app.useGlobalFilters(new ErrorFilter(logger));
    app.useGlobalInterceptors(new RefuseUnreadMultipart());
    answerMalformedHttp(app.getHttpServer(), logger);
    setupOpenApi(app);

    if (runWorker) {
      const { aligner, embedder } = importEngines(ports.analyzer);
      // The jobs run here are counted and timed (/metrics); the producers keep using ports.queues.
      const queues = instrumentQueues(ports.queues, services.metrics.jobs);
      const detection = new ImportDetectStage(ports.library, ports.blobs, aligner, ports.queues.embed, {
        maxFacesPerUser: config.maxFacesPerUser,
        inline: config.importEmbed === 'inline' ? { embedder, indexQueue: ports.queues.index } : undefined,
        handoff: uploadHandoff,
      });
      const embedding = new ImportEmbedStage(ports.library, ports.blobs, embedder, ports.queues.index);
      indexStage = new ImportIndexStage(ports.library, ports.vectors, ports.blobs, {
        maxFacesPerUser: config.maxFacesPerUser,
        maxItems: config.indexBatchSize,
        maxWaitMs: config.indexBatchWaitMs,
        onFacesIndexed: (n) => services.metrics.facesIndexed.inc(n),
      });
      deleteStage = new DeleteStage(ports.library, ports.vectors, ports.blobs, queues.deletes, {
        onRetry: (job, err) => logger.warn({ kind: job.kind, round: job.round, err }, 'delete job retried'),
        onLost: (job, err) => logger.error({ job, err }, 'delete job could not be queued again'),
      });
      detection.start(queues.imports, config.importConcurrency);
      embedding.start(queues.embed, config.embedConcurrency);
      indexStage.start(queues.index, config.indexConcurrency);
      deleteStage.start(4);
      const resumed = await services.imports.resume();
      if (resumed.items > 0) logger.info(resumed, 'resumed unfinished imports');
    }
    await app.init();

    let closed = false;
    return {
      app,
      services,
      ports,
      logger,
      async close() {
        if (closed) return;
        closed = true;
        await services.reindex.stop();
        await app.close();
        await stopWorkers();
        await closePorts(ports, logger);
      },
    };
  } catch (err) {
    await stopWorkers();
    if (!options.ports) await closePorts(ports, logger);
    throw err;
  }

  /** Queues first (they wait for running jobs, whose index writes wait for their batch), then the batcher. */
  async function stopWorkers(): Promise<void> {
    if (!indexStage) return;
    deleteStage?.close();
    // In pipeline order: jobs finishing now still add to the next stage's queue, and index jobs their batch.
    for (const name of QUEUE_ORDER) await ports.queues[name].close().catch(() => undefined);
    await indexStage.close();
  }
}

export function setupOpenApi(app: NestExpressApplication): void {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('facesearch')
      .setDescription(
        'Self-hosted face search: detect, 1:1 compare, 1:N and M:N search over a managed face library ' +
          '(app -> group -> user -> face), and bulk import. Errors: `{"error": {"code", "message"}}`.',
      )
      .setVersion('1')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'API key (or send it as `x-api-key`)' }, 'bearer')
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'openapi.json', yamlDocumentUrl: 'openapi.yaml' });
}

const JSON_TYPES = ['application/json', 'application/*+json'];

function requestMetrics(services: Services): RequestHandler {
  return (req, res, next) => {
    const end = services.metrics.httpDuration.startTimer();
    res.on('finish', () => {
      const route = (req as Request & { route?: { path?: string } }).route?.path;
      end({
        method: req.method,
        route: route ? `${req.baseUrl ?? ''}${route}` : 'unmatched',
        status: String(res.statusCode),
      });
    });
    next();
  };
}
