import { FaceSearchError, resolveThreadScript, ThreadPool, type ThreadPoolOptions } from '@facesearch/common';
import { afterEach, describe, expect, it } from 'vitest';

type Request =
  | { op: 'echo'; value: unknown }
  | { op: 'sleep'; ms: number }
  | { op: 'sleepThenMark'; ms: number; marks: Int32Array; slot: number }
  | { op: 'spin'; ms: number }
  | { op: 'fail'; code: string; status: number }
  | { op: 'failPlain'; code: string }
  | { op: 'function' };

const script = resolveThreadScript(__dirname, 'thread-pool-fixture.js', '.');
const unavailable = (why: string) => new FaceSearchError('test_unavailable', `Test pool: ${why}`, 503, true);

/** starts[0]: start-ups so far; starts[1]: start-ups allowed (0: any). */
function counters(limit = 0): Int32Array {
  const starts = new Int32Array(new SharedArrayBuffer(8));
  starts[1] = limit;
  return starts;
}

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('ThreadPool', () => {
  const pools: Array<ThreadPool<Request, unknown, { started: number }>> = [];
  const start = async (options: Partial<ThreadPoolOptions> & { workerData?: object } = {}) => {
    const pool = await ThreadPool.start<Request, unknown, { started: number }>({
      script,
      threads: 2,
      unavailable,
      ...options,
      workerData: { starts: counters(), ...options.workerData },
    });
    pools.push(pool);
    return pool;
  };
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });

  it('answers calls on every thread and reports the first thread ready info', async () => {
    const pool = await start({ threads: 2, callsPerThread: 1 });
    expect(pool.size).toBe(2);
    expect([1, 2]).toContain(pool.info.started);
    expect(await pool.call({ op: 'echo', value: { a: [1, 2], bytes: new Uint8Array([7]) } })).toEqual({
      a: [1, 2],
      bytes: new Uint8Array([7]),
    });
    // One call per thread at once: the third waits here until a thread is free, then runs.
    const calls = Array.from({ length: 3 }, () => pool.call({ op: 'sleep', ms: 30 }));
    expect([...pool.threads].map((t) => t.inFlight.size)).toEqual([1, 1]);
    const answeredBy = await Promise.all(calls);
    expect(new Set(answeredBy.slice(0, 2))).toEqual(new Set([1, 2]));
  });

  it('passes errors through: FaceSearchError with code, status and retry hints; a plain error with its code', async () => {
    const pool = await start({ threads: 1 });
    const err = await pool.call({ op: 'fail', code: 'image_corrupt', status: 422 }).catch((e) => e);
    expect(err).toBeInstanceOf(FaceSearchError);
    expect(err).toMatchObject({ code: 'image_corrupt', status: 422, retryable: true, retryAfterSeconds: 7 });
    const plain = await pool.call({ op: 'failPlain', code: 'SQLITE_BUSY' }).catch((e) => e);
    expect(plain).not.toBeInstanceOf(FaceSearchError);
    expect(plain).toMatchObject({ message: 'busy', code: 'SQLITE_BUSY' });
    await expect(pool.call({ op: 'echo', value: () => 1 })).rejects.toThrow(/could not be cloned/);
    await expect(pool.call({ op: 'function' })).rejects.toThrow(/could not be cloned/);
    expect(await pool.call({ op: 'echo', value: 'still here' })).toBe('still here');
  });

  it('fails only the calls of a killed thread (unavailable), replaces it at once, and goes on', async () => {
    const pool = await start({ threads: 2 });
    const [first] = [...pool.threads];
    // Least busy first, the first thread on a tie: calls 0 and 2 go to the first thread, 1 and 3 to the second.
    const calls = Array.from({ length: 4 }, () => pool.call({ op: 'sleep', ms: 200 }));
    expect(first.inFlight.size).toBe(2);
    void first.worker.terminate();
    const settled = await Promise.allSettled(calls);
    for (const i of [0, 2]) {
      expect((settled[i] as PromiseRejectedResult).reason).toMatchObject({
        code: 'test_unavailable',
        status: 503,
        retryable: true,
      });
    }
    for (const i of [1, 3]) expect(settled[i].status).toBe('fulfilled');
    await until(() => pool.size === 2);
    expect([...pool.threads].map((t) => t.worker)).not.toContain(first.worker);
    expect(await Promise.all([1, 2].map((value) => pool.call({ op: 'echo', value })))).toEqual([1, 2]);
  });

  it('retries a replacement that cannot start after respawnDelayMs, failing calls meanwhile', async () => {
    const starts = counters(1);
    const pool = await start({ threads: 1, respawnDelayMs: 20, workerData: { starts } });
    const [only] = [...pool.threads];
    await only.worker.terminate();
    // The replacement fails to start; calls that waited for it fail rather than wait for the next try.
    const waited = pool.call({ op: 'echo', value: 1 }).catch((e) => e);
    await until(() => Atomics.load(starts, 0) >= 3);
    expect(await waited).toMatchObject({ code: 'test_unavailable' });
    expect(pool.size).toBe(0);
    Atomics.store(starts, 1, 0); // the next try succeeds
    await until(() => pool.size === 1);
    expect(await pool.call({ op: 'echo', value: 'back' })).toBe('back');
  });

  it('refuses to start when a thread fails to start, with the thread error', async () => {
    const err = await start({ threads: 2, workerData: { starts: counters(1) } }).catch((e) => e);
    expect(err).toBeInstanceOf(FaceSearchError);
    expect(err).toMatchObject({ code: 'model_missing', status: 503 });
    await expect(start({ threads: 1, workerData: { exitAtStart: true } })).rejects.toThrow(/exit code 3/);
    await expect(start({ threads: 0 })).rejects.toThrow(/at least one thread/);
  });

  it('close fails waiting and in-flight calls, and later calls', async () => {
    // A call still running after closeGraceMs gets its thread terminated.
    const pool = await start({ threads: 1, callsPerThread: 1, closeGraceMs: 100 });
    const inFlight = expect(pool.call({ op: 'sleep', ms: 60_000 })).rejects.toMatchObject({ code: 'test_unavailable' });
    const waiting = expect(pool.call({ op: 'sleep', ms: 60_000 })).rejects.toMatchObject({ code: 'test_unavailable' });
    expect([...pool.threads][0].inFlight.size).toBe(1);
    await pool.close();
    await Promise.all([inFlight, waiting]);
    await expect(pool.call({ op: 'echo', value: 1 })).rejects.toMatchObject({ code: 'test_unavailable' });
    expect(pool.threads.size).toBe(0);
  });

  it('close tells callers at once but lets each thread finish the calls it is running before it exits', async () => {
    // Terminating a thread in the middle of native work (an ONNX run) aborts the process; see CLOSE_GRACE_MS.
    const pool = await start({ threads: 2, callsPerThread: 1 });
    const marks = new Int32Array(new SharedArrayBuffer(8));
    const calls = [0, 1].map((slot) => pool.call({ op: 'sleepThenMark', ms: 300, marks, slot }));
    const answers = calls.map((call) =>
      call.then(
        () => 'answered',
        (err) => [err.code, Atomics.load(marks, 0)],
      ),
    );
    await until(() => [...pool.threads].every((t) => t.inFlight.size === 1));
    const started = Date.now();
    await pool.close();
    // The callers were failed before the work finished; the threads exited only after it had.
    expect(await Promise.all(answers)).toEqual([
      ['test_unavailable', 0],
      ['test_unavailable', 0],
    ]);
    expect([...marks]).toEqual([1, 1]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    expect(pool.threads.size).toBe(0);
  });

  it('close terminates a thread still busy after closeGraceMs', async () => {
    const pool = await start({ threads: 1, closeGraceMs: 200 });
    const call = expect(pool.call({ op: 'spin', ms: 60_000 })).rejects.toMatchObject({ code: 'test_unavailable' });
    await until(() => [...pool.threads][0]?.inFlight.size === 1);
    await new Promise((r) => setTimeout(r, 50)); // the thread is inside the loop
    const started = Date.now();
    await pool.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    await call;
  });

  it('finds a thread script beside the caller or in its dist directory', () => {
    expect(resolveThreadScript('/nonexistent', 'thread-pool-fixture.js', __dirname)).toBe(script);
    expect(() => resolveThreadScript(__dirname, 'missing.js', '../dist')).toThrow(/missing\.js not found/);
  });
});
