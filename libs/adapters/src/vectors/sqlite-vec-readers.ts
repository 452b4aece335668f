import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { FaceSearchError, type VectorHit } from '@facesearch/common';
import type { KnnQuery, SearchCall, SearchReply, SearchWorkerData, SerializedError } from './sqlite-vec-knn';

export interface SqliteVecReaderPoolOptions extends SearchWorkerData {
  threads: number;
  /** Wait before starting a thread again after one failed to start, so a broken file does not spin. Default 1000. */
  respawnDelayMs?: number;
}

type PendingSearch = { resolve: (hits: VectorHit[]) => void; reject: (error: Error) => void };

interface ReaderThread {
  worker: Worker;
  inFlight: Map<number, PendingSearch>;
  ready: boolean;
  /** Settles when the thread has opened its connection, or failed to. */
  started: Promise<void>;
}

/**
 * Reader threads for SqliteVecVectorStore's KNN searches, each with its own read-only connection to the database
 * file. A search goes to the thread with the fewest searches in flight (a thread still starting queues them until
 * its connection is open). A thread that dies fails only its own searches (503 vector_store_unavailable,
 * retryable) and is replaced.
 */
export class SqliteVecReaderPool {
  private readonly threads = new Set<ReaderThread>();
  private nextId = 1;
  private closed = false;

  private constructor(private readonly options: SqliteVecReaderPoolOptions) {}

  /** Starts the threads and waits until each has its connection open; throws (and stops them) if one cannot. */
  static async start(options: SqliteVecReaderPoolOptions): Promise<SqliteVecReaderPool> {
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new Error(`SqliteVecReaderPool needs at least one thread, got ${options.threads}`);
    }
    const pool = new SqliteVecReaderPool(options);
    const threads = Array.from({ length: options.threads }, () => pool.spawn());
    const started = await Promise.allSettled(threads.map((t) => t.started));
    const failure = started.find((s) => s.status === 'rejected');
    if (failure) {
      await pool.close();
      throw failure.reason;
    }
    return pool;
  }

  /** Reader threads alive (started or starting). */
  get size(): number {
    return this.threads.size;
  }

  search(query: KnnQuery): Promise<VectorHit[]> {
    if (this.closed) return Promise.reject(unavailable('the vector store is closing'));
    let best: ReaderThread | undefined;
    for (const t of this.threads) {
      const fewer = !best || t.inFlight.size < best.inFlight.size;
      const tieButReady = best && t.inFlight.size === best.inFlight.size && t.ready && !best.ready;
      if (fewer || tieButReady) best = t;
    }
    if (!best) return Promise.reject(unavailable('no vector search thread is running'));
    const thread = best;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      thread.inFlight.set(id, { resolve, reject });
      thread.worker.postMessage({ ...query, id } satisfies SearchCall);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const threads = [...this.threads];
    this.threads.clear();
    await Promise.all(
      threads.map(async (thread) => {
        failAll(thread, unavailable('the vector store is closing'));
        await thread.worker.terminate();
      }),
    );
  }

  private spawn(): ReaderThread {
    const { path, table } = this.options;
    const worker = new Worker(workerScript(), { workerData: { path, table } satisfies SearchWorkerData });
    let markStarted: () => void = () => {};
    let markFailed: (error: Error) => void = () => {};
    const started = new Promise<void>((resolve, reject) => {
      markStarted = resolve;
      markFailed = reject;
    });
    started.catch(() => {}); // Read by start() only; a replacement's failure is handled on 'exit'.
    const thread: ReaderThread = { worker, inFlight: new Map(), ready: false, started };
    this.threads.add(thread);
    let failure: Error | undefined;

    worker.on('message', (reply: SearchReply) => {
      if (reply.type === 'ready') {
        thread.ready = true;
        markStarted();
      } else if (reply.type === 'failed') {
        failure = new Error(`vector search thread could not open ${path}: ${reply.error.message}`);
      } else {
        const call = thread.inFlight.get(reply.id);
        if (!call) return;
        thread.inFlight.delete(reply.id);
        if (reply.type === 'result') call.resolve(reply.hits);
        else call.reject(deserializeError(reply.error));
      }
    });
    worker.on('error', (err) => {
      // 'exit' follows and does the cleanup; without a listener the error would crash the process.
      failure ??= err;
    });
    worker.once('exit', (code) => {
      this.threads.delete(thread);
      const wasReady = thread.ready;
      thread.ready = false;
      markFailed(failure ?? new Error(`vector search thread exited during start-up (code ${code})`));
      failAll(thread, unavailable(`a vector search thread stopped (exit code ${code})`));
      // A thread that worked is replaced at once (searches queue in it while it opens its connection); one that
      // could not start is retried after a pause, so a broken file does not spin.
      if (wasReady) this.replaceNow();
      else this.replaceLater();
    });
    return thread;
  }

  private replaceNow(): void {
    if (this.closed) return;
    try {
      this.spawn();
    } catch {
      this.replaceLater();
    }
  }

  private replaceLater(): void {
    const timer = setTimeout(() => this.replaceNow(), this.options.respawnDelayMs ?? 1000);
    timer.unref();
  }
}

function failAll(thread: ReaderThread, error: FaceSearchError): void {
  for (const call of thread.inFlight.values()) call.reject(error);
  thread.inFlight.clear();
}

function unavailable(why: string): FaceSearchError {
  return new FaceSearchError('vector_store_unavailable', `SQLite vector search: ${why}; retry.`, 503, true);
}

/** A query error inside the thread (e.g. SQLITE_BUSY), with its message and code as the in-thread search has them. */
function deserializeError(error: SerializedError): Error {
  return Object.assign(new Error(error.message), error.code === undefined ? {} : { code: error.code });
}

const WORKER_FILE = 'sqlite-vec-search-worker.js';

/** The compiled thread script; tests run this file from src/ (through an alias), the build lives in dist/. */
function workerScript(): string {
  for (const candidate of [join(__dirname, WORKER_FILE), join(__dirname, '..', '..', 'dist', 'vectors', WORKER_FILE)]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`${WORKER_FILE} not found beside ${__dirname} or in ../../dist/vectors: build @facesearch/adapters`);
}
