import { describe, expect, it } from 'vitest';
import { mapConcurrent } from '@facesearch/common';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const upTo = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('mapConcurrent', () => {
  it('keeps the items order whatever order the calls finish in', async () => {
    const delays = [30, 5, 20, 1, 10, 0, 15];
    const results = await mapConcurrent(delays, 3, async (ms, i) => {
      await tick(ms);
      return `${i}:${ms}`;
    });
    expect(results).toEqual(delays.map((ms, i) => `${i}:${ms}`));
  });

  it('never has more than `limit` calls in flight, and uses that many', async () => {
    let inFlight = 0;
    let most = 0;
    await mapConcurrent(upTo(20), 4, async (i) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await tick(i % 3);
      inFlight--;
    });
    expect(most).toBe(4);
  });

  it('after a failure starts no new call, lets those in flight finish, then rejects with the first error', async () => {
    const started: number[] = [];
    const finished: number[] = [];
    const run = mapConcurrent(upTo(10), 3, async (i) => {
      started.push(i);
      if (i === 1) throw new Error('first');
      if (i === 2) {
        await tick(1);
        throw new Error('second');
      }
      await tick(20);
      finished.push(i);
      return i;
    });
    await expect(run).rejects.toThrow('first');
    expect(started).toEqual([0, 1, 2]);
    expect(finished).toEqual([0]);
  });

  it('an empty list resolves at once; a limit below 1 still makes progress', async () => {
    expect(await mapConcurrent([], 8, async () => 1)).toEqual([]);
    expect(await mapConcurrent([1, 2], 0, async (x) => x * 2)).toEqual([2, 4]);
  });
});
