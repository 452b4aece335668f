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
import type { ImportJob } from '@facesearch/core';
import { createLocalFaceAnalyzer } from '@facesearch/face-engine';
import type { Logger } from 'pino';

export const IMPORT_QUEUE_NAME = 'imports';

/** The five ports every service is built on; which implementation runs is configuration only. */
export interface Ports {
  library: LibraryRepository;
  vectors: VectorStore;
  blobs: BlobStore;
  importQueue: JobQueue<ImportJob>;
  analyzer: FaceAnalyzer;
}

export async function buildPorts(config: FaceSearchConfig, logger: Logger): Promise<Ports> {
  const queueLogger = logger.child({ component: 'queue' });
  const opened: Array<{ close(): Promise<void> }> = [];
  try {
    let library: LibraryRepository;
    let sqlite: SqliteLibraryRepository | null = null;
    if (config.libraryStore === 'sqlite') {
      mkdirSync(resolve(config.dataDir), { recursive: true });
      sqlite = new SqliteLibraryRepository(join(resolve(config.dataDir), 'facesearch.db'));
      library = sqlite;
    } else {
      library = new RedisLibraryRepository(config.redisUrl as string);
    }
    opened.push(library);

    let vectors: VectorStore;
    if (config.vectorStore === 'sqlite') {
      // Vectors share the library's database file (one file, one WAL) when both are SQLite.
      vectors = new SqliteVecVectorStore({
        database: sqlite ? sqlite.db : join(mkdirData(config.dataDir), 'facesearch.db'),
      });
    } else {
      vectors = new QdrantVectorStore({ url: config.qdrantUrl as string, collection: config.qdrantCollection });
    }
    opened.unshift(vectors); // closed before the database it may share

    let blobs: BlobStore;
    if (config.blobStore === 'fs') {
      const root = join(mkdirData(config.dataDir), 'blobs');
      mkdirSync(root, { recursive: true }); // so /health/ready is green before the first upload
      blobs = new FsBlobStore(root);
    } else {
      const s3 = new S3BlobStore({
        endpoint: config.s3.endpoint as string,
        accessKey: config.s3.accessKey as string,
        secretKey: config.s3.secretKey as string,
        bucket: config.s3.bucket,
        region: config.s3.region,
      });
      await s3.init();
      blobs = s3;
    }
    opened.push(blobs);

    const importQueue: JobQueue<ImportJob> =
      config.queue === 'memory'
        ? new MemoryJobQueue<ImportJob>(IMPORT_QUEUE_NAME, { attempts: config.jobAttempts, logger: queueLogger })
        : new BullMqJobQueue<ImportJob>(IMPORT_QUEUE_NAME, {
            redisUrl: config.redisUrl as string,
            attempts: config.jobAttempts,
            logger: queueLogger,
          });
    opened.unshift(importQueue); // stop consuming before the stores go away

    let analyzer: FaceAnalyzer;
    if (config.engine === 'local') {
      analyzer = await createLocalFaceAnalyzer({
        modelDir: config.modelDir ?? undefined,
        maxImageBytes: config.maxImageBytes,
        maxImagePixels: config.maxImagePixels,
      });
    } else {
      // TODO(distributed): GrpcFaceAnalyzer from @facesearch/proto over config.detectorGrpcUrls and
      // config.embedderGrpcUrls, once libs/proto exports it.
      throw new Error('ENGINE=grpc is not available yet: @facesearch/proto has no GrpcFaceAnalyzer');
    }
    opened.unshift(analyzer);

    await vectors.init(analyzer.embeddingDim);
    return { library, vectors, blobs, importQueue, analyzer };
  } catch (err) {
    await closeAll(opened, logger);
    throw err;
  }
}

function mkdirData(dataDir: string): string {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Closes in dependency order: queue (waits for running jobs), engine, vectors, then the stores. */
export async function closePorts(ports: Ports, logger?: Logger): Promise<void> {
  await closeAll([ports.importQueue, ports.analyzer, ports.vectors, ports.blobs, ports.library], logger);
}

async function closeAll(items: Array<{ close(): Promise<void> }>, logger?: Logger): Promise<void> {
  for (const item of items) {
    try {
      await item.close();
    } catch (err) {
      logger?.warn({ err }, 'closing a port failed');
    }
  }
}

/** The cosine threshold that maps to score 80: configured, else the model's calibrated one. */
export function cosineThreshold(config: FaceSearchConfig, analyzer: FaceAnalyzer, fallback: number): number {
  if (config.matchCosineThreshold !== null) return config.matchCosineThreshold;
  const calibrated = (analyzer as { matchThreshold?: unknown }).matchThreshold;
  return typeof calibrated === 'number' && calibrated > 0 && calibrated < 1 ? calibrated : fallback;
}
