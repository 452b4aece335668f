#!/usr/bin/env node
// node scripts/bench/qdrant-filters.mjs [--size 100000] [--probes 150] [--no-int8]
//
// What the search filter costs Qdrant: --size synthetic 512-d faces in one group (as bench:search's library),
// the adapter's collection (HNSW m 32 / ef_construct 256, payload indexes), then the same query (hnsw_ef 256,
// limit 20, full payload) with each filter: none; the three conditions the adapter used before session 5 (app,
// model, group any); one condition of each kind; and the one `scope` condition it uses now. The filter matches
// every point, so recall and the walk are the same and the difference is the cost of checking the conditions.
// Latency over node:http, two rounds; recall@10 against Qdrant's own exact search. Then (unless --no-int8) the same
// points get int8 scalar quantisation (PATCH, kept in RAM) and the scope-filtered query runs with the float vectors
// (`quantization.ignore`) and with int8 rescored by the float vectors (oversampling 1 and 2), at hnsw_ef 256 and 128,
// alternating per probe so that both see the same machine. Prints lines, then one JSON.
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
  sleep,
  startQdrant,
  stopOnSignals,
  waitQdrantIndexed,
} from './lib.mjs';
import { DIM, SyntheticFaces } from './synthetic.mjs';

const adapters = require(join(ROOT, 'libs/adapters/dist/index.js'));
const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '100000' },
    probes: { type: 'string', default: '150' },
    'no-int8': { type: 'boolean', default: false },
  },
});
const N = Number(values.size);
const APP = 'default';
const GROUP = 'g';
const MODEL = 'm';
const report = { benchmark: 'qdrant-filters', machine: machine(), size: N, rows: [] };
log(
  `bench qdrant-filters: ${N} points in one group; ${report.machine.cores} cores, load ${report.machine.loadavg.join(' ')}`,
);

const qdrant = await startQdrant();
stopOnSignals(async () => qdrant.stop());
const call = (method, path, body) => qdrantCall(qdrant.url, method, path, body);

try {
  const collection = 'faces';
  await new adapters.QdrantVectorStore({ url: qdrant.url, collection }).init(DIM);
  const gen = new SyntheticFaces(7, 1);
  const start = performance.now();
  await putSyntheticPoints(call, [collection], gen, N, { app: APP, group: GROUP, model: MODEL });
  const info = await waitQdrantIndexed(() => call('GET', `/collections/${collection}`), 60 * 60);
  report.index_seconds = round((performance.now() - start) / 1000, 1);
  report.segments = info.segments_count;
  log(`uploaded and indexed in ${report.index_seconds} s; ${info.segments_count} segments`);

  const probes = Array.from({ length: Number(values.probes) }, (_, q) => Array.from(gen.query(q, N).vector));
  const query = (body, vector) => call('POST', `/collections/${collection}/points/query`, { ...body, query: vector });
  const recall = await qdrantExactTop10(call, collection, probes);
  const { exact } = recall;
  /** How many of probe i's exact top 10 an answer's top 10 holds. */
  const found = (answer, i) => recall.found(answer.points, i);
  /** A report row from one setting's latencies and found count over all probes (logged by the caller). */
  const rowOf = (roundNo, fields, latencies, foundTotal) => {
    const stats = latencyStats(latencies);
    const row = {
      round: roundNo,
      ...fields,
      p50: stats.p50,
      p99: stats.p99,
      recall_at_10: round(foundTotal / (exact.length * 10), 3),
    };
    report.rows.push(row);
    return row;
  };
  const base = { limit: 20, with_payload: true, with_vector: false, params: { hnsw_ef: 256 } };
  const cond = {
    app: { key: 'app_id', match: { value: APP } },
    model: { key: 'model_id', match: { value: MODEL } },
    group: { key: 'group_id', match: { any: [GROUP] } },
    scope: { key: 'scope', match: { any: [adapters.qdrantScope(APP, GROUP, MODEL)] } },
  };
  const variants = [
    ['no filter', undefined],
    ['app, model, group any (three conditions, before session 5)', [cond.app, cond.model, cond.group]],
    ['app only', [cond.app]],
    ['group any only', [cond.group]],
    ['scope any (one condition, the adapter now)', [cond.scope]],
  ];
  for (let r = 0; r < 2; r++) {
    for (const [name, must] of variants) {
      const body = must ? { ...base, filter: { must } } : base;
      for (let i = 0; i < 10; i++) await query(body, probes[i]);
      const latencies = [];
      let foundTotal = 0;
      for (const [i, v] of probes.entries()) {
        const t = performance.now();
        const answer = await query(body, v);
        latencies.push(performance.now() - t);
        foundTotal += found(answer, i);
      }
      const row = rowOf(r + 1, { filter: name }, latencies, foundTotal);
      log(`round ${row.round}: ${name.padEnd(58)} p50 ${row.p50} ms, p99 ${row.p99} ms, recall@10 ${row.recall_at_10}`);
    }
  }
  if (!values['no-int8']) {
    const t = performance.now();
    await call('PATCH', `/collections/${collection}`, {
      quantization_config: { scalar: { type: 'int8', quantile: 0.99, always_ram: true } },
    });
    await sleep(2000); // the optimizer takes the change before the collection turns yellow
    await waitQdrantIndexed(() => call('GET', `/collections/${collection}`), 60 * 60);
    report.quantize_seconds = round((performance.now() - t) / 1000, 1);
    log(`int8 quantisation built in ${report.quantize_seconds} s`);
    const scoped = { ...base, filter: { must: [cond.scope] } };
    const settings = [];
    for (const ef of [256, 128]) {
      settings.push([`float, hnsw_ef ${ef}`, { hnsw_ef: ef, quantization: { ignore: true } }]);
      for (const oversampling of [1, 2]) {
        settings.push([
          `int8 rescored, oversampling ${oversampling}, hnsw_ef ${ef}`,
          { hnsw_ef: ef, quantization: { rescore: true, oversampling } },
        ]);
      }
    }
    for (let r = 0; r < 2; r++) {
      const latencies = settings.map(() => []);
      const foundTotals = settings.map(() => 0);
      for (const [i, v] of probes.entries()) {
        for (const [k, [, params]] of settings.entries()) {
          const start = performance.now();
          const answer = await query({ ...scoped, params }, v);
          latencies[k].push(performance.now() - start);
          foundTotals[k] += found(answer, i);
        }
      }
      for (const [k, [name]] of settings.entries()) {
        const row = rowOf(r + 1, { filter: 'scope any', search: name }, latencies[k], foundTotals[k]);
        log(
          `round ${row.round}: scope, ${name.padEnd(42)} p50 ${row.p50} ms, p99 ${row.p99} ms, recall@10 ${row.recall_at_10}`,
        );
      }
    }
  }
  console.log(JSON.stringify(report));
} finally {
  qdrant.stop();
}
