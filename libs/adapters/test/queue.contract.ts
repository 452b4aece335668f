/**
 * One behaviour for every JobQueue implementation: run against the in-process queue and BullMQ on real Redis.
 */
import { FaceSearchError, type JobContext, type JobQueue } from '@facesearch/common';
import { afterEach, describe, expect, it } from 'vitest';

export interface QueueContractOptions {
  attempts: number;
  backoffMs: number;
}

export interface JobQueueFactory {
  create<T>(options: QueueContractOptions): Promise<JobQueue<T>>;
  /** Closes the queue and removes what it left behind; default: close(). */
  dispose?(queue: JobQueue<unknown>): Promise<void>;
}

interface Payload {
  n: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A promise the test resolves by hand, to hold jobs in the running state. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = () => {};
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

export function describeJobQueueContract(name: string, factory: JobQueueFactory): void {
  describe(`JobQueue contract: ${name}`, () => {
    const opened: JobQueue<unknown>[] = [];

    async function open(options: Partial<QueueContractOptions> = {}): Promise<JobQueue<Payload>> {
      const queue = await factory.create<Payload>({ attempts: 3, backoffMs: 20, ...options });
      opened.push(queue as JobQueue<unknown>);
      return queue;
    }

    afterEach(async () => {
      for (const queue of opened.splice(0)) {
        await (factory.dispose ? factory.dispose(queue) : queue.close());
      }
    });

    it('processes every job exactly once, whatever its id looks like', async () => {
      const queue = await open();
      const seen: number[] = [];
      const ids = ['42', 'imp:7', 'a/b c', ...Array.from({ length: 17 }, (_, i) => `job-${i}`)];
      await queue.add(ids.map((id, n) => ({ id, data: { n } })));
      queue.process(
        async (data) => {
          seen.push(data.n);
        },
        { concurrency: 4 },
      );
      await waitFor('20 completed', async () => (await queue.counts()).completed === 20);
      await sleep(50);
      expect([...seen].sort((a, b) => a - b)).toEqual(ids.map((_, n) => n));
      expect(await queue.counts()).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 0, completed: 20 });
    });

    it('never runs more jobs at once than the concurrency', async () => {
      const queue = await open();
      let current = 0;
      let max = 0;
      let done = 0;
      queue.process(
        async () => {
          current++;
          max = Math.max(max, current);
          await sleep(40);
          current--;
          done++;
        },
        { concurrency: 2 },
      );
      await queue.add(Array.from({ length: 8 }, (_, n) => ({ id: `c${n}`, data: { n } })));
      await waitFor('8 done', () => done === 8);
      expect(max).toBe(2);
    });

    it('retries a failing job with backoff until it succeeds', async () => {
      const queue = await open({ attempts: 3, backoffMs: 60 });
      const calls: Array<JobContext & { at: number }> = [];
      let failed = 0;
      queue.process(
        async (_data, ctx) => {
          calls.push({ ...ctx, at: Date.now() });
          if (ctx.attempt < 3) throw new Error(`transient ${ctx.attempt}`);
        },
        { concurrency: 1, onFailed: async () => void failed++ },
      );
      await queue.add([{ id: 'r1', data: { n: 1 } }]);
      await waitFor('completed', async () => (await queue.counts()).completed === 1);
      expect(calls.map((c) => [c.attempt, c.maxAttempts])).toEqual([
        [1, 3],
        [2, 3],
        [3, 3],
      ]);
      // Exponential: about 60 ms, then about 120 ms (timers may fire a little early).
      expect(calls[1].at - calls[0].at).toBeGreaterThanOrEqual(50);
      expect(calls[2].at - calls[1].at).toBeGreaterThanOrEqual(100);
      expect(failed).toBe(0);
    });

    it('exhausts the attempts on retryable failures, then calls onFailed once', async () => {
      const queue = await open({ attempts: 3 });
      let calls = 0;
      const failures: Array<{ data: Payload; error: unknown }> = [];
      queue.process(
        async () => {
          calls++;
          throw new FaceSearchError('upstream_unavailable', 'embedder down', 503, true);
        },
        { concurrency: 1, onFailed: async (data, error) => void failures.push({ data, error }) },
      );
      await queue.add([{ id: 'x1', data: { n: 7 } }]);
      await waitFor('onFailed', () => failures.length === 1);
      await waitFor('failed count', async () => (await queue.counts()).failed === 1);
      await sleep(150);
      expect(calls).toBe(3);
      expect(failures).toHaveLength(1);
      expect(failures[0].data).toEqual({ n: 7 });
      expect(failures[0].error).toBeInstanceOf(FaceSearchError);
      expect((failures[0].error as FaceSearchError).code).toBe('upstream_unavailable');
      expect(await queue.counts()).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 1, completed: 0 });
    });

    it('fails a non-retryable FaceSearchError at once, with onFailed', async () => {
      const queue = await open({ attempts: 5 });
      let calls = 0;
      const errors: unknown[] = [];
      queue.process(
        async () => {
          calls++;
          throw new FaceSearchError('image_corrupt', 'The image could not be decoded: bad', 422);
        },
        { concurrency: 1, onFailed: async (_data, error) => void errors.push(error) },
      );
      await queue.add([{ id: 'bad', data: { n: 1 } }]);
      await waitFor('onFailed', () => errors.length === 1);
      await sleep(150);
      expect(calls).toBe(1);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ code: 'image_corrupt', status: 422, retryable: false });
      await waitFor('failed count', async () => (await queue.counts()).failed === 1);
    });

    it('dedupes by id while queued or running, and runs a finished id again', async () => {
      const queue = await open();
      const runs: string[] = [];
      const hold = gate();
      // Queued twice, and twice in one batch, before anything runs.
      await queue.add([{ id: 'q', data: { n: 1 } }]);
      await queue.add([
        { id: 'q', data: { n: 2 } },
        { id: 'b', data: { n: 3 } },
        { id: 'b', data: { n: 4 } },
      ]);
      queue.process(
        async (data) => {
          runs.push(`${data.n}`);
          if (data.n === 1) await hold.wait;
        },
        { concurrency: 2 },
      );
      await waitFor('q running', () => runs.includes('1'));
      await queue.add([{ id: 'q', data: { n: 5 } }]); // running: ignored
      hold.open();
      await waitFor('2 completed', async () => (await queue.counts()).completed === 2);
      await sleep(100);
      expect([...runs].sort()).toEqual(['1', '3']);
      await queue.add([{ id: 'q', data: { n: 6 } }]); // finished: runs again
      // Not counts().completed: BullMQ drops the finished record it replaces, the memory queue keeps a total.
      await waitFor('third run', () => runs.length === 3);
      expect(runs[2]).toBe('6');
    });

    it('runs a failed id again when it is added again', async () => {
      const queue = await open({ attempts: 1 });
      const runs: number[] = [];
      queue.process(
        async (data) => {
          runs.push(data.n);
          if (data.n === 1) throw new FaceSearchError('image_corrupt', 'The image could not be decoded: bad', 422);
        },
        { concurrency: 1 },
      );
      await queue.add([{ id: 'f', data: { n: 1 } }]);
      await waitFor('failed', async () => (await queue.counts()).failed === 1);
      await queue.add([{ id: 'f', data: { n: 2 } }]);
      await waitFor('second run', () => runs.length === 2);
      expect(runs).toEqual([1, 2]);
    });

    it('removes queued jobs but not running ones', async () => {
      const queue = await open();
      await queue.add(['a', 'b', 'c'].map((id, n) => ({ id, data: { n } })));
      expect(await queue.remove(['b', 'does-not-exist', 'b'])).toBe(1);
      expect((await queue.counts()).waiting).toBe(2);
      const runs: number[] = [];
      const hold = gate();
      queue.process(
        async (data) => {
          runs.push(data.n);
          await hold.wait;
        },
        { concurrency: 2 },
      );
      await waitFor('two running', () => runs.length === 2);
      expect(await queue.remove(['a', 'c'])).toBe(0);
      hold.open();
      await waitFor('2 completed', async () => (await queue.counts()).completed === 2);
      expect([...runs].sort()).toEqual([0, 2]);
      expect(await queue.remove(['a', 'c'])).toBe(0); // finished: not queued any more
      expect((await queue.counts()).completed).toBe(2);
    });

    it('counts waiting, active, delayed, completed and failed jobs', async () => {
      const queue = await open({ attempts: 2, backoffMs: 400 });
      await queue.add(['k1', 'k2', 'k3'].map((id, n) => ({ id, data: { n } })));
      expect(await queue.counts()).toEqual({ waiting: 3, active: 0, delayed: 0, failed: 0, completed: 0 });
      const hold = gate();
      queue.process(
        async (data) => {
          if (data.n === 0) throw new Error('retry me later');
          await hold.wait;
        },
        { concurrency: 1 },
      );
      // k1 fails and waits 400 ms for its retry; k2 runs and holds; k3 waits.
      await waitFor('one active, one delayed', async () => {
        const c = await queue.counts();
        return c.active === 1 && c.delayed === 1 && c.waiting === 1;
      });
      hold.open();
      await waitFor('k2 and k3 done', async () => (await queue.counts()).completed === 2);
      await waitFor('k1 failed for good', async () => (await queue.counts()).failed === 1);
      expect(await queue.counts()).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 1, completed: 2 });
    });

    it('survives handlers that throw non-Error values, synchronously or not, and a throwing onFailed', async () => {
      const queue = await open({ attempts: 2 });
      const failures: unknown[] = [];
      let good = 0;
      queue.process(
        ((data: Payload) => {
          if (data.n === 0) throw 'a plain string'; // synchronous, not even a promise
          if (data.n === 1) return Promise.reject({ weird: true });
          if (data.n === 2) return Promise.reject(undefined);
          good++;
          return Promise.resolve();
        }) as (data: Payload) => Promise<void>,
        {
          concurrency: 2,
          onFailed: async (_data, error) => {
            failures.push(error);
            throw new Error('onFailed itself is broken');
          },
        },
      );
      await queue.add([0, 1, 2, 3, 4].map((n) => ({ id: `w${n}`, data: { n } })));
      await waitFor('3 failed, 2 completed', async () => {
        const c = await queue.counts();
        return c.failed === 3 && c.completed === 2;
      });
      expect(good).toBe(2);
      expect(failures).toHaveLength(3);
      expect(failures).toEqual(expect.arrayContaining(['a plain string', { weird: true }, undefined]));
    });

    it('close waits for running jobs, then refuses new ones', async () => {
      const queue = await open();
      let finished = false;
      let started = false;
      queue.process(
        async () => {
          started = true;
          await sleep(150);
          finished = true;
        },
        { concurrency: 1 },
      );
      await queue.add([{ id: 'slow', data: { n: 1 } }]);
      await waitFor('started', () => started);
      await queue.close();
      expect(finished).toBe(true);
      await expect(queue.add([{ id: 'late', data: { n: 2 } }])).rejects.toMatchObject({ code: 'queue_closed' });
      await queue.close(); // idempotent
    });

    it('refuses a second handler', async () => {
      const queue = await open();
      queue.process(async () => {}, { concurrency: 1 });
      expect(() => queue.process(async () => {}, { concurrency: 1 })).toThrow(
        expect.objectContaining({ code: 'queue_already_processing' }),
      );
    });
  });
}
