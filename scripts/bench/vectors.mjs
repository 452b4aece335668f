#!/usr/bin/env node
// pnpm bench:vectors [--sizes 10000,100000] [--stores sqlite,qdrant] [--queries 200] [--groups 10]
//                    [--query-seconds 30] [--budget-minutes 20] [--hnsw-m 32] [--hnsw-ef-construct 256]
//                    [--full-scan-threshold-kb 60000] [--quantization int8|none]
//                    [--efs 64,128,256,512] [--no-qdrant-extras] [--bulk-load]
// (1M: --sizes 1000000, with --budget-minutes large enough; BENCHMARKS.md has the commands used.)
//
// Vector search alone, through the project's adapters (libs/adapters): latency p50/p95/p99 (one query at a time)
// and recall@10 against exact search, for the embedded store (sqlite-vec vec0, brute force) and Qdrant (the
// collection as the adapter makes it: int8 copies scanned with no graph, unless --hnsw-m asks for one), at each
// size, with three group filters: `one_group` (the probe's group, 1 of --groups, ~10 % of the points), `half_groups`
// (half of the groups) and `all_groups` (every group listed, as an app searching all its groups).
// Memory: VmRSS of the child process that holds the sqlite-vec store, and of the qdrant server, from
// /proc/<pid>/status.
// Data: synthetic 512-d unit vectors with face-like structure (scripts/bench/synthetic.mjs: 5 faces per identity;
// same identity cosine ~0.53-0.76, different ~0.0-0.2), probes are unseen faces of stored identities; exact top-10
// computed here by brute force. Qdrant: scripts/services/up.sh qdrant in a temp STACK_DIR on free ports; the
// collection created by the adapter (its defaults: no graph, int8 copies scanned and rescored; or the graph of
// --hnsw-m, --hnsw-ef-construct, --full-scan-threshold-kb, and --quantization none for float vectors only), vectors
// in RAM; after one unmeasured pass of the probes (the first queries after indexing are slower), searched through
// the adapter, over REST at hnsw_ef 64/128/256/512 (with a graph; without one these rows scan as the adapter does),
// exact, the adapter again (a check on the warm-up), then with int8 scalar quantisation and rescoring. Sizes whose
// estimated time would pass --budget-minutes are skipped (and said so).
// --bulk-load: Qdrant's advice for a bulk upload (indexing_threshold 0 while uploading, then the collection's own
// value again), so that the graph is built once per final segment instead of for each small segment and again for
// every merge; the queries then run on the same kind of graph. For sizes that would otherwise take hours (1M).
// Prints readable lines, then one JSON object as the last line.
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadNow, log, machine, ROOT, round, startQdrant, stopOnSignals } from './lib.mjs';
import { DIM, SEARCH_FILTERS, SyntheticFaces, searchedGroups, similarityProfile } from './synthetic.mjs';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10000,100000' },
    stores: { type: 'string', default: 'sqlite,qdrant' },
    queries: { type: 'string', default: '200' },
    groups: { type: 'string', default: '10' },
    'query-seconds': { type: 'string', default: '30' },
    'budget-minutes': { type: 'string', default: '20' },
    seed: { type: 'string', default: '1' },
    // Qdrant: the graph of the collection the adapter creates (default: the adapter's defaults), the hnsw_ef values
    // searched, and --no-qdrant-extras to skip the fetch comparison, int8 quantisation and the m 32 rebuild.
    'hnsw-m': { type: 'string' },
    'hnsw-ef-construct': { type: 'string' },
    'full-scan-threshold-kb': { type: 'string' },
    // Vectors of the collection the adapter creates: int8 (the adapter's default) or none (float only).
    quantization: { type: 'string' },
    efs: { type: 'string', default: '64,128,256,512' },
    'qdrant-extras': { type: 'boolean', default: true },
    'no-qdrant-extras': { type: 'boolean', default: false },
    'bulk-load': { type: 'boolean', default: false },
  },
});
if (values.quantization && !['int8', 'none'].includes(values.quantization)) {
  console.error('--quantization: int8 or none');
  process.exit(2);
}
const sizes = values.sizes.split(',').map(Number);
const stores = values.stores.split(',');
const Q = Number(values.queries);
const GROUPS = Number(values.groups);
const SEED = Number(values.seed);
const budgetMs = Number(values['budget-minutes']) * 60_000;
const began = Date.now();

const report = {
  benchmark: 'vectors',
  machine: machine(),
  dim: DIM,
  groups: GROUPS,
  queries: Q,
  similarity: similarityProfile(new SyntheticFaces(SEED, GROUPS), 100_000),
  sizes: [],
  skipped: [],
};
log(
  `bench:vectors: sizes ${sizes.join(', ')}; stores ${stores.join(', ')}; ${report.machine.cores} cores, load ${report.machine.loadavg.join(' ')}`,
);
log(
  `synthetic set: cosine same identity p1/p50/p99 ${Object.values(report.similarity.same).join('/')}, different ${Object.values(report.similarity.different).join('/')}`,
);

// ---------------------------------------------------------------- Qdrant server

let qdrant = null;
const stopQdrant = () => {
  qdrant?.stop();
  qdrant = null;
};
stopOnSignals(async () => stopQdrant());

if (stores.includes('qdrant')) {
  qdrant = await startQdrant();
  log(`qdrant: ${qdrant.url} (pid ${qdrant.pid})`);
}

// ---------------------------------------------------------------- exact answers

/** Exact top-10 face ids per query for both filters, streaming over the set. */
function exactTop10(size) {
  const gen = new SyntheticFaces(SEED, GROUPS);
  const queries = Array.from({ length: Q }, (_, q) => gen.query(q, size));
  const tops = Object.fromEntries(SEARCH_FILTERS.map((f) => [f, queries.map(() => [])]));
  const searched = Object.fromEntries(
    SEARCH_FILTERS.map((f) => [f, queries.map((q) => new Set(searchedGroups(f, q.group, GROUPS)))]),
  );
  const push = (list, index, score) => {
    if (list.length === 10 && score <= list[9].score) return;
    list.push({ index, score });
    list.sort((a, b) => b.score - a.score);
    if (list.length > 10) list.pop();
  };
  for (let i = 0; i < size; i++) {
    const p = gen.point(i);
    const v = p.vector;
    for (let q = 0; q < Q; q++) {
      const qv = queries[q].vector;
      let s = 0;
      for (let d = 0; d < DIM; d++) s += v[d] * qv[d];
      for (const f of SEARCH_FILTERS) if (searched[f][q].has(p.group)) push(tops[f][q], i, s);
    }
  }
  const ids = (list) => list.map((t) => `f${t.index}`);
  return {
    ...Object.fromEntries(SEARCH_FILTERS.map((f) => [f, tops[f].map(ids)])),
    same_identity_in_top10: round(
      queries.reduce(
        (s, q, i) => s + tops.one_group[i].filter((t) => Math.floor(t.index / 5) === q.identity).length,
        0,
      ) / Q,
      2,
    ),
  };
}

function recall(found, exact) {
  let hits = 0;
  let total = 0;
  for (let q = 0; q < Math.min(found.length, exact.length); q++) {
    const want = new Set(exact[q]);
    hits += found[q].filter((id) => want.has(id)).length;
    total += want.size;
  }
  return total ? round(hits / total, 4) : null;
}

/**
 * Recall of the probe's own identity: of the same-identity faces in the exact top-10 (all 5 stored faces of the
 * identity on this set), the share found in the answer's top-10. recall@10 also counts the other identities that
 * fill the exact top-10 at near-equal, low cosine (~0.2 on this set), which a face search does not need.
 */
function matchRecall(found, exact, identities) {
  const identityOf = (id) => Math.floor(Number(id.slice(1)) / 5);
  let hits = 0;
  let total = 0;
  for (let q = 0; q < Math.min(found.length, exact.length); q++) {
    const want = new Set(exact[q].filter((id) => identityOf(id) === identities[q]));
    hits += found[q].filter((id) => want.has(id)).length;
    total += want.size;
  }
  return total ? round(hits / total, 4) : null;
}

/** Runs one store and size in a child; kills it (and rejects) after timeoutMs. */
function runWorker(message, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = fork(join(ROOT, 'scripts/bench/vectors-worker.mjs'), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const timer = setTimeout(
      () => {
        child.kill('SIGKILL');
        reject(new Error(`stopped: over the ${values['budget-minutes']} min budget`));
      },
      Math.max(1000, timeoutMs),
    );
    child.once('message', (m) => {
      clearTimeout(timer);
      m.ok ? resolve(m.result) : reject(new Error(m.error));
    });
    // An answer, when there is one, arrives before 'exit'; the delay only orders the two events.
    child.once('exit', (code) => {
      clearTimeout(timer);
      setTimeout(() => reject(new Error(`vectors worker exited with ${code} without an answer`)), 100);
    });
    child.send(message);
  });
}

// ---------------------------------------------------------------- run

// Sizes up to 100k always run; a larger one runs only if its estimate (the previous size's wall time scaled by the
// size ratio: loading, indexing and the exact answers grow linearly) fits in what is left of --budget-minutes.
let previous = null;
try {
  for (const size of sizes) {
    const elapsed = Date.now() - began;
    if (size > 100_000 && previous !== null) {
      const estimate = (previous.ms * size) / previous.size;
      if (elapsed + estimate > budgetMs) {
        const reason = `estimated ${round(estimate / 60_000, 1)} min (from the previous size), over the ${values['budget-minutes']} min budget (${round(elapsed / 60_000, 1)} min used)`;
        report.skipped.push({ size, reason });
        log(`size ${size}: skipped: ${reason}`);
        continue;
      }
    }
    const sizeStart = Date.now();
    const entry = { size, loadavg_before: loadNow(), stores: {} };
    // Up to 100k the exact answers are computed here (brute force in JS); above, this takes too long on 2 cores,
    // and Qdrant's own exact search (`exact: true`, a full scan, equal to the JS answers at 10k and 100k) is used.
    let t = performance.now();
    let exact = null;
    if (size <= 100_000 || !stores.includes('qdrant')) {
      log(`size ${size}: exact top-10 of ${Q} probes (brute force in this process) ...`);
      exact = exactTop10(size);
      entry.exact_seconds = round((performance.now() - t) / 1000, 1);
      entry.same_identity_in_exact_top10 = exact.same_identity_in_top10;
      entry.exact_from = 'brute force in bench process';
    } else {
      entry.exact_from = 'Qdrant exact: true (full scan)';
    }
    for (const store of stores) {
      log(`size ${size}: ${store}: loading and searching ...`);
      t = performance.now();
      // Sizes above 100k are bounded by the budget; the others always finish.
      const timeoutMs = size > 100_000 ? budgetMs - (Date.now() - began) : 6 * 3600_000;
      let result;
      try {
        result = await runWorker(
          {
            store,
            size,
            seed: SEED,
            groups: GROUPS,
            queries: Q,
            maxQuerySeconds: Number(values['query-seconds']),
            // Waiting for the graph is bounded by what is left of the budget (at least 30 min).
            indexTimeoutSeconds: Math.max(1800, Math.round(timeoutMs / 1000)),
            qdrant: qdrant ? { url: qdrant.url, pid: qdrant.pid } : null,
            hnsw:
              values['hnsw-m'] || values['hnsw-ef-construct'] || values['full-scan-threshold-kb']
                ? {
                    m: values['hnsw-m'] ? Number(values['hnsw-m']) : undefined,
                    ef_construct: values['hnsw-ef-construct'] ? Number(values['hnsw-ef-construct']) : undefined,
                    full_scan_threshold_kb: values['full-scan-threshold-kb']
                      ? Number(values['full-scan-threshold-kb'])
                      : undefined,
                  }
                : null,
            quantization: values.quantization ?? null,
            efs: values.efs.split(',').map(Number),
            extras: values['qdrant-extras'] && !values['no-qdrant-extras'],
            bulkLoad: values['bulk-load'],
          },
          timeoutMs,
        );
      } catch (err) {
        log(`size ${size}: ${store}: ${err.message.split('\n')[0]}`);
        entry.stores[store] = { error: err.message.split('\n')[0], seconds: round((performance.now() - t) / 1000, 1) };
        continue;
      }
      result.seconds = round((performance.now() - t) / 1000, 1);
      if (!exact) {
        const full = result.configs.find((c) => c.exact);
        exact = full ? Object.fromEntries(SEARCH_FILTERS.map((f) => [f, full.results[f].ids])) : null;
      }
      const probeGen = new SyntheticFaces(SEED, GROUPS);
      const identities = Array.from({ length: Q }, (_, q) => probeGen.query(q, size).identity);
      for (const c of result.configs) {
        for (const [filter, r] of Object.entries(c.results)) {
          r.recall_at_10 = exact ? recall(r.ids, exact[filter]) : null;
          r.match_recall = exact ? matchRecall(r.ids, exact[filter], identities) : null;
          r.queries = r.ids.length;
          delete r.ids;
        }
        const line = Object.entries(c.results)
          .map(
            ([f, r]) =>
              `${f}: p50 ${r.latency_ms.p50} p99 ${r.latency_ms.p99} ms, recall@10 ${r.recall_at_10}, same-identity ${r.match_recall} (${r.queries} q)`,
          )
          .join(' | ');
        log(`  ${store} ${c.name}: ${line}`);
      }
      const { configs: _c, ...facts } = result;
      log(`  ${store}: ${JSON.stringify(facts)}`);
      entry.stores[store] = result;
    }
    entry.seconds = round((Date.now() - sizeStart) / 1000, 1);
    entry.loadavg_after = loadNow();
    report.sizes.push(entry);
    previous = { size, ms: Date.now() - sizeStart };
  }
} finally {
  stopQdrant();
}

// The largest size at which the embedded store's one-query p99 (k=100, as the service asks, all groups) stays under 100 ms.
const embeddedOk = report.sizes
  .filter((s) => s.stores.sqlite?.configs)
  .map((s) => ({
    size: s.size,
    p99: s.stores.sqlite.configs.find((c) => c.limit === 100)?.results.all_groups.latency_ms.p99,
  }))
  .filter((s) => s.p99 != null);
report.embedded_p99_k100_all_groups = embeddedOk;
report.total_minutes = round((Date.now() - began) / 60_000, 1);
log(`done in ${report.total_minutes} min`);
console.log(JSON.stringify(report));
