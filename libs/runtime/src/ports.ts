import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  BullMqJobQueue,
  FsBlobStore,
  MemoryJobQueue,
  QdrantVectorStore,
  RedisLibraryRepository,
  S3BlobStore,
  SqliteLibraryRepository,
  SqliteVecVectorStore,
} from '@facesearch/adapters';
import type {
  BlobStore,
  FaceAnalyzer,
  FaceSearchConfig,
  JobQueue,
  LibraryRepository,
  VectorStore,
} from '@facesearch/common';
import {
  DELETE_QUEUE,
  type DeleteJob,
  EMBED_QUEUE,
  type EmbedJob,
  IMPORT_QUEUE,
  INDEX_QUEUE,
  type ImportJob,
  type IndexJob,
} from '@facesearch/core';
import type { Logger } from 'pino';
import { createAnalyzer } from './analyzer';
import { GuardedJobQueue } from './guarded-queue';
import type { JobMetrics } from './metrics';

export interface Queues {
  /** Detection jobs, one per import item. */
  imports: JobQueue<ImportJob>;
  /** Detected faces (their aligned crop in the blob store) waiting for a vector. */
  embed: JobQueue<EmbedJob>;
  /** Embedded faces waiting to be written (in batches). */
  index: JobQueue<IndexJob>;
  /** Vectors and images of deleted faces, users and groups, to remove (retried until done). */
  deletes: JobQueue<DeleteJob>;
}

/** In pipeline order: a stage's running jobs may still add to the next stage's queue while it closes. */
export const QUEUE_ORDER: readonly (keyof Queues)[] = ['imports', 'embed', 'index', 'deletes'];

/** The ports services are built on; which implementation runs is configuration only. */
export interface Ports {
  library: LibraryRepository;
  vectors: VectorStore;
  blobs: BlobStore;
  queues: Queues;
  analyzer: FaceAnalyzer;
}

export type PortName = keyof Ports;
export const ALL_PORTS: readonly PortName[] = ['library', 'vectors', 'blobs', 'queues', 'analyzer'];

export interface BuildPortsOptions<N extends PortName> {
  /** Only these are built (a worker opens no connection it does not use). */
  need: readonly N[];
  /** Builds the analyzer instead of the one ENGINE names (the detector's local-detect, remote-embed analyzer). */
  analyzer?: () => Promise<FaceAnalyzer>;
  /** Counts and times the jobs this process consumes from the queues. */
  jobMetrics?: JobMetrics;
}

/**
 * Builds the ports an app needs from the configuration. Vectors are initialised with the analyzer's dimension
 * when both are built; an app without analyzer (the indexer) initialises them from the first vector it writes.
 */
export async function buildPorts<N extends PortName>(
  config: FaceSearchConfig,
  logger: Logger,
  options: BuildPortsOptions<N>,
): Promise<Pick<Ports, N>> {
  const need = new Set<PortName>(options.need);
  const built: Partial<Ports> = {};
  try {
    let sqlite: SqliteLibraryRepository | null = null;
    if (need.has('library')) {
      if (config.libraryStore === 'sqlite') {
        sqlite = new SqliteLibraryRepository(join(dataDir(config), 'facesearch.db'));
        built.library = sqlite;
      } else {
        built.library = new RedisLibraryRepository(config.redisUrl as string, {
          keyPrefix: `${config.redisPrefix}:lib:`,
        });
      }
    }
    if (need.has('vectors')) {
      built.vectors =
        config.vectorStore === 'sqlite'
          ? // Vectors share the library's database file (one file, one WAL) when both are SQLite.
            // Searches run on a reader thread (its own read-only connection), so a long scan leaves the event loop free.
            new SqliteVecVectorStore({
              database: sqlite ? sqlite.db : join(dataDir(config), 'facesearch.db'),
              searchThreads: 1,
            })
          : new QdrantVectorStore({
              url: config.qdrantUrl as string,
              collection: config.qdrantCollection,
              // Unset (null): the adapter's defaults. The graph applies only to a collection created here.
              hnsw: {
                m: config.qdrantHnswM ?? undefined,
                ef_construct: config.qdrantHnswEfConstruct ?? undefined,
                full_scan_threshold_kb: config.qdrantFullScanThresholdKb ?? undefined,
              },
              searchParams: config.qdrantSearchEf ? { hnsw_ef: config.qdrantSearchEf } : undefined,
              quantization: config.qdrantQuantization ?? undefined,
              datatype: config.qdrantVectorDatatype ?? undefined,
              logger: logger.child({ component: 'vectors' }),
            });
    }
    if (need.has('blobs')) {
      if (config.blobStore === 'fs') {
        const root = join(dataDir(config), 'blobs');
        mkdirSync(root, { recursive: true }); // so /health/ready is green before the first upload
        built.blobs = new FsBlobStore(root);
      } else {
        const s3 = new S3BlobStore({
          endpoint: config.s3.endpoint as string,
          accessKey: config.s3.accessKey as string,
          secretKey: config.s3.secretKey as string,
          bucket: config.s3.bucket,
          region: config.s3.region,
        });
        built.blobs = s3;
        await s3.init();
      }
    }
    if (need.has('queues')) {
      const queues: Queues = {
        imports: createQueue(IMPORT_QUEUE, config, logger),
        embed: createQueue(EMBED_QUEUE, config, logger),
        index: createQueue(INDEX_QUEUE, config, logger),
        deletes: createQueue(DELETE_QUEUE, config, logger),
      };
      built.queues = options.jobMetrics ? instrumentQueues(queues, options.jobMetrics) : queues;
    }
    if (need.has('analyzer')) {
      built.analyzer = await (options.analyzer ?? (() => createAnalyzer(config, logger)))();
      if (built.vectors) await built.vectors.init(built.analyzer.embeddingDim);
    }
    return built as Pick<Ports, N>;
  } catch (err) {
    await closePorts(built, logger);
    throw err;
  }
}

/** The same queues, with the jobs this process consumes from them counted and timed in `jobMetrics`. */
export function instrumentQueues(queues: Queues, jobMetrics: JobMetrics): Queues {
  return {
    imports: jobMetrics.instrument(queues.imports),
    embed: jobMetrics.instrument(queues.embed),
    index: jobMetrics.instrument(queues.index),
    deletes: jobMetrics.instrument(queues.deletes),
  };
}

function createQueue<T>(name: string, config: FaceSearchConfig, logger: Logger): JobQueue<T> {
  const queueLogger = logger.child({ component: 'queue' });
  // Running jobs get most of the shutdown time; the stores still need a moment to close after them.
  const closeTimeoutMs = Math.max(100, Math.floor(config.shutdownTimeoutMs * 0.7));
  if (config.queue === 'memory') {
    return new MemoryJobQueue<T>(name, { attempts: config.jobAttempts, closeTimeoutMs, logger: queueLogger });
  }
  return new GuardedJobQueue(
    new BullMqJobQueue<T>(name, {
      redisUrl: config.redisUrl as string,
      prefix: `${config.redisPrefix}:queue`,
      attempts: config.jobAttempts,
      closeTimeoutMs,
      lockDurationMs: config.jobLockMs,
      logger: queueLogger,
    }),
  );
}

function dataDir(config: FaceSearchConfig): string {
  const dir = resolve(config.dataDir);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Closes in dependency order: queues first (they stop taking jobs and wait for running ones), then the engine,
 * the vectors and the stores. Errors are logged, not thrown: the others still close.
 */
export async function closePorts(ports: Partial<Ports>, logger?: Logger): Promise<void> {
  // In pipeline order: running jobs of one stage may still add to the next stage's queue.
  if (ports.queues) {
    for (const name of QUEUE_ORDER) await closeQuietly(ports.queues[name], logger);
  }
  for (const item of [ports.analyzer, ports.vectors, ports.blobs, ports.library]) {
    if (item) await closeQuietly(item, logger);
  }
}

async function closeQuietly(item: { close(): Promise<void> }, logger?: Logger): Promise<void> {
  try {
    await item.close();
  } catch (err) {
    logger?.warn({ err }, 'closing a port failed');
  }
}

/** The cosine threshold that maps to score 80: configured, else the model's calibrated one. */
export function cosineThreshold(config: FaceSearchConfig, analyzer: FaceAnalyzer, fallback: number): number {
  if (config.matchCosineThreshold !== null) return config.matchCosineThreshold;
  const calibrated = (analyzer as { matchThreshold?: unknown }).matchThreshold;
  return typeof calibrated === 'number' && calibrated > 0 && calibrated < 1 ? calibrated : fallback;
}
