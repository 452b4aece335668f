import { FaceSearchError, type PoolThread, resolveThreadScript, ThreadPool, type VectorHit } from '@facesearch/common';
import type { KnnQuery, SearchWorkerData } from './sqlite-vec-knn';

export interface SqliteVecReaderPoolOptions extends SearchWorkerData {
  threads: number;
  /** Wait before starting a thread again after one failed to start, so a broken file does not spin. Default 1000. */
  respawnDelayMs?: number;
}

/**
 * Reader threads for SqliteVecVectorStore's KNN searches (sqlite-vec-search-worker.ts), each with its own
 * read-only connection to the database file. A search goes to the thread with the fewest searches in flight. A
 * thread that dies fails only its own searches (503 vector_store_unavailable, retryable) and is replaced.
 */
export class SqliteVecReaderPool {
  private constructor(private readonly pool: ThreadPool<KnnQuery, VectorHit[]>) {}

  /** Starts the threads and waits until each has its connection open; throws (and stops them) if one cannot. */
  static async start(options: SqliteVecReaderPoolOptions): Promise<SqliteVecReaderPool> {
    const { path, table, threads, respawnDelayMs } = options;
    const pool = await ThreadPool.start<KnnQuery, VectorHit[]>({
      script: resolveThreadScript(__dirname, 'sqlite-vec-search-worker.js', '../../dist/vectors'),
      workerData: { path, table } satisfies SearchWorkerData,
      threads,
      respawnDelayMs,
      unavailable: (why) =>
        new FaceSearchError('vector_store_unavailable', `SQLite vector search: ${why}; retry.`, 503, true),
    });
    return new SqliteVecReaderPool(pool);
  }

  /** Reader threads ready now. */
  get size(): number {
    return this.pool.size;
  }

  /** Reader threads alive now, ready or starting (read-only; tests kill one as a crash would). */
  get threads(): ReadonlySet<PoolThread> {
    return this.pool.threads;
  }

  /** A query error inside the thread (e.g. SQLITE_BUSY) keeps its message and `code`. */
  search(query: KnnQuery): Promise<VectorHit[]> {
    return this.pool.call(query);
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
