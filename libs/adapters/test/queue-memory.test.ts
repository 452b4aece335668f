import { MemoryJobQueue } from '@facesearch/adapters';
import { describe, expect, it } from 'vitest';
import { describeJobQueueContract } from './queue.contract';

let seq = 0;
describeJobQueueContract('MemoryJobQueue', {
  create: async (options) => new MemoryJobQueue(`memory-${++seq}`, { ...options, logger: { error() {}, warn() {} } }),
});

describe('MemoryJobQueue specifics', () => {
  it('gives up waiting for a stuck job after closeTimeoutMs', async () => {
    const warnings: string[] = [];
    const queue = new MemoryJobQueue<number>('stuck', {
      closeTimeoutMs: 50,
      logger: { error() {}, warn: (_obj, msg) => void warnings.push(msg) },
    });
    let started = false;
    queue.process(
      async () => {
        started = true;
        await new Promise(() => {});
      },
      { concurrency: 1 },
    );
    await queue.add([{ id: 'forever', data: 1 }]);
    while (!started) await new Promise((r) => setTimeout(r, 5));
    const t0 = Date.now();
    await queue.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(warnings.join()).toMatch(/timed out/);
  });

  it('rejects bad options with a FaceSearchError', () => {
    expect(() => new MemoryJobQueue('x', { attempts: 0 })).toThrow(
      expect.objectContaining({ code: 'invalid_queue_option' }),
    );
  });
});
