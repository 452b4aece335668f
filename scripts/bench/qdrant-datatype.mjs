#!/usr/bin/env node
// node scripts/bench/qdrant-datatype.mjs [--size 100000] [--probes 200] [--rounds 3]
//
// What storing the vectors as float16 (QDRANT_VECTOR_DATATYPE=float16) changes in Qdrant's search: --size synthetic
// 512-d faces in one group written into two collections made by the project's adapter, float32 and float16 (HNSW
// m 32 / ef_construct 256, payload indexes), then the adapter's query (hnsw_ef 256, limit 20, full payload, no filter:
// the group is the whole collection) on the same probes, alternating between the collections per probe so that both
// see the same machine. Latency over node:http; recall@10 against Qdrant's exact search on the float32 collection;
// each collection's segments and Qdrant's RSS; how much float16 moves the same points' scores (exact search).
// Prints lines, then one JSON.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  latencyStats,
  log,
  machine,
  putSyntheticPoints,
  qdrantCall,
  qdrantExactTop10,
  require,
  ROOT,
  round,
  rssMiB,
  startQdrant,
  stopOnSignals,
  waitQdrantIndexed,
} from './lib.mjs';
import { DIM, SyntheticFaces } from './synthetic.mjs';

const adapters = require(join(ROOT, 'libs/adapters/dist/index.js'));
const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '100000' },
    probes: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '3' },
  },
});
const N = Number(values.size);
const PROBES = Number(values.probes);
const DATATYPES = ['float32', 'float16'];
const report = { benchmark: 'qdrant-datatype', machine: machine(), size: N, collections: {}, rows: [] };
log(
  `bench qdrant-datatype: ${N} points per collection; ${report.machine.cores} cores, load ${report.machine.loadavg.join(' ')}`,
);

const qdrant = await startQdrant();
stopOnSignals(async () => qdrant.stop());
const call = (method, path, body) => qdrantCall(qdrant.url, method, path, body);

try {
  for (const datatype of DATATYPES) {
    await new adapters.QdrantVectorStore({ url: qdrant.url, collection: datatype, datatype }).init(DIM);
  }
  const gen = new SyntheticFaces(7, 1);
  const start = performance.now();
  await putSyntheticPoints(call, DATATYPES, gen, N);
  for (const datatype of DATATYPES) {
    const info = await waitQdrantIndexed(() => call('GET', `/collections/${datatype}`), 3 * 60 * 60);
    report.collections[datatype] = {
      indexed_after_seconds: round((performance.now() - start) / 1000, 1),
      segments: info.segments_count,
      datatype: info.config.params.vectors.datatype ?? 'float32',
    };
    log(
      `${datatype}: indexed after ${report.collections[datatype].indexed_after_seconds} s, ${info.segments_count} segments`,
    );
  }
  report.qdrant_rss_mib = rssMiB(qdrant.pid);
  log(`Qdrant RSS with both collections: ${report.qdrant_rss_mib} MiB`);

  const probes = Array.from({ length: PROBES }, (_, q) => Array.from(gen.query(q, N).vector));
  const query = (collection, body, vector) =>
    call('POST', `/collections/${collection}/points/query`, { ...body, query: vector });
  const { found: foundIn } = await qdrantExactTop10(call, 'float32', probes);
  const asShipped = { limit: 20, with_payload: true, with_vector: false, params: { hnsw_ef: 256 } };
  for (let r = 1; r <= Number(values.rounds); r++) {
    const latencies = DATATYPES.map(() => []);
    const found = DATATYPES.map(() => 0);
    for (const [i, v] of probes.entries()) {
      for (const [k, datatype] of DATATYPES.entries()) {
        const t = performance.now();
        const answer = await query(datatype, asShipped, v);
        latencies[k].push(performance.now() - t);
        found[k] += foundIn(answer.points, i);
      }
    }
    for (const [k, datatype] of DATATYPES.entries()) {
      const stats = latencyStats(latencies[k]);
      const row = {
        round: r,
        datatype,
        p50: stats.p50,
        p95: stats.p95,
        p99: stats.p99,
        recall_at_10: round(found[k] / (PROBES * 10), 3),
      };
      report.rows.push(row);
      log(`round ${r}: ${datatype} p50 ${row.p50} ms, p95 ${row.p95}, p99 ${row.p99}, recall@10 ${row.recall_at_10}`);
    }
  }
  // How far float16 moves a score: the same points' scores in both collections, exact search (no graph in between).
  const diffs = [];
  for (const v of probes) {
    const [a, b] = await Promise.all(
      DATATYPES.map((datatype) => query(datatype, { limit: 20, params: { exact: true } }, v)),
    );
    const half = new Map(b.points.map((p) => [p.id, p.score]));
    for (const p of a.points) if (half.has(p.id)) diffs.push(Math.abs(p.score - half.get(p.id)));
  }
  report.score_difference = {
    pairs: diffs.length,
    mean: diffs.reduce((x, y) => x + y, 0) / diffs.length,
    max: Math.max(...diffs),
  };
  log(
    `float16 against float32, the same points' scores (exact search): mean |difference| ${report.score_difference.mean.toExponential(1)}, max ${report.score_difference.max.toExponential(1)} over ${diffs.length} pairs`,
  );
  console.log(JSON.stringify(report));
} finally {
  qdrant.stop();
}
