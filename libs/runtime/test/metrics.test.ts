/** The job and call metrics of a process, and the /metrics endpoint of the workers. */
import { MemoryJobQueue } from '@facesearch/adapters';
import { FaceSearchError } from '@facesearch/common';
import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { JobMetrics, serveMetrics, WorkerMetrics } from '../src/metrics';

const silent = pino({ level: 'silent' });

/** The value of one series in the registry's text output (undefined when absent). */
async function series(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = metric?.values.find(
    (v) =>
      (v as { metricName?: string }).metricName === undefined &&
      Object.entries(labels).every(([k, l]) => v.labels[k] === l),
  );
  return value?.value;
}

async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition not met in time');
}

describe('JobMetrics', () => {
  it('counts each attempt with its outcome, times it, and counts the jobs that failed for good', async () => {
    const registry = new Registry();
    const metrics = new JobMetrics(registry);
    const queue = metrics.instrument(
      new MemoryJobQueue<{ n: number }>('work', { attempts: 2, backoffMs: 1, logger: silent }),
    );
    const failedForGood: number[] = [];
    queue.process(
      async ({ n }, ctx) => {
        if (n === 1 && ctx.attempt === 1) throw new Error('flaky once'); // succeeds on its second attempt
        if (n === 2) throw new Error('always fails'); // fails both attempts
        if (n === 3) throw new FaceSearchError('image_corrupt', 'not an image', 400); // not retried
      },
      { concurrency: 2, onFailed: async ({ n }) => void failedForGood.push(n) },
    );
    await queue.add([0, 1, 2, 3].map((n) => ({ id: `j${n}`, data: { n } })));
    await until(() => failedForGood.length === 2);
    await until(async () => (await series(registry, 'facesearch_job_attempts_total', { outcome: 'succeeded' })) === 2);

    expect(failedForGood.sort()).toEqual([2, 3]);
    expect(await series(registry, 'facesearch_job_attempts_total', { queue: 'work', outcome: 'succeeded' })).toBe(2);
    // 1's first attempt, 2's two attempts, 3's one.
    expect(await series(registry, 'facesearch_job_attempts_total', { queue: 'work', outcome: 'error' })).toBe(4);
    expect(await series(registry, 'facesearch_jobs_failed_total', { queue: 'work' })).toBe(2);
    const text = await registry.metrics();
    expect(text).toMatch(/facesearch_job_duration_seconds_count\{queue="work",outcome="succeeded"\} 2/);
    expect(text).toMatch(/facesearch_job_duration_seconds_count\{queue="work",outcome="error"\} 4/);
    await queue.close();
  });
});

describe('serveMetrics', () => {
  it('serves the registry at GET /metrics on the port asked for (0: a free one), 404 elsewhere', async () => {
    const metrics = new WorkerMetrics('detector');
    metrics.calls.observe('Analyze', 'OK', 0.042);
    metrics.calls.observe('Analyze', 'INVALID_ARGUMENT', 0.003);
    const endpoint = await serveMetrics(metrics.registry, '127.0.0.1', 0, silent);
    try {
      expect(endpoint.port).toBeGreaterThan(0);
      const res = await fetch(`http://127.0.0.1:${endpoint.port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const text = await res.text();
      expect(text).toContain(
        'facesearch_grpc_server_duration_seconds_count{service="detector",method="Analyze",code="OK"} 1',
      );
      expect(text).toContain(
        'facesearch_grpc_server_duration_seconds_count{service="detector",method="Analyze",code="INVALID_ARGUMENT"} 1',
      );
      // The process's own figures come with it.
      expect(text).toMatch(/process_resident_memory_bytes\{service="detector"\} \d+/);
      expect(text).toContain('nodejs_eventloop_lag_seconds');
      expect((await fetch(`http://127.0.0.1:${endpoint.port}/other`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${endpoint.port}/metrics`, { method: 'POST' })).status).toBe(404);
    } finally {
      await endpoint.close();
    }
    await expect(fetch(`http://127.0.0.1:${endpoint.port}/metrics`)).rejects.toThrow();
  });

  it('fails to start on a port already taken, naming it', async () => {
    const first = await serveMetrics(new Registry(), '127.0.0.1', 0, silent);
    try {
      await expect(serveMetrics(new Registry(), '127.0.0.1', first.port, silent)).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await first.close();
    }
  });
});
