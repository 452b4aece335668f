import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { FsBlobStore, MemoryJobQueue, SqliteLibraryRepository, SqliteVecVectorStore } from '@facesearch/adapters';
import { type FaceAnalyzer, type FaceSearchConfig, loadConfig } from '@facesearch/common';
import type { DeleteJob, EmbedJob, ImportJob, IndexJob } from '@facesearch/core';
import type { Ports } from '@facesearch/runtime';
import pino, { type Logger } from 'pino';
import { createGateway, type Gateway } from '../src/gateway';

const quiet = { error() {}, warn() {} };

export const ADMIN_KEY = 'admin-key-for-tests-0001';
export const DEFAULT_KEY = 'default-key-for-tests-01';

/** The shared test photos (faces/, multi/, bad/, ...) and the ONNX models of `pnpm models`. */
export const TESTDATA = resolve(__dirname, '../../../../shared/testdata');
export const MODELS = resolve(__dirname, '../../../models');
export const haveModels = (): boolean => existsSync(MODELS) && readdirSync(MODELS).some((f) => f.endsWith('.onnx'));
export const photo = (rel: string): Buffer => readFileSync(join(TESTDATA, rel));

/** Why the tests on the real engine and the shared photos cannot run here, or null. */
export function engineSkipReason(): string | null {
  if (!existsSync(join(TESTDATA, 'faces'))) return `test photos not found at ${TESTDATA}`;
  if (!haveModels()) return `no .onnx models in ${MODELS} (run pnpm models)`;
  return null;
}

/** Embedded adapters in a temp DATA_DIR, with the given analyzer (a fake, or the real engine). */
export async function embeddedPorts(dataDir: string, analyzer: FaceAnalyzer): Promise<Ports> {
  const library = new SqliteLibraryRepository(join(dataDir, 'facesearch.db'));
  const vectors = new SqliteVecVectorStore({ database: library.db });
  await vectors.init(analyzer.embeddingDim);
  return {
    library,
    vectors,
    blobs: new FsBlobStore(join(dataDir, 'blobs')),
    queues: {
      imports: new MemoryJobQueue<ImportJob>('imports', { attempts: 2, backoffMs: 5, logger: quiet }),
      embed: new MemoryJobQueue<EmbedJob>('embed', { attempts: 2, backoffMs: 5, logger: quiet }),
      index: new MemoryJobQueue<IndexJob>('index', { attempts: 2, backoffMs: 5, logger: quiet }),
      deletes: new MemoryJobQueue<DeleteJob>('deletes', { attempts: 2, backoffMs: 5, logger: quiet }),
    },
    analyzer,
  };
}

export interface TestGateway extends Gateway {
  config: FaceSearchConfig;
  dataDir: string;
  dispose(): Promise<void>;
}

export async function startTestGateway(
  env: Record<string, string>,
  analyzer?: FaceAnalyzer,
  logger: Logger = pino({ level: 'silent' }),
): Promise<TestGateway> {
  const dataDir = mkdtempSync(join(tmpdir(), 'facesearch-gw-'));
  const config = loadConfig({
    DATA_DIR: dataDir,
    ADMIN_API_KEY: ADMIN_KEY,
    DEFAULT_APP_API_KEY: DEFAULT_KEY,
    LOG_LEVEL: 'silent',
    ...env,
  });
  const ports = analyzer ? await embeddedPorts(dataDir, analyzer) : undefined;
  const gateway = await createGateway(config, { ports, logger });
  return {
    ...gateway,
    config,
    dataDir,
    async dispose() {
      await gateway.close(); // closes the ports too
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
