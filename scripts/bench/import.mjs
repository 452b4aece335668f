#!/usr/bin/env node
// pnpm bench:import [--mode embedded|distributed|both] [--images N] [--topologies 2x2,1x1,1x1/inline,1x0/inline]
//                   [--chunk 50] [--engine-workers auto|N] [--import-concurrency N] [--worker-cores 0]
//
// Bulk import of real photos (../shared/testdata faces/ + multi/, else .fixtures/) repeated to N items (default 200),
// through the public API (multipart POST /v1/imports of --chunk files each, then polling GET /v1/imports/{id}),
// timed from the first request until every import is finished:
//   - embedded: the gateway as a child process (FACESEARCH_MODE=embedded, temp DATA_DIR);
//   - distributed: scripts/stack/up.sh in a temp STACK_DIR on free ports, once per topology DxE
//     (D detectors + E embedders + 1 indexer; default 2x2 and 1x1); `DxE/inline` runs the detectors with
//     IMPORT_EMBED=inline (they embed each item through the embedder service over gRPC: no embed queue, no crop
//     in S3; `Dx0/inline`: no embedder, the detectors embed with their own engine), plain `DxE` with IMPORT_EMBED=queue.
// --engine-workers and --import-concurrency set ENGINE_WORKERS and IMPORT_CONCURRENCY of every app (default: the
// apps' own defaults).
// --worker-cores LIST (distributed only): the detectors and embedders confined to these CPUs, and everything else
// (servers, gateway, indexer, this client) to the others, as if the servers ran on their own machine; the raw loop
// then runs on LIST too (one process per CPU in it), so the ratio is the workers' against the models on the same CPUs.
// Before the first target and again after each one, the raw compute rate on the same N items: FaceEngine.analyze
// (decode+detect+align+embed, maxFaces 1 as the import does, one ONNX thread) in a tight loop, one process per core.
// Each target's service/raw ratio is taken against the mean of the raw rates just before and just after it (this
// VM's speed drifts by 5-15 % within minutes; `ratio_to_raw_range` is the ratio against each of the two alone). The
// raw loop runs with the node flags of the target's model processes (distributed: --single-threaded-gc, as
// scripts/stack/up.sh starts detectors and embedders; embedded: none, as the gateway), so the ratio is overhead only.
// Memory: RSS of every process at idle (after start) and its peak during the import. Distributed: each worker's jobs
// during the import (count and mean time per queue and outcome, from its own /metrics), and the commands Redis ran
// per item (INFO commandstats, every client's, the polls' included).
// Prints readable lines, then one JSON object as the last line. Everything binds to 127.0.0.1; processes and temp
// folders are removed at the end (also on Ctrl-C).
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import {
  ensureGroup,
  cpuUsedSince,
  formatRss,
  identityOf,
  jobFiguresSince,
  listPhotos,
  loadNow,
  log,
  machine,
  pinToCpus,
  rawComputeRate,
  redisCommandCalls,
  redisCommandsPerItem,
  RssSampler,
  round,
  runImport,
  sleep,
  snapshotCpu,
  snapshotRss,
  startEmbedded,
  startStack,
  stopOnSignals,
  workerJobFigures,
} from './lib.mjs';

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'both' },
    images: { type: 'string', default: '200' },
    topologies: { type: 'string', default: '2x2,1x1,1x1/inline' },
    chunk: { type: 'string', default: '50' },
    'engine-workers': { type: 'string' },
    'import-concurrency': { type: 'string' },
    'worker-cores': { type: 'string' },
  },
});
const modes = values.mode === 'both' ? ['embedded', 'distributed'] : [values.mode];
if (!modes.every((m) => m === 'embedded' || m === 'distributed')) {
  console.error('--mode must be embedded, distributed or both');
  process.exit(2);
}
/** --worker-cores: the workers' CPUs and the rest's, as taskset lists (null: no pinning). */
const pinning = (() => {
  if (!values['worker-cores']) return null;
  const all = Array.from({ length: availableParallelism() }, (_, i) => i);
  const workers = new Set(
    values['worker-cores'].split(',').flatMap((part) => {
      const [a, b = a] = part.split('-').map(Number);
      return Array.from({ length: b - a + 1 }, (_, i) => a + i);
    }),
  );
  const rest = all.filter((c) => !workers.has(c));
  const valid = workers.size > 0 && [...workers].every((c) => all.includes(c)) && rest.length > 0;
  if (modes.includes('embedded') || !valid) {
    console.error(
      `--worker-cores: needs --mode distributed and a list of CPUs among 0-${all.length - 1} that leaves at least one`,
    );
    process.exit(2);
  }
  return { workers: [...workers].join(','), count: workers.size, rest: rest.join(',') };
})();

const N = Number(values.images);
const topologies = values.topologies.split(',').map((t) => {
  const m = /^(\d+)x(\d+)(\/inline)?$/.exec(t.trim());
  if (!m) {
    console.error(`--topologies: expected DxE or DxE/inline like 2x2, got '${t}'`);
    process.exit(2);
  }
  if (Number(m[1]) === 0 || (Number(m[2]) === 0 && !m[3])) {
    console.error(`--topologies: '${t}' needs a detector, and 0 embedders needs /inline (the detectors embed)`);
    process.exit(2);
  }
  return { detectors: Number(m[1]), embedders: Number(m[2]), importEmbed: m[3] ? 'inline' : 'queue' };
});
/** Settings every app of a run gets (unset: the apps' defaults). */
const appEnv = {
  ...(values['engine-workers'] ? { ENGINE_WORKERS: values['engine-workers'] } : {}),
  ...(values['import-concurrency'] ? { IMPORT_CONCURRENCY: values['import-concurrency'] } : {}),
};

const { source, files } = listPhotos();
const listed = Array.from({ length: N }, (_, i) => files[i % files.length]);
const bytes = new Map(files.map((f) => [f, readFileSync(f)]));
const items = listed.map((path, i) => ({
  // One user per item: a user holds at most MAX_FACES_PER_USER faces.
  user_id: `u${i}-${identityOf(path)}`.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 128),
  name: `${i}-${path.split('/').at(-1)}`,
  data: bytes.get(path),
}));

const report = {
  benchmark: 'import',
  machine: machine(),
  source,
  unique_photos: files.length,
  images: N,
  app_env: appEnv,
  ...(pinning ? { worker_cpus: pinning.workers, other_cpus: pinning.rest } : {}),
  runs: [],
};
// After machine() read the cores: this process is then confined with the servers.
if (pinning) pinToCpus(process.pid, pinning.rest);
log(
  `bench:import: ${N} items from ${files.length} photos (${source}); ${report.machine.cores} cores, load ${report.machine.loadavg.join(' ')}`,
);

let current = null;
stopOnSignals(async () => current?.stop());

/** The node flags a target's model processes run with (scripts/stack/up.sh; the embedded gateway: none). */
const modelNodeFlags = (target) => (target.kind === 'distributed' ? ['--single-threaded-gc'] : []);

/** The raw compute rate now, its processes started with `nodeFlags` (logged; kept in report.raw_runs). */
async function measureRaw(nodeFlags) {
  const flags = nodeFlags.length ? ` (node ${nodeFlags.join(' ')})` : '';
  log(`raw compute: FaceEngine.analyze (maxFaces 1) on the same items, one process per core${flags} ...`);
  const load = loadNow();
  const onCpus = pinning ? { cores: pinning.count, cpuList: pinning.workers } : {};
  const raw = {
    ...(await rawComputeRate(listed, { maxFaces: 1, ...onCpus, nodeFlags })),
    node_flags: nodeFlags,
    loadavg_before: load,
  };
  log(
    `raw compute:  ${raw.images_per_s} images/s, ${raw.faces_per_s} faces/s (${raw.cores} processes, ${raw.seconds} s, CPU ${raw.cpu_seconds} s, load before ${load.join(' ')})`,
  );
  report.raw_runs.push(raw);
  return raw;
}
report.raw_runs = [];

const targets = [];
if (modes.includes('embedded')) targets.push({ kind: 'embedded' });
if (modes.includes('distributed')) for (const t of topologies) targets.push({ kind: 'distributed', ...t });

let rawBefore = null;
for (const target of targets) {
  const nodeFlags = modelNodeFlags(target);
  // The previous target's "after" serves as this one's "before" when it ran with the same flags.
  if (rawBefore?.node_flags.join(' ') !== nodeFlags.join(' ')) rawBefore = await measureRaw(nodeFlags);
  report.raw ??= rawBefore;
  const label =
    target.kind === 'embedded'
      ? 'embedded'
      : `distributed ${target.detectors}d+${target.embedders}e+1i IMPORT_EMBED=${target.importEmbed}`;
  log(`${label}: starting ...`);
  const startedAt = performance.now();
  current =
    target.kind === 'embedded'
      ? await startEmbedded({ env: appEnv })
      : await startStack({
          ...target,
          // Started on the other CPUs, the workers would size their engine by those: by their own, unless given.
          env: {
            ...(pinning ? { ENGINE_WORKERS: String(pinning.count) } : {}),
            ...appEnv,
            IMPORT_EMBED: target.importEmbed,
          },
          cpuList: pinning?.rest,
        });
  if (pinning)
    for (const [name, pid] of Object.entries(current.pids()))
      if (/^(detector|embedder)-/.test(name)) pinToCpus(pid, pinning.workers);
  const startSeconds = round((performance.now() - startedAt) / 1000, 1);
  try {
    await sleep(3000); // let start-up work settle before the idle reading
    const idle = snapshotRss(current.pids());
    log(`${label}: up in ${startSeconds} s; idle RSS MiB: ${formatRss(idle)}`);
    const group = 'bench_import';
    await ensureGroup(current.api, group);
    const loadBefore = loadNow();
    const sampler = new RssSampler(current.pids());
    const jobsBefore = current.metricsUrls ? await workerJobFigures(current.metricsUrls) : null;
    const cpuBefore = snapshotCpu(current.pids());
    const clientCpuBefore = process.cpuUsage();
    const redisUrl = current.services?.REDIS_URL;
    const redisBefore = redisUrl ? redisCommandCalls(redisUrl) : null;
    const result = await runImport(current.api, group, items, { chunk: Number(values.chunk) });
    // Every client's commands, the polls' included (a few per second).
    const redis = redisBefore ? redisCommandsPerItem(redisBefore, redisCommandCalls(redisUrl), N) : undefined;
    const peak = sampler.stop();
    // Each worker's own account of its jobs (its /metrics): how long a job took where, queue waits excluded.
    const jobs = jobsBefore ? jobFiguresSince(jobsBefore, await workerJobFigures(current.metricsUrls)) : undefined;
    // Where the two cores went: CPU seconds per process during the import, and this client's own (uploads, polls).
    const cpu = cpuUsedSince(cpuBefore, current.pids());
    const clientCpu = process.cpuUsage(clientCpuBefore);
    cpu['bench client'] = round((clientCpu.user + clientCpu.system) / 1e6, 2);
    const run = {
      target: label,
      start_seconds: startSeconds,
      loadavg_before: loadBefore,
      loadavg_after: loadNow(),
      seconds: round(result.seconds, 2),
      upload_seconds: round(result.submittedSeconds, 2),
      succeeded: result.succeeded,
      failed: result.failed,
      failures: result.failures,
      images_per_s: round(N / result.seconds, 2),
      faces_per_s: round(result.succeeded / result.seconds, 2),
      cpu_seconds: cpu,
      cpu_seconds_total: round(
        Object.values(cpu).reduce((a, b) => a + (b ?? 0), 0),
        2,
      ),
      rss_idle_mib: idle,
      rss_peak_mib: peak,
      ...(jobs ? { worker_jobs: jobs } : {}),
      ...(redis ? { redis_per_item: redis } : {}),
    };
    report.runs.push(run);
    log(
      `${label}: ${run.images_per_s} images/s, ${run.faces_per_s} faces/s (${N} items in ${run.seconds} s, uploads ${run.upload_seconds} s; ` +
        `${run.succeeded} ok, ${run.failed} failed${run.failed ? ` ${JSON.stringify(run.failures)}` : ''})`,
    );
    log(
      `${label}: peak RSS MiB under import: ${formatRss(peak)}; load ${run.loadavg_before.join(' ')} -> ${run.loadavg_after.join(' ')}`,
    );
    log(
      `${label}: CPU seconds during the import: ${formatRss(cpu)}; total ${run.cpu_seconds_total} of ${round(run.seconds * report.machine.cores, 1)} available`,
    );
    if (redis) {
      log(
        `${label}: Redis per item: ${redis.commands} commands, ${redis.scripts} of them Lua scripts (BullMQ's and the library's)`,
      );
    }
    for (const [worker, figures] of Object.entries(jobs ?? {})) {
      const parts = Object.entries(figures).map(([key, f]) => `${key} ${f.jobs} x ${f.mean_ms} ms`);
      log(`${label}: ${worker} (its /metrics): ${parts.join(', ')}`);
    }
  } finally {
    await current.stop();
    current = null;
  }
  // Reached only when the import finished, so its run is the last one.
  const rawAfter = await measureRaw(nodeFlags);
  const run = report.runs.at(-1);
  const rates = [rawBefore.images_per_s, rawAfter.images_per_s];
  const rawRate = (rates[0] + rates[1]) / 2;
  run.raw_images_per_s = { before: rates[0], after: rates[1] };
  run.ratio_to_raw = round(run.images_per_s / rawRate, 3);
  run.ratio_to_raw_range = [
    round(run.images_per_s / Math.max(...rates), 3),
    round(run.images_per_s / Math.min(...rates), 3),
  ];
  run.raw_cpu_seconds = round((N / rawRate) * rawAfter.cores, 1);
  run.raw_cpu_used_seconds = round((rawBefore.cpu_seconds + rawAfter.cpu_seconds) / 2, 1);
  log(
    `${label}: service/raw ${run.ratio_to_raw} (${run.ratio_to_raw_range.join('-')} against the raw rate before / after alone); ` +
      `the raw loop needs ${run.raw_cpu_seconds} core-seconds for these items (using ${run.raw_cpu_used_seconds} of CPU), ` +
      `the service used ${run.cpu_seconds_total}`,
  );
  rawBefore = rawAfter;
}

const dist = report.runs.filter((r) => r.target.startsWith('distributed'));
if (dist.length > 1) {
  const best = dist.reduce((a, b) => (b.images_per_s > a.images_per_s ? b : a));
  report.best_distributed = best.target;
  log(`best distributed topology here: ${best.target} (${best.images_per_s} images/s)`);
}
console.log(JSON.stringify(report));
