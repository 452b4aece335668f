/**
 * A pool of worker threads that each open their own resources (ONNX sessions, a read-only SQLite connection) and
 * answer calls, so synchronous native work runs off the caller's event loop. The main-thread side is ThreadPool;
 * the thread script calls serveThread. Imports only ./errors, so a thread script can load this file alone
 * (`@facesearch/common/dist/thread-pool`) without the config schema's dependencies.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parentPort, Worker, workerData } from 'node:worker_threads';
import { FaceSearchError } from './errors';

export interface ThreadPoolOptions {
  /** The compiled thread script (see resolveThreadScript); it calls serveThread. */
  script: string;
  /** Handed to serveThread's open function in every thread (structured clone). */
  workerData?: unknown;
  threads: number;
  /** Calls one thread holds at once; more wait here, in order. Default: no limit. */
  callsPerThread?: number;
  /** Wait before starting a thread again after one failed to start, so a broken set-up does not spin. Default 1000. */
  respawnDelayMs?: number;
  /** The error for calls that fail because no thread can answer them (503, retryable), e.g. engine_unavailable. */
  unavailable: (why: string) => FaceSearchError;
  /** How long close() lets a thread finish the calls it is running before terminating it. Default CLOSE_GRACE_MS. */
  closeGraceMs?: number;
}

/** A live thread, as tests and diagnostics may look at it. */
export interface PoolThread {
  readonly worker: Worker;
  readonly inFlight: ReadonlyMap<number, unknown>;
  /** False while the thread opens its resources. */
  readonly ready: boolean;
}

/** What a thread's open function returns: its ready info (the same in every thread) and its call handler. */
export interface ThreadService<Request, Result, Info> {
  info: Info;
  handle(request: Request): Result | Promise<Result>;
}

/** An error as it crosses the thread boundary. */
export interface SerializedError {
  message: string;
  name?: string;
  /** FaceSearchError's code, or a plain error's string `code` (e.g. SQLITE_BUSY). */
  code?: string;
  /** Set for FaceSearchError only: rebuilt as one, so codes and statuses reach the API unchanged. */
  faceSearch?: { status: number; retryable: boolean; retryAfterSeconds?: number };
}

type ThreadCall<Request> = { id: number; request: Request };
/** Sent by close(): the thread exits once the calls it is running have finished. */
type ThreadClose = { close: true };

/**
 * How long close() lets a thread finish the calls it is running before terminating it. Terminating a thread in the
 * middle of native work aborts the whole process (onnxruntime-node then throws a Napi::Error nothing catches);
 * a model call takes tens of milliseconds.
 */
const CLOSE_GRACE_MS = 10_000;

type ThreadReply<Result, Info> =
  | { type: 'ready'; info: Info }
  | { type: 'failed'; error: SerializedError }
  | { type: 'result'; id: number; result: Result }
  | { type: 'error'; id: number; error: SerializedError };

type PendingCall<Request, Result> = {
  id: number;
  request: Request;
  /** Moved to the thread instead of copied; the caller no longer reads them. */
  transfer: ArrayBuffer[];
  resolve: (result: Result) => void;
  reject: (error: Error) => void;
};

interface LiveThread<Request, Result> extends PoolThread {
  inFlight: Map<number, PendingCall<Request, Result>>;
  ready: boolean;
}

/**
 * Threads running one script. A call goes to the ready thread with the fewest calls in flight (the first on a
 * tie), up to `callsPerThread` each; the rest wait here. A thread that dies fails only its own calls (`unavailable`)
 * and is replaced at once; a replacement that cannot start is tried again after `respawnDelayMs`, and while no
 * thread is ready then, waiting calls fail rather than wait for it.
 */
export class ThreadPool<Request, Result, Info = undefined> {
  private readonly live = new Set<LiveThread<Request, Result>>();
  private readonly waiting: PendingCall<Request, Result>[] = [];
  private readonly callsPerThread: number;
  private firstInfo: Info | undefined;
  private nextId = 1;
  /** False until start() has every thread ready: a thread that fails to start before then fails the start. */
  private running = false;
  private closing: Promise<void> | null = null;

  private constructor(private readonly options: ThreadPoolOptions) {
    this.callsPerThread = options.callsPerThread ?? Number.POSITIVE_INFINITY;
  }

  /** Starts the threads and waits until each is ready; if one fails, stops them all and throws its error. */
  static async start<Request, Result, Info = undefined>(
    options: ThreadPoolOptions,
  ): Promise<ThreadPool<Request, Result, Info>> {
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new Error(`A thread pool needs at least one thread, got ${options.threads}`);
    }
    const cap = options.callsPerThread;
    if (cap !== undefined && !(Number.isInteger(cap) && cap >= 1)) {
      throw new Error(`callsPerThread must be a positive integer, got ${cap}`);
    }
    const pool = new ThreadPool<Request, Result, Info>(options);
    const started = await Promise.allSettled(Array.from({ length: options.threads }, () => pool.spawn()));
    const failure = started.find((s) => s.status === 'rejected');
    if (failure) {
      await pool.close();
      throw failure.reason;
    }
    pool.firstInfo = (started[0] as PromiseFulfilledResult<Info>).value;
    pool.running = true;
    return pool;
  }

  /** The first thread's ready info (e.g. the engine's model ids). */
  get info(): Info {
    return this.firstInfo as Info;
  }

  /** Threads ready now. */
  get size(): number {
    let n = 0;
    for (const t of this.live) if (t.ready) n++;
    return n;
  }

  /** Threads alive now, ready or starting (read-only; tests kill one as a crash would). */
  get threads(): ReadonlySet<PoolThread> {
    return this.live;
  }

  /** Runs `request` on a thread. `transfer`: buffers the request holds that move there instead of being copied. */
  call(request: Request, transfer: ArrayBuffer[] = []): Promise<Result> {
    if (this.closing) return Promise.reject(this.options.unavailable('shutting down'));
    if (this.live.size === 0) return Promise.reject(this.options.unavailable('no thread is running'));
    return new Promise((resolve, reject) => {
      this.waiting.push({ id: this.nextId++, request, transfer, resolve, reject });
      this.dispatch();
    });
  }

  /**
   * Fails waiting and in-flight calls (`unavailable`) at once and stops the threads, each after the native work it is
   * doing (see CLOSE_GRACE_MS).
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const error = this.options.unavailable('shutting down');
    for (const call of this.waiting.splice(0)) call.reject(error);
    const threads = [...this.live];
    this.live.clear();
    await Promise.all(
      threads.map(async (thread) => {
        failInFlight(thread, error);
        await stopThread(thread.worker, this.options.closeGraceMs ?? CLOSE_GRACE_MS);
      }),
    );
  }

  /** Hands waiting calls to the least busy ready threads, up to callsPerThread each. */
  private dispatch(): void {
    while (this.waiting.length > 0) {
      let best: LiveThread<Request, Result> | undefined;
      for (const t of this.live) {
        if (t.ready && t.inFlight.size < this.callsPerThread && (!best || t.inFlight.size < best.inFlight.size)) {
          best = t;
        }
      }
      if (!best) return;
      const call = this.waiting.shift() as PendingCall<Request, Result>;
      best.inFlight.set(call.id, call);
      try {
        best.worker.postMessage({ id: call.id, request: call.request } satisfies ThreadCall<Request>, call.transfer);
      } catch (err) {
        best.inFlight.delete(call.id); // e.g. a request that cannot be cloned
        call.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  /** Starts one thread; the promise settles when it is ready (its info) or has failed to start. */
  private spawn(): Promise<Info> {
    const worker = new Worker(this.options.script, { workerData: this.options.workerData });
    const thread: LiveThread<Request, Result> = { worker, inFlight: new Map(), ready: false };
    this.live.add(thread);
    let failure: Error | undefined;
    return new Promise<Info>((resolveStart, rejectStart) => {
      worker.on('message', (reply: ThreadReply<Result, Info>) => {
        if (reply.type === 'ready') {
          thread.ready = true;
          resolveStart(reply.info);
          this.dispatch();
        } else if (reply.type === 'failed') {
          failure = deserializeError(reply.error);
          void worker.terminate();
        } else {
          const call = thread.inFlight.get(reply.id);
          if (!call) return;
          thread.inFlight.delete(reply.id);
          if (reply.type === 'result') call.resolve(reply.result);
          else call.reject(deserializeError(reply.error));
          this.dispatch();
        }
      });
      worker.on('error', (err) => {
        // 'exit' follows and cleans up; without a listener the error would crash the process.
        failure ??= err;
      });
      worker.once('exit', (code) => {
        const wasReady = thread.ready;
        thread.ready = false;
        this.live.delete(thread);
        rejectStart(failure ?? new Error(`A pool thread exited during start-up (exit code ${code})`));
        failInFlight(thread, this.options.unavailable(`a thread stopped (exit code ${code})`));
        if (this.closing) return;
        if (wasReady) {
          this.replace();
        } else if (this.running) {
          // A replacement could not start: calls would wait at least respawnDelayMs for the next one.
          if (this.size === 0) this.failWaiting(this.options.unavailable('no thread is running'));
          this.replaceLater();
        }
      });
    });
  }

  /** A thread that worked is replaced at once: calls wait for it while it opens its resources. */
  private replace(): void {
    if (this.closing) return;
    try {
      this.spawn().catch(() => {}); // a failed start is handled on 'exit'
    } catch {
      this.replaceLater();
    }
  }

  private replaceLater(): void {
    setTimeout(() => this.replace(), this.options.respawnDelayMs ?? 1000).unref();
  }

  private failWaiting(error: Error): void {
    for (const call of this.waiting.splice(0)) call.reject(error);
  }
}

/** Asks a thread to exit when its running calls are done; terminates it if it has not after graceMs. */
async function stopThread(worker: Worker, graceMs: number): Promise<void> {
  if (worker.threadId === -1) return; // already exited
  let timer: NodeJS.Timeout | undefined;
  const exited = new Promise<boolean>((resolve) => {
    worker.once('exit', () => resolve(true));
    timer = setTimeout(() => resolve(false), graceMs);
  });
  try {
    worker.postMessage({ close: true } satisfies ThreadClose);
  } catch {
    // The port is gone: only terminate is left.
  }
  const done = await exited;
  clearTimeout(timer);
  if (!done) await worker.terminate();
}

function failInFlight<Request, Result>(thread: LiveThread<Request, Result>, error: Error): void {
  for (const call of thread.inFlight.values()) call.reject(error);
  thread.inFlight.clear();
}

/**
 * The thread side: opens the thread's resources with the pool's workerData, posts ready (or the error that kept
 * it from opening them), then answers calls with `handle`, one reply per call, errors serialised.
 */
export function serveThread<Request, Result, Info = undefined>(
  open: (data: unknown) => ThreadService<Request, Result, Info> | Promise<ThreadService<Request, Result, Info>>,
): void {
  const port = parentPort;
  if (!port) throw new Error('serveThread must run in a worker thread');
  const reply = (message: ThreadReply<Result, Info>) => {
    try {
      port.postMessage(message);
    } catch (err) {
      // e.g. a result that cannot be cloned: the caller still gets an answer.
      if (message.type === 'result') port.postMessage({ type: 'error', id: message.id, error: serializeError(err) });
      else throw err;
    }
  };
  Promise.resolve()
    .then(() => open(workerData))
    .then(
      (service) => {
        let running = 0;
        let closing = false;
        // Exiting between calls, never in the middle of one (see CLOSE_GRACE_MS).
        const exitIfClosed = () => {
          if (closing && running === 0) process.exit(0);
        };
        port.on('message', (message: ThreadCall<Request> | ThreadClose) => {
          if ('close' in message) {
            closing = true;
            exitIfClosed();
            return;
          }
          const { id, request } = message;
          const fail = (err: unknown) => reply({ type: 'error', id, error: serializeError(err) });
          let answer: Result | Promise<Result>;
          try {
            answer = service.handle(request);
          } catch (err) {
            fail(err);
            return;
          }
          if (!isPromiseLike(answer)) {
            reply({ type: 'result', id, result: answer });
            return;
          }
          running++;
          const settled = () => {
            running--;
            exitIfClosed();
          };
          answer.then(
            (result) => {
              reply({ type: 'result', id, result });
              settled();
            },
            (err) => {
              fail(err);
              settled();
            },
          );
        });
        reply({ type: 'ready', info: service.info });
      },
      (err) => {
        reply({ type: 'failed', error: serializeError(err) });
        port.close();
      },
    );
}

function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof FaceSearchError) {
    const { status, retryable, retryAfterSeconds } = err;
    return {
      message: err.message,
      name: err.name,
      code: err.code,
      faceSearch: { status, retryable, retryAfterSeconds },
    };
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { message: err.message, name: err.name, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { message: String(err) };
}

export function deserializeError(error: SerializedError): Error {
  if (error.faceSearch) {
    const { status, retryable, retryAfterSeconds } = error.faceSearch;
    const err = new FaceSearchError(error.code ?? 'internal_error', error.message, status, retryable);
    if (retryAfterSeconds !== undefined) err.retryAfter(retryAfterSeconds);
    return err;
  }
  const err = new Error(error.message);
  if (error.name) err.name = error.name;
  return error.code === undefined ? err : Object.assign(err, { code: error.code });
}

/**
 * The compiled thread script `fileName`: beside `dir` when running from dist/, else in `distDir` (relative to
 * `dir`), for code that tests load from src/ through the vitest alias while the thread script runs compiled.
 */
export function resolveThreadScript(dir: string, fileName: string, distDir: string): string {
  const candidates = [resolve(dir, fileName), resolve(dir, distDir, fileName)];
  const found = candidates.find((candidate) => existsSync(candidate));
  if (!found) throw new Error(`${fileName} not found at ${candidates.join(' or ')}: build its package first`);
  return found;
}
