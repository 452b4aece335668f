import { describe, expect, it, vi } from 'vitest';
import { StageTimings } from '../src';

describe('StageTimings', () => {
  it('adds up pieces of a stage that run one after another, and counts pieces running at once once', async () => {
    // A fake clock: each piece of work moves it explicitly.
    let now = 0;
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => now);
    try {
      const timings = new StageTimings();
      const piece = (stage: string, from: number, to: number, gate: Promise<void>) =>
        timings.time(stage, async () => {
          expect(now).toBe(from);
          await gate;
          now = to;
        });
      // vectors: 0-10 and 10-15 in turn = 15.
      await piece('vectors', 0, 10, Promise.resolve());
      await piece('vectors', 10, 15, Promise.resolve());
      // analyze: two pieces from 15, ending at 40 and 30 (at once) = 25; then 50-60 after a gap = 35.
      let release = () => {};
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const a = timings.time('analyze', async () => {
        await gate;
        now = 30;
      });
      const b = timings.time('analyze', async () => {
        await gate;
        await Promise.resolve();
        now = 40;
      });
      release();
      await Promise.all([a, b]);
      now = 50;
      await piece('analyze', 50, 60, Promise.resolve());
      timings.add('engine', 20);
      timings.add('engine', 2.5);
      timings.add('engine', undefined);
      expect(Object.fromEntries(timings.stages())).toEqual({ vectors: 15, analyze: 35, engine: 22.5 });
      expect(timings.header()).toBe('vectors;dur=15.0, analyze;dur=35.0, engine;dur=22.5');
    } finally {
      clock.mockRestore();
    }
  });

  it('has an empty header when nothing was timed', () => {
    expect(new StageTimings().header()).toBe('');
  });
});
