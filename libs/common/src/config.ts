/**
 * Service configuration from environment variables, validated once at start-up. Every app reads it
 * through `loadConfig(process.env)`; a bad value stops the process with one message naming every problem.
 */
import { availableCpus } from './cpus';
import { z } from 'zod';

export type Mode = 'embedded' | 'distributed';

export interface FaceSearchConfig {
  mode: Mode;
  blobStore: 'fs' | 's3';
  vectorStore: 'sqlite' | 'qdrant';
  libraryStore: 'sqlite' | 'redis';
  queue: 'memory' | 'bullmq';
  engine: 'local' | 'grpc';
  port: number;
  /** Interface the HTTP server binds to. */
  host: string;
  dataDir: string;
  redisUrl: string | null;
  s3: { endpoint: string | null; accessKey: string | null; secretKey: string | null; bucket: string; region: string };
  qdrantUrl: string | null;
  qdrantCollection: string;
  /**
   * HNSW graph (m, ef_construct) of a Qdrant collection the service creates, and the hnsw_ef of its searches;
   * null: the adapter's defaults (m 0: no graph, searches scan the int8 copies; with a graph ef_construct 256,
   * hnsw_ef 256). An existing collection keeps its graph.
   */
  qdrantHnswM: number | null;
  qdrantHnswEfConstruct: number | null;
  qdrantFullScanThresholdKb: number | null;
  qdrantSearchEf: number | null;
  /** Vectors of a collection the service creates: `int8` adds scalar-quantised copies; null = the adapter's default. */
  qdrantQuantization: 'none' | 'int8' | null;
  /** How a collection the service creates stores its vectors: `float16` halves their memory; null = float32. */
  qdrantVectorDatatype: 'float32' | 'float16' | null;
  detectorGrpcUrls: string[];
  embedderGrpcUrls: string[];
  grpcPort: number;
  /** Port of a worker's (detector, embedder, indexer) `GET /metrics` endpoint; null: none, 0: any free port. */
  metricsPort: number | null;
  adminApiKey: string | null;
  defaultAppApiKey: string | null;
  modelDir: string | null;
  /** JSON manifests describing another detector / embedder (see models/manifest.json); null = the pinned defaults. */
  detectorManifest: string | null;
  embedderManifest: string | null;
  maxImageBytes: number;
  maxImagePixels: number;
  /**
   * Longer side of the first, small decode of JPEGs of twice that size or more (detection and the crops of faces
   * large in it; the working-size decode follows only when needed). 0: always decode once at the working size.
   */
  enginePreviewMaxSide: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /**
   * Cosine similarity that maps to score 80 (DEFAULT_MATCH_SCORE). Null: the embedding model's calibrated
   * threshold when the engine knows it, else FALLBACK_MATCH_COSINE_THRESHOLD.
   */
  matchCosineThreshold: number | null;
  maxRequestBytes: number;
  maxFacesPerUser: number;
  /**
   * Worker threads running the models in this process (each with its own ONNX sessions), so inference leaves
   * the JS thread and uses every core; 0 runs them on the calling thread. Default: the cores available.
   */
  engineWorkers: number;
  importConcurrency: number;
  /**
   * Bytes of import uploads the gateway keeps in memory for its own detection stage (embedded), so that stage does
   * not read back the files just written; 0: none kept.
   */
  importHandoffBytes: number;
  /**
   * How an import item's face reaches the embedding model. `queue`: its crop goes to the blob store and an
   * `embed` job to the embedder workers (embedders scale apart from detectors). `inline`: the detection stage
   * embeds it at once (embedded: the same engine; a detector worker: the embedder service when EMBEDDER_GRPC_URL
   * is set, else its own engine) and queues the index job: no crop round trip, one queue hop less.
   */
  importEmbed: 'queue' | 'inline';
  /** Embed jobs (one import item's crop each) a process embeds at once. */
  embedConcurrency: number;
  /** Index jobs a process holds at once; at least indexBatchSize, or batches never fill. */
  indexConcurrency: number;
  /** Index jobs written together (one vector upsert), and how long the first waits for company. */
  indexBatchSize: number;
  indexBatchWaitMs: number;
  jobAttempts: number;
  /** How long a process may take to stop (finish running jobs and requests) before it exits anyway. */
  shutdownTimeoutMs: number;
  /**
   * BullMQ job lock: a job whose worker died (its lock not renewed for this long) goes back to the queue;
   * the stalled-job check runs every half of it. Long enough that a busy worker still renews its locks.
   */
  jobLockMs: number;
  /** Import items waiting in the queue above which a new import is refused (429 queue_full); 0: no limit. */
  maxQueuedItems: number;
  /** Analyses (detect, enrol, search, compare) the gateway runs at once; more get 503 engine_busy. 0: no limit. */
  maxConcurrentAnalyses: number;
  /** Prefix of every Redis key (library records and queues), so several deployments can share one Redis. */
  redisPrefix: string;
  /** Requests per minute per API key; 0 turns the limit off. */
  rateLimitPerMinute: number;
  /** How long a gateway trusts a valid API key before asking the library again; 0: every request asks. */
  authKeyCacheMs: number;
  /** Secret for the gateway's own signed upload URLs; random per process when unset. */
  uploadSigningSecret: string | null;
  /** Base URL clients reach the gateway at, for upload URLs; taken from the request when unset. */
  publicUrl: string | null;
}

export const FALLBACK_MATCH_COSINE_THRESHOLD = 0.45;

const MODE_DEFAULTS: Record<
  Mode,
  Pick<FaceSearchConfig, 'blobStore' | 'vectorStore' | 'libraryStore' | 'queue' | 'engine'>
> = {
  embedded: { blobStore: 'fs', vectorStore: 'sqlite', libraryStore: 'sqlite', queue: 'memory', engine: 'local' },
  distributed: { blobStore: 's3', vectorStore: 'qdrant', libraryStore: 'redis', queue: 'bullmq', engine: 'grpc' },
};

/** Unset and empty mean the same: "use the default". */
const raw = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

function int(def: number, min: number, max: number) {
  return raw.transform((v, ctx) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `expected an integer ${min}-${max}, got '${v}'` });
      return z.NEVER;
    }
    return n;
  });
}

/** 0 (off), or an integer min-max; `def` when unset. */
function intOrZero(def: number, min: number, max: number) {
  return raw.transform((v, ctx) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!/^\d+$/.test(v) || (n !== 0 && (n < min || n > max))) {
      ctx.addIssue({ code: 'custom', message: `expected 0 (off) or an integer ${min}-${max}, got '${v}'` });
      return z.NEVER;
    }
    return n;
  });
}

/** An integer min-max, or null when unset (the consumer's own default applies). */
function optionalInt(min: number, max: number) {
  return raw.transform((v, ctx) => {
    if (v === undefined) return null;
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `expected an integer ${min}-${max}, got '${v}'` });
      return z.NEVER;
    }
    return n;
  });
}

function num(def: number | null, min: number, max: number) {
  return raw.transform((v, ctx) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `expected a number ${min}-${max}, got '${v}'` });
      return z.NEVER;
    }
    return n;
  });
}

function oneOf<const T extends readonly string[]>(values: T) {
  return raw.transform((v, ctx) => {
    if (v === undefined) return undefined;
    const lower = v.toLowerCase();
    if (!(values as readonly string[]).includes(lower)) {
      ctx.addIssue({ code: 'custom', message: `expected one of ${values.join('|')}, got '${v}'` });
      return z.NEVER;
    }
    return lower as T[number];
  });
}

function url(protocols: string[]) {
  return raw.transform((v, ctx) => {
    if (v === undefined) return null;
    try {
      const u = new URL(v);
      if (!protocols.includes(u.protocol)) throw new Error();
      return v;
    } catch {
      ctx.addIssue({ code: 'custom', message: `expected a ${protocols.join(' or ')} URL, got '${v}'` });
      return z.NEVER;
    }
  });
}

/** Comma-separated host:port list (clients round-robin over it). */
const hostPortList = raw.transform((v, ctx) => {
  if (v === undefined) return [];
  const parts = v
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  // host:port, [v6]:port, or dns:///name:port (gRPC resolves every address of the name and round-robins).
  const valid = (p: string) =>
    /^(dns:\/\/\/)?[A-Za-z0-9_.-]+:\d{1,5}$/.test(p) || /^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(p);
  const bad = parts.filter((p) => !valid(p));
  if (bad.length > 0) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a comma-separated list of host:port or dns:///host:port, got '${bad.join(',')}'`,
    });
    return z.NEVER;
  }
  return parts;
});

function secret(minLength: number) {
  return raw.transform((v, ctx) => {
    if (v === undefined) return null;
    if (v.length < minLength) {
      ctx.addIssue({ code: 'custom', message: `expected at least ${minLength} characters, got ${v.length}` });
      return z.NEVER;
    }
    return v;
  });
}

const optionalString = raw.transform((v) => v ?? null);

/** An integer min-max, or 'auto' (also when unset) for a value derived from the machine or other settings. */
function intOrAuto(min: number, max: number) {
  return raw.transform((v, ctx): number | 'auto' => {
    if (v === undefined || v.toLowerCase() === 'auto') return 'auto';
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `expected 'auto' or an integer ${min}-${max}, got '${v}'` });
      return z.NEVER;
    }
    return n;
  });
}

const MiB = 1024 * 1024;

const envSchema = z.object({
  FACESEARCH_MODE: oneOf(['embedded', 'distributed'] as const),
  BLOB_STORE: oneOf(['fs', 's3'] as const),
  VECTOR_STORE: oneOf(['sqlite', 'qdrant'] as const),
  LIBRARY_STORE: oneOf(['sqlite', 'redis'] as const),
  QUEUE: oneOf(['memory', 'bullmq'] as const),
  ENGINE: oneOf(['local', 'grpc'] as const),
  PORT: int(3000, 1, 65535),
  HOST: raw.transform((v) => v ?? '127.0.0.1'),
  DATA_DIR: raw.transform((v) => v ?? './data'),
  REDIS_URL: url(['redis:', 'rediss:']),
  S3_ENDPOINT: url(['http:', 'https:']),
  S3_ACCESS_KEY: optionalString,
  S3_SECRET_KEY: optionalString,
  S3_BUCKET: raw.transform((v) => v ?? 'facesearch'),
  S3_REGION: raw.transform((v) => v ?? 'us-east-1'),
  QDRANT_URL: url(['http:', 'https:']),
  QDRANT_COLLECTION: raw.transform((v) => v ?? 'faces'),
  // Qdrant's own limits: ef_construct >= 4; m 0 is no graph (every search scans).
  QDRANT_HNSW_M: optionalInt(0, 512),
  QDRANT_HNSW_EF_CONSTRUCT: optionalInt(4, 100_000),
  QDRANT_FULL_SCAN_THRESHOLD_KB: optionalInt(10, 100_000_000),
  QDRANT_SEARCH_EF: optionalInt(1, 100_000),
  QDRANT_QUANTIZATION: oneOf(['none', 'int8'] as const),
  QDRANT_VECTOR_DATATYPE: oneOf(['float32', 'float16'] as const),
  DETECTOR_GRPC_URL: hostPortList,
  EMBEDDER_GRPC_URL: hostPortList,
  GRPC_PORT: int(50051, 0, 65535),
  METRICS_PORT: optionalInt(0, 65535),
  ADMIN_API_KEY: secret(16),
  DEFAULT_APP_API_KEY: secret(16),
  MODEL_DIR: optionalString,
  DETECTOR_MANIFEST: optionalString,
  EMBEDDER_MANIFEST: optionalString,
  MAX_IMAGE_BYTES: int(20 * MiB, 1024, 1024 * MiB),
  MAX_IMAGE_PIXELS: int(50_000_000, 10_000, 1_000_000_000),
  ENGINE_PREVIEW_MAX_SIDE: intOrZero(512, 256, 1536),
  LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
  MATCH_COSINE_THRESHOLD: num(null, 0.01, 0.99),
  MAX_REQUEST_BYTES: int(100 * MiB, 1024, 4096 * MiB),
  MAX_FACES_PER_USER: int(20, 1, 1000),
  ENGINE_WORKERS: intOrAuto(0, 64),
  IMPORT_CONCURRENCY: intOrAuto(1, 256),
  IMPORT_HANDOFF_BYTES: int(64 * MiB, 0, 16_384 * MiB),
  IMPORT_EMBED: oneOf(['queue', 'inline'] as const),
  EMBED_CONCURRENCY: int(2, 1, 256),
  INDEX_CONCURRENCY: int(64, 1, 4096),
  INDEX_BATCH_SIZE: int(64, 1, 1024),
  INDEX_BATCH_WAIT_MS: int(50, 0, 10_000),
  JOB_ATTEMPTS: int(3, 1, 100),
  SHUTDOWN_TIMEOUT_MS: int(30_000, 100, 600_000),
  JOB_LOCK_MS: int(30_000, 1000, 600_000),
  MAX_QUEUED_ITEMS: int(100_000, 0, 100_000_000),
  MAX_CONCURRENT_ANALYSES: int(32, 0, 10_000),
  REDIS_PREFIX: raw.transform((v, ctx) => {
    if (v === undefined) return 'facesearch';
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(v)) {
      ctx.addIssue({ code: 'custom', message: `expected 1-64 letters, digits, '_', '.' or '-', got '${v}'` });
      return z.NEVER;
    }
    return v;
  }),
  RATE_LIMIT_PER_MINUTE: int(0, 0, 1_000_000),
  AUTH_KEY_CACHE_MS: int(5_000, 0, 300_000),
  UPLOAD_SIGNING_SECRET: secret(16),
  PUBLIC_URL: url(['http:', 'https:']),
});

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Validates the environment; throws ConfigError listing every bad or missing variable. */
export function loadConfig(
  env: NodeJS.ProcessEnv | Record<string, string | undefined> = process.env,
): FaceSearchConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  const mode: Mode = e.FACESEARCH_MODE ?? 'embedded';
  const engineWorkers = e.ENGINE_WORKERS === 'auto' ? availableCpus() : e.ENGINE_WORKERS;
  const defaults = MODE_DEFAULTS[mode];
  const config: FaceSearchConfig = {
    mode,
    blobStore: e.BLOB_STORE ?? defaults.blobStore,
    vectorStore: e.VECTOR_STORE ?? defaults.vectorStore,
    libraryStore: e.LIBRARY_STORE ?? defaults.libraryStore,
    queue: e.QUEUE ?? defaults.queue,
    engine: e.ENGINE ?? defaults.engine,
    port: e.PORT,
    host: e.HOST,
    dataDir: e.DATA_DIR,
    redisUrl: e.REDIS_URL,
    s3: {
      endpoint: e.S3_ENDPOINT,
      accessKey: e.S3_ACCESS_KEY,
      secretKey: e.S3_SECRET_KEY,
      bucket: e.S3_BUCKET,
      region: e.S3_REGION,
    },
    qdrantUrl: e.QDRANT_URL,
    qdrantCollection: e.QDRANT_COLLECTION,
    qdrantHnswM: e.QDRANT_HNSW_M,
    qdrantHnswEfConstruct: e.QDRANT_HNSW_EF_CONSTRUCT,
    qdrantFullScanThresholdKb: e.QDRANT_FULL_SCAN_THRESHOLD_KB,
    qdrantSearchEf: e.QDRANT_SEARCH_EF,
    qdrantQuantization: e.QDRANT_QUANTIZATION ?? null,
    qdrantVectorDatatype: e.QDRANT_VECTOR_DATATYPE ?? null,
    detectorGrpcUrls: e.DETECTOR_GRPC_URL,
    embedderGrpcUrls: e.EMBEDDER_GRPC_URL,
    grpcPort: e.GRPC_PORT,
    metricsPort: e.METRICS_PORT,
    adminApiKey: e.ADMIN_API_KEY,
    defaultAppApiKey: e.DEFAULT_APP_API_KEY,
    modelDir: e.MODEL_DIR,
    detectorManifest: e.DETECTOR_MANIFEST,
    embedderManifest: e.EMBEDDER_MANIFEST,
    maxImageBytes: e.MAX_IMAGE_BYTES,
    maxImagePixels: e.MAX_IMAGE_PIXELS,
    enginePreviewMaxSide: e.ENGINE_PREVIEW_MAX_SIDE,
    logLevel: e.LOG_LEVEL ?? 'info',
    matchCosineThreshold: e.MATCH_COSINE_THRESHOLD,
    maxRequestBytes: e.MAX_REQUEST_BYTES,
    maxFacesPerUser: e.MAX_FACES_PER_USER,
    engineWorkers,
    // Three items per engine thread keep each thread busy while the others' images load, decode and get stored
    // (bench:import: 0.75 of the raw rate at 2 items, 0.87-0.89 at 6, on 2 threads).
    importConcurrency: e.IMPORT_CONCURRENCY === 'auto' ? Math.max(2, 3 * engineWorkers) : e.IMPORT_CONCURRENCY,
    importHandoffBytes: e.IMPORT_HANDOFF_BYTES,
    importEmbed: e.IMPORT_EMBED ?? (mode === 'embedded' ? 'inline' : 'queue'),
    embedConcurrency: e.EMBED_CONCURRENCY,
    indexConcurrency: e.INDEX_CONCURRENCY,
    indexBatchSize: e.INDEX_BATCH_SIZE,
    indexBatchWaitMs: e.INDEX_BATCH_WAIT_MS,
    jobAttempts: e.JOB_ATTEMPTS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    jobLockMs: e.JOB_LOCK_MS,
    maxQueuedItems: e.MAX_QUEUED_ITEMS,
    maxConcurrentAnalyses: e.MAX_CONCURRENT_ANALYSES,
    redisPrefix: e.REDIS_PREFIX,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    authKeyCacheMs: e.AUTH_KEY_CACHE_MS,
    uploadSigningSecret: e.UPLOAD_SIGNING_SECRET,
    publicUrl: e.PUBLIC_URL,
  };

  // What each chosen implementation cannot run without.
  const problems: string[] = [];
  const needs = (ok: unknown, variable: string, why: string) => {
    if (!ok) problems.push(`${variable}: required ${why}`);
  };
  needs(config.redisUrl || config.queue !== 'bullmq', 'REDIS_URL', 'when QUEUE=bullmq');
  needs(config.redisUrl || config.libraryStore !== 'redis', 'REDIS_URL', 'when LIBRARY_STORE=redis');
  if (config.blobStore === 's3') {
    needs(config.s3.endpoint, 'S3_ENDPOINT', 'when BLOB_STORE=s3');
    needs(config.s3.accessKey, 'S3_ACCESS_KEY', 'when BLOB_STORE=s3');
    needs(config.s3.secretKey, 'S3_SECRET_KEY', 'when BLOB_STORE=s3');
  }
  needs(config.qdrantUrl || config.vectorStore !== 'qdrant', 'QDRANT_URL', 'when VECTOR_STORE=qdrant');
  needs(config.detectorGrpcUrls.length > 0 || config.engine !== 'grpc', 'DETECTOR_GRPC_URL', 'when ENGINE=grpc');
  // EMBEDDER_GRPC_URL may be unset with ENGINE=grpc: the detector services then embed too (Detector.Analyze).
  // An in-process queue cannot be shared by several processes, so it only works next to a local engine.
  if (config.queue === 'memory' && config.mode === 'distributed') {
    problems.push('QUEUE: memory is an in-process queue; distributed mode needs QUEUE=bullmq');
  }
  if (config.adminApiKey && config.adminApiKey === config.defaultAppApiKey) {
    problems.push('DEFAULT_APP_API_KEY: must differ from ADMIN_API_KEY');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
