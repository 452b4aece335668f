import { type FaceSearchConfig, FALLBACK_MATCH_COSINE_THRESHOLD } from '@facesearch/common';
import {
  AdmissionLimitedAnalyzer,
  AuthService,
  ImportService,
  LibraryService,
  RecognitionService,
  ReindexService,
  UploadService,
  type UploadHandoff,
} from '@facesearch/core';
import { cosineThreshold, type Ports, QUEUE_ORDER } from '@facesearch/runtime';
import { type DynamicModule, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { LoggerModule } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AuthGuard } from './auth/auth';
import { ConsoleController } from './console/console.controller';
import { FaceImageService } from './console/face-images';
import { AdminController } from './controllers/admin.controller';
import { AppsController } from './controllers/apps.controller';
import { FacesController } from './controllers/faces.controller';
import { GroupsController } from './controllers/groups.controller';
import { HealthController } from './controllers/health.controller';
import { ImportsController } from './controllers/imports.controller';
import { RecognitionController } from './controllers/recognition.controller';
import { UploadsController } from './controllers/uploads.controller';
import { Metrics } from './metrics';
import { CONFIG, PORTS } from './tokens';

export const MAX_IMPORT_ITEMS = 10_000;

export interface Services {
  auth: AuthService;
  library: LibraryService;
  recognition: RecognitionService;
  imports: ImportService;
  uploads: UploadService;
  reindex: ReindexService;
  metrics: Metrics;
}

/** Plain construction of the core services on the ports; Nest only hands them to controllers. */
export function buildServices(
  config: FaceSearchConfig,
  ports: Ports,
  options: { uploadHandoff?: UploadHandoff } = {},
): Services {
  const metrics = new Metrics(QUEUE_ORDER.map((name) => ports.queues[name]) as never[]);
  const threshold = cosineThreshold(config, ports.analyzer, FALLBACK_MATCH_COSINE_THRESHOLD);
  // Synchronous requests share one admission limit (503 engine_busy beyond it); import items do not count.
  const analyzer = new AdmissionLimitedAnalyzer(ports.analyzer, config.maxConcurrentAnalyses);
  const library: LibraryService = new LibraryService(
    ports.library,
    ports.vectors,
    ports.blobs,
    analyzer,
    ports.queues.deletes,
    {
      maxFacesPerUser: config.maxFacesPerUser,
      onFacesIndexed: (n) => metrics.facesIndexed.inc(n),
      beforeGroupDelete: (appId, groupId): Promise<void> => imports.cancelImportsInto(appId, groupId),
    },
  );
  const imports: ImportService = new ImportService(ports.library, ports.blobs, ports.queues.imports, library, {
    maxItems: MAX_IMPORT_ITEMS,
    maxFacesPerUser: config.maxFacesPerUser,
    maxQueuedItems: config.maxQueuedItems,
    handoff: options.uploadHandoff,
  });
  return {
    auth: new AuthService(ports.library, {
      adminApiKey: config.adminApiKey,
      defaultAppApiKey: config.defaultAppApiKey,
      keyCacheMs: config.authKeyCacheMs,
    }),
    library,
    recognition: new RecognitionService(ports.library, ports.vectors, analyzer, {
      cosineThreshold: threshold,
      maxFacesPerUser: config.maxFacesPerUser,
    }),
    imports,
    uploads: new UploadService(ports.blobs, { signingSecret: config.uploadSigningSecret }),
    // The engine directly, not the admission-limited one: a reindex must not take 503s, nor starve requests.
    reindex: new ReindexService(ports.library, ports.vectors, ports.blobs, ports.analyzer, { concurrency: 1 }),
    metrics,
  };
}

/** A dynamic module: Nest needs a class to hang it on. */
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: Nest dynamic modules are classes with a static factory.
export class GatewayModule {
  static create(config: FaceSearchConfig, ports: Ports, services: Services, logger: Logger): DynamicModule {
    return {
      module: GatewayModule,
      imports: [
        TerminusModule.forRoot({ logger: false }),
        LoggerModule.forRoot({
          pinoHttp: {
            logger, // created with the key headers redacted (see createLogger)
            autoLogging: { ignore: (req) => req.url === '/health/live' || req.url === '/metrics' },
          },
        }),
      ],
      controllers: [
        AppsController,
        AdminController,
        GroupsController,
        FacesController,
        RecognitionController,
        ImportsController,
        UploadsController,
        HealthController,
        ConsoleController,
      ],
      providers: [
        { provide: CONFIG, useValue: config },
        { provide: PORTS, useValue: ports },
        { provide: AuthService, useValue: services.auth },
        { provide: LibraryService, useValue: services.library },
        { provide: RecognitionService, useValue: services.recognition },
        { provide: ImportService, useValue: services.imports },
        { provide: UploadService, useValue: services.uploads },
        { provide: ReindexService, useValue: services.reindex },
        { provide: Metrics, useValue: services.metrics },
        FaceImageService,
        { provide: APP_GUARD, useClass: AuthGuard },
      ],
    };
  }
}
