import { randomUUID } from 'node:crypto';
import { BullMqJobQueue } from '@facesearch/adapters';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { describeJobQueueContract } from './queue.contract';

/** Needs a real Redis: REDIS_URL=redis://127.0.0.1:6379 (see docs). No mock stands in for it. */
const redisUrl = process.env.REDIS_URL;
const prefix = `facesearch-test-${process.pid}`;
const quiet = { error() {}, warn() {} };

if (!redisUrl) {
  describe('BullMqJobQueue', () => {
    it.skip('skipped: REDIS_URL is not set (these tests need a real Redis server)', () => {});
  });
} else {
  describeJobQueueContract('BullMqJobQueue', {
    create: async (options) =>
      new BullMqJobQueue(`contract-${randomUUID()}`, {
        redisUrl,
        prefix,
        ...options,
        closeTimeoutMs: 5000,
        logger: quiet,
      }),
    dispose: async (queue) => {
      await queue.close();
      // A fresh handle: the queue's own connections are closed now.
      const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
      const admin = new Queue(queue.name, { connection, prefix });
      await admin.obliterate({ force: true });
      await admin.close();
      await connection.quit();
    },
  });

  describe('BullMqJobQueue specifics', () => {
    afterAll(async () => {
      // Every test queue was obliterated: nothing of ours is left in Redis.
      const redis = new IORedis(redisUrl);
      const leftovers = await redis.keys(`${prefix}:*`);
      await redis.quit();
      expect(leftovers).toEqual([]);
    });

    it('a producer-only instance adds jobs that another instance processes', async () => {
      const name = `split-${randomUUID()}`;
      const producer = new BullMqJobQueue<{ n: number }>(name, { redisUrl, prefix, logger: quiet });
      const consumer = new BullMqJobQueue<{ n: number }>(name, { redisUrl, prefix, logger: quiet });
      const seen: number[] = [];
      try {
        await producer.add([1, 2, 3].map((n) => ({ id: `p${n}`, data: { n } })));
        consumer.process(async (data) => void seen.push(data.n), { concurrency: 2 });
        const deadline = Date.now() + 10_000;
        while ((await producer.counts()).completed < 3 && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 20));
        expect([...seen].sort()).toEqual([1, 2, 3]);
      } finally {
        await consumer.close();
        await producer.obliterate();
        await producer.close();
      }
    });

    it("adds and removes without BullMQ's state lookup, which scans the whole waiting list for an id", async () => {
      const queue = new BullMqJobQueue<{ n: number }>(`held-${randomUUID()}`, { redisUrl, prefix, logger: quiet });
      const stateLookups = vi.spyOn(Queue.prototype, 'getJobState');
      try {
        await queue.add(Array.from({ length: 20 }, (_, n) => ({ id: `backlog-${n}`, data: { n } })));
        await queue.add([1, 2, 3].map((n) => ({ id: `new-${n}`, data: { n } })));
        await queue.add([{ id: 'new-1', data: { n: 9 } }]); // queued: ignored
        expect((await queue.counts()).waiting).toBe(23);
        expect(await queue.remove(['gone-1', 'gone-2'])).toBe(0);
        expect(await queue.remove(['new-2', 'gone-3', 'backlog-0'])).toBe(2);
        expect((await queue.counts()).waiting).toBe(21);
        expect(stateLookups).not.toHaveBeenCalled();
      } finally {
        stateLookups.mockRestore();
        await queue.obliterate();
        await queue.close();
      }
    });
  });
}
