#!/usr/bin/env node
// node scripts/bench/blobs.mjs [--ops 300] [--rounds 3] [--concurrency 1,8]
//
// What storing and reading the photos costs through the project's S3BlobStore (after `pnpm build`): a real S3
// server (Ceph radosgw from scripts/services/up.sh s3 in a temp folder, free ports), the photos of bench:import. Per
// operation: the client's CPU (this process, all threads), the S3 server's CPU (radosgw + OSD + monitor, from /proc)
// and wall-clock latency (p50, p95, mean). Each round measures, in this order: `put` (the adapter, as the gateway
// stores an upload), `put (minio putObject)` (the library's own call on the same client settings, which the adapter
// used before session 15: a copy and two hashes of every Buffer) and `get` (the adapter, as a detector reads an
// upload). At --concurrency N, N operations run at once (the gateway stores 8 uploads of a request at a time).
// Prints lines, then one JSON.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import {
  cpuSeconds,
  latencyStats,
  listPhotos,
  log,
  machine,
  require,
  ROOT,
  round,
  S3_DEFAULTS,
  startS3,
  stopOnSignals,
} from './lib.mjs';

const { values } = parseArgs({
  options: {
    ops: { type: 'string', default: '300' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1,8' },
  },
});
const ops = Number(values.ops);
const rounds = Number(values.rounds);
const concurrencies = values.concurrency.split(',').map(Number);
if (!(ops > 0) || !(rounds > 0) || !concurrencies.every((c) => Number.isInteger(c) && c > 0)) {
  console.error('--ops, --rounds: > 0; --concurrency: whole numbers > 0, comma-separated');
  process.exit(2);
}

const { S3BlobStore } = require(join(ROOT, 'libs/adapters/dist/index.js'));
const { Client } = require(require.resolve('minio', { paths: [join(ROOT, 'libs/adapters')] }));
const photos = listPhotos();
const bodies = photos.files.map((file) => readFileSync(file));
const meanKiB = round(bodies.reduce((sum, b) => sum + b.length, 0) / bodies.length / 1024, 0);

const s3 = await startS3();
stopOnSignals(async () => s3.stop());
const store = new S3BlobStore({ endpoint: s3.url, ...S3_DEFAULTS });
// The same client settings as the adapter's (path style, plain HTTP: SigV4 signs each payload's SHA-256).
const url = new URL(s3.url);
const minio = new Client({
  endPoint: url.hostname,
  port: Number(url.port),
  useSSL: false,
  accessKey: S3_DEFAULTS.accessKey,
  secretKey: S3_DEFAULTS.secretKey,
  region: S3_DEFAULTS.region,
  pathStyle: true,
});
const key = (i) => `bench/${i % bodies.length}.jpg`;
const operations = {
  put: (i) => store.put(key(i), bodies[i % bodies.length], 'image/jpeg'),
  'put (minio putObject)': (i) => {
    const body = bodies[i % bodies.length];
    return minio.putObject(S3_DEFAULTS.bucket, key(i), body, body.length, { 'Content-Type': 'image/jpeg' });
  },
  get: (i) => store.get(key(i)),
};
const serverCpu = () => Object.values(s3.pids).reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0);

/** `ops` calls of `operation`, `concurrency` at a time: latency of each, CPU of both sides per call. */
async function measure(operation, concurrency) {
  const ms = [];
  let next = 0;
  const client = process.cpuUsage();
  const server = serverCpu();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < ops; i = next++) {
        const start = performance.now();
        await operation(i);
        ms.push(performance.now() - start);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(client);
  return {
    latency_ms: latencyStats(ms),
    ops_per_s: round(ops / seconds),
    client_cpu_ms: round((used.user + used.system) / 1000 / ops, 3),
    server_cpu_ms: round(((serverCpu() - server) * 1000) / ops, 2),
  };
}

const report = { benchmark: 'blobs', machine: machine(), photos: photos.source, mean_kib: meanKiB, ops, runs: [] };
try {
  await store.init();
  log(`blobs: ${ops} operations per row on ${bodies.length} photos (mean ${meanKiB} KiB); S3 ${s3.url} (radosgw)`);
  // Every key exists before the first get; the first requests of a fresh server are slower: not measured.
  for (let i = 0; i < bodies.length; i++) await operations.put(i);
  for (let round_ = 1; round_ <= rounds; round_++) {
    for (const concurrency of concurrencies) {
      for (const [name, operation] of Object.entries(operations)) {
        const r = await measure(operation, concurrency);
        report.runs.push({ round: round_, concurrency, operation: name, ...r });
        log(
          `round ${round_}, concurrency ${concurrency}: ${name.padEnd(21)} client CPU ${r.client_cpu_ms} ms, ` +
            `S3 CPU ${r.server_cpu_ms} ms per call; p50 ${r.latency_ms.p50} ms, p95 ${r.latency_ms.p95} ms, ` +
            `mean ${r.latency_ms.mean} ms; ${r.ops_per_s} calls/s`,
        );
      }
    }
  }
  await store.deletePrefix('bench/');
} finally {
  s3.stop();
}
console.log(JSON.stringify(report));
