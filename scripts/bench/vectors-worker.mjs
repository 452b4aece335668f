// A child of bench:vectors (vectors.mjs), one per store and size, so its RSS is the store's (the vectors are generated
// in chunks, never held). Gets { store, size, seed, groups, queries, maxQuerySeconds, qdrant } over IPC, loads the
// synthetic set through the project's adapter, runs the search configurations and answers with latencies, the
// first 10 face ids per query, memory and timings. Not run by itself.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { latencyStats, log, qdrantCall, require, ROOT, round, rssMiB, sleep, waitQdrantIndexed } from './lib.mjs';
import { DIM, SEARCH_FILTERS, SyntheticFaces, searchedGroups } from './synthetic.mjs';

const adapters = require(join(ROOT, 'libs/adapters/dist/index.js'));
const APP = 'bench';
const MODEL = 'bench-model';
const CHUNK = 2000;

const faceId = (index) => `f${index}`;

function pointsOf(gen, from, to) {
  const points = [];
  for (let i = from; i < to; i++) {
    const p = gen.point(i);
    points.push({
      id: faceId(i),
      vector: p.vector,
      payload: { app_id: APP, group_id: p.group, user_id: `i${p.identity}`, face_id: faceId(i), model_id: MODEL },
    });
  }
  return points;
}

/**
 * Runs `search(vector, groupIds, limit)` over the queries, one at a time, for every filter; stops a filter after
 * maxSeconds (at least 20 queries). Returns per filter the latency stats and the first 10 ids of each answer.
 */
async function runQueries(queries, groupsAll, search, { limit, maxSeconds }) {
  const out = {};
  for (const filter of SEARCH_FILTERS) {
    const groupsOf = (q) => searchedGroups(filter, queries[q].group, groupsAll.length);
    // warm-up (first connection, caches)
    for (let q = 0; q < 3; q++) await search(queries[q].vector, groupsOf(q), limit);
    const latencies = [];
    const ids = [];
    const until = performance.now() + maxSeconds * 1000;
    for (let q = 0; q < queries.length; q++) {
      if (q >= 20 && performance.now() > until) break;
      const groupIds = groupsOf(q);
      const start = performance.now();
      const hits = await search(queries[q].vector, groupIds, limit);
      latencies.push(performance.now() - start);
      ids.push(hits.slice(0, 10).map((h) => h.face_id));
    }
    out[filter] = { latency_ms: latencyStats(latencies), ids };
  }
  return out;
}

async function sqliteRun(msg, gen, queries, groupsAll) {
  const dir = mkdtempSync(join(tmpdir(), 'facesearch-bench-vec-'));
  const file = join(dir, 'vectors.db');
  const rssStart = rssMiB(process.pid);
  const store = new adapters.SqliteVecVectorStore({ database: file });
  try {
    await store.init(DIM);
    let start = performance.now();
    for (let i = 0; i < msg.size; i += CHUNK) await store.upsert(pointsOf(gen, i, Math.min(msg.size, i + CHUNK)));
    const loadSeconds = (performance.now() - start) / 1000;
    const rssLoaded = rssMiB(process.pid);
    const search = (vector, groupIds, limit) =>
      store.search(vector, { app_id: APP, group_ids: groupIds, model_id: MODEL, limit });
    const configs = [];
    for (const limit of [10, 100]) {
      start = performance.now();
      const results = await runQueries(queries, groupsAll, search, { limit, maxSeconds: msg.maxQuerySeconds });
      configs.push({ name: `vec0 exact KNN, k=${limit}`, limit, results });
    }
    return {
      load_seconds: round(loadSeconds, 1),
      db_file_mib: round(statSync(file).size / 2 ** 20),
      rss_mib: { node_start: rssStart, after_load: rssLoaded, after_queries: rssMiB(process.pid) },
      configs,
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function qdrantFetch(url, method, path, body, tries = 5) {
  let res;
  try {
    res = await fetch(`${url}${path}`, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    // A dropped connection (seen once at ~600k points while Qdrant was busy building segments): try again.
    const cause = err.cause?.code ?? err.cause?.message ?? '';
    if (tries <= 1) throw new Error(`Qdrant ${method} ${path}: ${err.message} ${cause}`);
    log(`qdrant ${method} ${path}: ${err.message} ${cause}; retrying`);
    await new Promise((r) => setTimeout(r, 2000));
    return qdrantFetch(url, method, path, body, tries - 1);
  }
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`Qdrant ${method} ${path}: HTTP ${res.status} ${JSON.stringify(json).slice(0, 300)}`);
  return json.result;
}

const waitIndexed = (url, collection, timeoutSeconds, minIndexed = 0) =>
  waitQdrantIndexed(() => qdrantFetch(url, 'GET', `/collections/${collection}`), timeoutSeconds, minIndexed);

async function qdrantRun(msg, gen, queries, groupsAll) {
  const { url, pid } = msg.qdrant;
  const collection = `bench_vectors_${msg.size}`;
  await qdrantFetch(url, 'DELETE', `/collections/${collection}`).catch(() => undefined);
  // The adapter creates the collection (its HNSW graph and quantisation: msg.hnsw and msg.quantization, else the
  // adapter's defaults; vectors in RAM) and its payload indexes (app_id as tenant, group_id, user_id, model_id).
  const store = new adapters.QdrantVectorStore({
    url,
    collection,
    hnsw: msg.hnsw ?? undefined,
    quantization: msg.quantization ?? undefined,
  });
  await store.init(DIM);
  const created = await qdrantFetch(url, 'GET', `/collections/${collection}`);
  const hnsw = {
    m: created.config.hnsw_config.m,
    ef_construct: created.config.hnsw_config.ef_construct,
    full_scan_threshold_kb: created.config.hnsw_config.full_scan_threshold,
  };
  const rssBefore = rssMiB(pid);
  const indexingThreshold = created.config.optimizer_config.indexing_threshold;
  const setIndexingThreshold = (value) =>
    qdrantFetch(url, 'PATCH', `/collections/${collection}`, { optimizers_config: { indexing_threshold: value } });
  if (msg.bulkLoad) await setIndexingThreshold(0);
  try {
    let start = performance.now();
    // Upload straight through the REST API, 2 requests in flight, without waiting for each to be applied.
    let next = 0;
    const uploader = async () => {
      while (next < msg.size) {
        const from = next;
        next = Math.min(msg.size, next + 1000);
        const points = pointsOf(gen, from, next).map((p) => ({
          id: adapters.qdrantPointId(APP, p.id),
          vector: Array.from(p.vector),
          // As the adapter writes it (the REST upload skips the adapter for speed).
          payload: { ...p.payload, scope: adapters.qdrantScope(APP, p.payload.group_id, MODEL) },
        }));
        await qdrantFetch(url, 'PUT', `/collections/${collection}/points?wait=false`, { points });
      }
    };
    await Promise.all([uploader(), uploader()]);
    const uploadSeconds = (performance.now() - start) / 1000;
    if (msg.bulkLoad) {
      // Applied (wait=false above) before the graph is switched back on; then wait until the graph holds them.
      await qdrantFetch(url, 'POST', `/collections/${collection}/points/count`, { exact: true });
      await waitIndexed(url, collection, msg.indexTimeoutSeconds);
      await setIndexingThreshold(indexingThreshold ?? null);
    }
    const info = await waitIndexed(url, collection, msg.indexTimeoutSeconds, msg.bulkLoad ? msg.size : 0);
    const indexSeconds = (performance.now() - start) / 1000;
    const rssIndexed = rssMiB(pid);

    // The adapter's filter: one `scope` condition (app, group and model).
    const filterOf = (groupIds) => ({
      must: [{ key: 'scope', match: { any: groupIds.map((g) => adapters.qdrantScope(APP, g, MODEL)) } }],
    });
    const rest =
      (params, transport = 'http') =>
      async (vector, groupIds, limit) => {
        const post =
          transport === 'http' ? (p, b) => qdrantCall(url, 'POST', p, b) : (p, b) => qdrantFetch(url, 'POST', p, b);
        const r = await post(`/collections/${collection}/points/query`, {
          query: Array.from(vector),
          filter: filterOf(groupIds),
          limit,
          with_payload: ['face_id'],
          params,
        });
        return r.points.map((p) => ({ face_id: p.payload.face_id }));
      };
    const shipped = (vector, groupIds, limit) =>
      store.search(vector, { app_id: APP, group_ids: groupIds, model_id: MODEL, limit });

    const configs = [];
    const measure = async (name, search, limit, extra = {}) => {
      const results = await runQueries(queries, groupsAll, search, { limit, maxSeconds: msg.maxQuerySeconds });
      configs.push({ name, limit, ...extra, results });
    };
    const graph = `m ${hnsw.m}, ef_construct ${hnsw.ef_construct}, full scan under ${hnsw.full_scan_threshold_kb} KB`;
    // One unmeasured pass first: the first queries after indexing run slower (at 300k the adapter's first rows took
    // 11.1 ms p50 and the same queries 8.0 later), and every row should meet the same warm server.
    await runQueries(queries, groupsAll, shipped, { limit: 10, maxSeconds: msg.maxQuerySeconds });
    await measure(`adapter as shipped (${graph}, default hnsw_ef), k=10`, shipped, 10, hnsw);
    await measure(
      `adapter as shipped (${graph}, default hnsw_ef), k=100 (the service asks top_k*20)`,
      shipped,
      100,
      hnsw,
    );
    if (msg.extras) {
      // The same query over two HTTP clients: fetch (undici, as the Qdrant JS client) and node:http.
      await measure(
        'REST via fetch, hnsw_ef 256, k=100, with_payload [face_id]',
        rest({ hnsw_ef: 256 }, 'fetch'),
        100,
        {
          hnsw_ef: 256,
        },
      );
      await measure('REST via node:http, hnsw_ef 256, k=100, with_payload [face_id]', rest({ hnsw_ef: 256 }), 100, {
        hnsw_ef: 256,
      });
    }
    for (const ef of msg.efs ?? [64, 128, 256, 512])
      await measure(`REST ${graph}, hnsw_ef ${ef}, k=10`, rest({ hnsw_ef: ef }), 10, { ...hnsw, hnsw_ef: ef });
    await measure('REST exact (full scan), k=10', rest({ exact: true }), 10, { exact: true });
    // The adapter again, last: a check that the warm-up pass above was enough (the first and last rows agree).
    await measure(
      `adapter as shipped (${graph}, default hnsw_ef), k=10, again after the other rows`,
      shipped,
      10,
      hnsw,
    );
    const rssQueried = rssMiB(pid);
    const base = {
      hnsw_config: { ...hnsw, on_disk: false },
      points: info.points_count,
      indexed_vectors: info.indexed_vectors_count,
      segments: info.segments_count,
      upload_seconds: round(uploadSeconds, 1),
      upload_and_index_seconds: round(indexSeconds, 1),
      bulk_load: msg.bulkLoad === true,
    };
    // --no-qdrant-extras: the graph as created only (no fetch comparison, quantisation or m 32 rebuild).
    if (!msg.extras) {
      return {
        ...base,
        rss_mib: { qdrant_before: rssBefore, qdrant_indexed: rssIndexed, qdrant_after_queries: rssQueried },
        configs,
      };
    }

    // Scalar int8 quantisation kept in RAM, originals in RAM too; searched with rescoring on the originals.
    start = performance.now();
    await qdrantFetch(url, 'PATCH', `/collections/${collection}`, {
      quantization_config: { scalar: { type: 'int8', quantile: 0.99, always_ram: true } },
    });
    await sleep(1500);
    await waitIndexed(url, collection, msg.indexTimeoutSeconds);
    const quantizeSeconds = (performance.now() - start) / 1000;
    for (const ef of msg.efs ?? [128, 256]) {
      await measure(
        `REST int8 quantised, hnsw_ef ${ef}, rescore, oversampling 2, k=10`,
        rest({ hnsw_ef: ef, quantization: { rescore: true, oversampling: 2 } }),
        10,
        { hnsw_ef: ef, quantization: 'int8 rescore x2' },
      );
    }
    const rssQuantized = rssMiB(pid);
    const result = {
      ...base,
      quantize_seconds: round(quantizeSeconds, 1),
      rss_mib: {
        qdrant_before: rssBefore,
        qdrant_indexed: rssIndexed,
        qdrant_after_queries: rssQueried,
        qdrant_quantized: rssQuantized,
      },
      configs,
    };
    // The collection already has the denser graph (the adapter's default): no rebuild to measure.
    if (hnsw.m >= 32 && hnsw.ef_construct >= 256) return result;

    // A denser graph: m 32, ef_construct 256 (Qdrant rebuilds the index), still int8 with rescoring.
    start = performance.now();
    await qdrantFetch(url, 'PATCH', `/collections/${collection}`, { hnsw_config: { m: 32, ef_construct: 256 } });
    await sleep(1500);
    await waitIndexed(url, collection, msg.indexTimeoutSeconds);
    result.rebuild_m32_seconds = round((performance.now() - start) / 1000, 1);
    for (const ef of [128, 256]) {
      await measure(
        `REST m 32, ef_construct 256, int8 quantised, hnsw_ef ${ef}, rescore, oversampling 2, k=10`,
        rest({ hnsw_ef: ef, quantization: { rescore: true, oversampling: 2 } }),
        10,
        { m: 32, ef_construct: 256, hnsw_ef: ef, quantization: 'int8 rescore x2' },
      );
    }
    await measure(
      'REST m 32, ef_construct 256, float vectors, hnsw_ef 256, k=10',
      rest({ hnsw_ef: 256, quantization: { ignore: true } }),
      10,
      { m: 32, ef_construct: 256, hnsw_ef: 256 },
    );
    result.rss_mib.qdrant_quantized_m32 = rssMiB(pid);
    return result;
  } finally {
    await qdrantFetch(url, 'DELETE', `/collections/${collection}`).catch(() => undefined);
  }
}

process.once('message', async (msg) => {
  let answer;
  try {
    const gen = new SyntheticFaces(msg.seed, msg.groups);
    const queries = Array.from({ length: msg.queries }, (_, q) => gen.query(q, msg.size));
    const groupsAll = Array.from({ length: msg.groups }, (_, g) => `g${g}`);
    const result =
      msg.store === 'sqlite'
        ? await sqliteRun(msg, gen, queries, groupsAll)
        : await qdrantRun(msg, gen, queries, groupsAll);
    answer = { ok: true, result };
  } catch (err) {
    answer = { ok: false, error: err.stack ?? String(err) };
  }
  // Exit only once the (large) answer has gone through the IPC channel.
  process.send(answer, () => process.exit(0));
});
