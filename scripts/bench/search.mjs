#!/usr/bin/env node
// pnpm bench:search [--mode embedded|distributed|both] [--faces 100000] [--real 1000] [--requests 100]
//                   [--levels 1,4,16] [--topology 2x2] [--probes all|uniform] [--vector-store sqlite|qdrant]
//                   [--qdrant-quantization none|int8] [--client http|fetch] [--group-faces 4]
//
// Latency p50/p95/p99 and throughput of POST /v1/detect, /v1/compare (two images) and /v1/search at each
// concurrency level (--requests requests per level, bounded), through the public API, on the embedded default
// (gateway child process, temp DATA_DIR; --vector-store qdrant: with VECTOR_STORE=qdrant on a Qdrant server of its
// own, the models still in process) and the local distributed stack (scripts/stack/up.sh, temp STACK_DIR, free
// ports, --topology DxE workers; E = 0: no embedder, the detectors embed, one gRPC call per image). Beside them,
// the raw model time per request: FaceEngine in this process (one ONNX thread), median over the same probes: detect = engine.detect(probe), search = engine.analyze(probe, maxFaces 1),
// compare = analyze(a) + analyze(b); and the raw p95/p99, so that a tail the photos themselves cause (a 4,600 px group
// photo costs the model ~5x a portrait) is not read as the service's. --probes uniform sends only the probes whose raw
// search time is within 25 % of the median (the library is the same): the latency spread left is the service's own.
// The searched library (one group) holds --faces faces:
//   - --real real-photo faces enrolled through POST /v1/imports: variants of the photos (mirrored, rescaled to
//     40-90 %, brightness 0.8-1.2, made here with sharp; the unmodified photo is never enrolled, it is the probe),
//     one user per variant;
//   - the rest synthetic vectors (scripts/bench/synthetic.mjs) written straight into the vector store with the
//     project's adapter: SqliteVecVectorStore on DATA_DIR/facesearch.db (embedded) or QdrantVectorStore on the
//     stack's collection (distributed), same app ('default'), group and model id, no face records (they score far
//     below the match threshold, so the service never looks them up). Qdrant is waited on until green.
// Inside the service: the p50 of each stage the answer's Server-Timing header names (analyze = the models, through
// gRPC when distributed; engine = the part of analyze the engine reports as its own work, so analyze - engine is the
// hand-off and transport; vectors = the vector store; library = the records; gateway = the whole request inside the
// gateway, so `around` = gateway minus the stages: upload, multipart, auth, validation) and `outside` = the client's
// latency minus the gateway's (the bench's HTTP client, serialising the answer), all from the same requests.
// --qdrant-quantization sets QDRANT_QUANTIZATION for the service (the collection it creates; unset: its default,
// int8; QDRANT_HNSW_M in the bench's environment reaches the service too, e.g. 32 for a graph). --client: the bench's
// HTTP client, node:http with the multipart body built in one buffer (default) or undici's fetch with FormData.
// `search_mn` (--group-faces K > 1; 0 skips it): POST /v1/search with max_faces K on group photos made here of K
// sent probes of different people in a grid (sharp), so one request searches K faces; raw = engine.analyze(photo,
// maxFaces K); `top1_same_identity` there = the share of faces whose best match is one of the photo's people. The
// faces' searches run at once: a stage's time is how long any of them was in it, and the vectors and library stages of
// different faces overlap, so `around` reads a little low there.
// `search_paired`: after the levels, REQUESTS searches at c=1 each next to a raw model run of its probe, and the
// per-pair difference (see pairedSearch).
// Memory: RSS of every process after loading and after the load levels. Prints readable lines, then one JSON object.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  ensureGroup,
  formatRss,
  identityOf,
  imageBlob,
  latencyStats,
  listPhotos,
  loadEngine,
  loadNow,
  log,
  machine,
  median,
  require,
  ROOT,
  round,
  RssSampler,
  runImport,
  snapshotRss,
  startEmbedded,
  qdrantCall,
  startQdrant,
  startStack,
  stopOnSignals,
  waitQdrantIndexed,
} from './lib.mjs';
import { DIM, SyntheticFaces } from './synthetic.mjs';

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'both' },
    faces: { type: 'string', default: '100000' },
    real: { type: 'string', default: '1000' },
    requests: { type: 'string', default: '100' },
    levels: { type: 'string', default: '1,4,16' },
    topology: { type: 'string', default: '2x2' },
    probes: { type: 'string', default: 'all' },
    'vector-store': { type: 'string', default: 'sqlite' },
    // Unset: the service's default (int8); the collection the service creates.
    'qdrant-quantization': { type: 'string' },
    client: { type: 'string', default: 'http' },
    'group-faces': { type: 'string', default: '4' },
  },
});
if (values['qdrant-quantization'] && !['none', 'int8'].includes(values['qdrant-quantization']))
  throw new Error('--qdrant-quantization: none or int8');
if (!['http', 'fetch'].includes(values.client)) throw new Error('--client: http or fetch');
const CLIENT = values.client;
const QUANTIZATION_ENV = values['qdrant-quantization'] ? { QDRANT_QUANTIZATION: values['qdrant-quantization'] } : {};
if (values.probes !== 'all' && values.probes !== 'uniform') throw new Error('--probes: all or uniform');
if (!['sqlite', 'qdrant'].includes(values['vector-store'])) throw new Error('--vector-store: sqlite or qdrant');
// The embedded gateway over a Qdrant server (VECTOR_STORE=qdrant): the models in process, the vectors in Qdrant.
const EMBEDDED_QDRANT = values['vector-store'] === 'qdrant';
const modes = values.mode === 'both' ? ['embedded', 'distributed'] : [values.mode];
const FACES = Number(values.faces);
const REAL = Number(values.real);
const REQUESTS = Number(values.requests);
const LEVELS = values.levels.split(',').map(Number);
const [DETECTORS, EMBEDDERS] = values.topology.split('x').map(Number);
const GROUP = 'bench_search';
// M:N search (`search_mn`): photos made of GROUP_FACES probes of different people side by side, max_faces GROUP_FACES.
const GROUP_FACES = Number(values['group-faces']);
if (!Number.isInteger(GROUP_FACES) || GROUP_FACES < 0 || GROUP_FACES > 10) throw new Error('--group-faces: 0-10');
const ENDPOINTS = ['detect', 'compare', 'search', ...(GROUP_FACES > 1 ? ['search_mn'] : [])];
const APP = 'default';
// The enrolled users are the probes' identities' variants: `<identity>_v<k>`, with what an id cannot hold replaced.
const variantUserId = (identity, k) => `${identity}_v${k}`.replace(/[^A-Za-z0-9_-]/g, '_');
const isVariantOf = (userId, identity) => userId.startsWith(variantUserId(identity, ''));

const adapters = require(join(ROOT, 'libs/adapters/dist/index.js'));
const sharp = createRequire(join(ROOT, 'libs/face-engine/package.json'))('sharp');

const { source, files } = listPhotos();
const photos = files.map((path) => ({ path, identity: identityOf(path), data: readFileSync(path) }));
const report = {
  benchmark: 'search',
  machine: machine(),
  source,
  faces: FACES,
  real: REAL,
  requests: REQUESTS,
  client: values.client,
  qdrant_quantization: values['qdrant-quantization'] ?? 'the service default (int8)',
  runs: [],
};
log(
  `bench:search: library ${FACES} faces (${REAL} real-photo variants), ${REQUESTS} requests per level ${LEVELS.join('/')}; ${report.machine.cores} cores, load ${report.machine.loadavg.join(' ')}`,
);

// ---------------------------------------------------------------- probes and raw model time

const { FaceEngine } = loadEngine();
const engine = await FaceEngine.create({ threads: 1 });
const probes = [];
for (const p of photos) {
  try {
    if ((await engine.analyze(p.data, { maxFaces: 1 })).faces.length > 0) probes.push(p);
  } catch {
    // not usable as a probe
  }
}
const timeIt = async (fn) => {
  const start = performance.now();
  await fn();
  return performance.now() - start;
};
await engine.analyze(probes[0].data, { maxFaces: 1 }); // warm-up: the first run of each session is slower
for (const p of probes) p.rawDetectMs = await timeIt(() => engine.detect(p.data));
// The embedding is kept for the Qdrant-alone queries (qdrantPaired): the one the service computes for the probe.
for (const p of probes)
  p.rawSearchMs = await timeIt(async () => {
    p.embedding = (await engine.analyze(p.data, { maxFaces: 1 })).faces[0].embedding;
  });
// What the load levels send: every probe, or (--probes uniform) those whose model cost is near the median's.
const typicalMs = median(probes.map((p) => p.rawSearchMs));
const sent =
  values.probes === 'uniform' ? probes.filter((p) => Math.abs(p.rawSearchMs - typicalMs) <= 0.25 * typicalMs) : probes;
// Compare pairs: two photos of one identity (same), and neighbours in the list otherwise.
const byIdentity = new Map();
for (const p of sent) byIdentity.set(p.identity, [...(byIdentity.get(p.identity) ?? []), p]);
const pairs = sent.map((p, i) => {
  const mates = byIdentity.get(p.identity).filter((q) => q !== p);
  return [p, mates[0] ?? sent[(i + 1) % sent.length]];
});
const rawMs = { detect: sent.map((p) => p.rawDetectMs), search: sent.map((p) => p.rawSearchMs), compare: [] };
for (const [a, b] of pairs) {
  rawMs.compare.push(
    await timeIt(async () => {
      await engine.analyze(a.data, { maxFaces: 1 });
      await engine.analyze(b.data, { maxFaces: 1 });
    }),
  );
}
// Group photos for search_mn: K probes of K different identities in a grid, each in a square cell.
const groupPhotos = [];
if (GROUP_FACES > 1) {
  const CELL = 400;
  const cols = Math.ceil(Math.sqrt(GROUP_FACES));
  const rows = Math.ceil(GROUP_FACES / cols);
  const background = { r: 128, g: 128, b: 128 };
  const identities = [...byIdentity.keys()];
  for (let start = 0; groupPhotos.length < 12 && start < identities.length * 4; start++) {
    const people = Array.from({ length: GROUP_FACES }, (_, k) => identities[(start + k * 3) % identities.length]);
    if (new Set(people).size < GROUP_FACES) break;
    const members = people.map((id, k) => {
      const mine = byIdentity.get(id);
      return mine[(start + k) % mine.length];
    });
    const cells = await Promise.all(
      members.map((p) =>
        sharp(p.data).rotate().resize(CELL, CELL, { fit: 'contain', background }).removeAlpha().png().toBuffer(),
      ),
    );
    const data = await sharp({ create: { width: cols * CELL, height: rows * CELL, channels: 3, background } })
      .composite(cells.map((input, k) => ({ input, left: (k % cols) * CELL, top: Math.floor(k / cols) * CELL })))
      .jpeg({ quality: 90 })
      .toBuffer();
    const found = (await engine.analyze(data, { maxFaces: GROUP_FACES })).faces.length;
    if (found < GROUP_FACES) continue; // a face too small for the detector once in a cell: not a fair probe
    groupPhotos.push({ data, path: 'group.jpg', identities: members.map((p) => p.identity) });
  }
  for (const g of groupPhotos) g.rawMs = await timeIt(() => engine.analyze(g.data, { maxFaces: GROUP_FACES }));
  rawMs.search_mn = groupPhotos.map((g) => g.rawMs);
  log(`search_mn: ${groupPhotos.length} group photos of ${GROUP_FACES} faces (${cols}x${rows} cells of ${CELL} px)`);
  if (groupPhotos.length === 0) throw new Error('--group-faces: no group photo with every face found');
}
const modelId = engine.modelId;
// The engine stays open: the raw search time is taken again after each target's load levels, because this VM's speed
// drifts within a run (the service's engine stage then reads against both).
// Over the probes in the order a level sends them (request i uses probe i mod probes), so that with fewer requests
// than probes the raw figures and the service's describe the same photos.
const asSent = (v) => Array.from({ length: REQUESTS }, (_, i) => v[i % v.length]);
report.raw_model_ms = Object.fromEntries(Object.entries(rawMs).map(([k, v]) => [k, round(median(asSent(v)))]));
report.raw_model_latency_ms = Object.fromEntries(Object.entries(rawMs).map(([k, v]) => [k, latencyStats(asSent(v))]));
report.probes = probes.length;
report.probes_sent = { mode: values.probes, count: sent.length };
const rawTail = (k) => {
  const st = report.raw_model_latency_ms[k];
  return `${k} p50 ${st.p50} p95 ${st.p95} p99 ${st.p99} ms (p99/p50 ${round(st.p99 / st.p50, 2)})`;
};
log(
  `raw model time per request (over the ${REQUESTS} requests of a level, 1 ONNX thread, ${sent.length} of ${probes.length} probes sent, --probes ${values.probes}): ${Object.keys(rawMs).map(rawTail).join('; ')}`,
);

// ---------------------------------------------------------------- library

/** Variant k (>= 1) of a photo: mirrored on odd k, rescaled, brightness changed; JPEG. */
async function variant(photo, k) {
  const meta = await sharp(photo.data).metadata();
  const scale = 0.9 - ((k * 0.13) % 0.5);
  const width = Math.max(160, Math.round((meta.width ?? 800) * scale));
  let img = sharp(photo.data).rotate().resize({ width });
  if (k % 2 === 1) img = img.flop();
  img = img.modulate({ brightness: 0.8 + ((k * 0.07) % 0.4) });
  return img.jpeg({ quality: 88 }).toBuffer();
}

async function enrolmentItems() {
  const items = [];
  for (let k = 1; items.length < REAL; k++) {
    for (const p of probes) {
      if (items.length >= REAL) break;
      items.push({
        user_id: variantUserId(p.identity, k),
        name: `${p.identity}_${items.length}.jpg`,
        data: await variant(p, k),
      });
    }
  }
  return items;
}

/** The Qdrant server and collection of a target (the embedded gateway's own, or the stack's); url undefined if none. */
const qdrantOf = (target) => ({
  url: target.qdrant?.url ?? target.services?.QDRANT_URL,
  collection: target.qdrantCollection ?? 'faces',
});

async function fillSynthetic(target, count) {
  if (count <= 0) return 0;
  const { url: qdrantUrl, collection } = qdrantOf(target);
  const store = qdrantUrl
    ? new adapters.QdrantVectorStore({ url: qdrantUrl, collection })
    : new adapters.SqliteVecVectorStore({ database: join(target.dataDir, 'facesearch.db') });
  await store.init(DIM);
  const gen = new SyntheticFaces(7, 1);
  const start = performance.now();
  try {
    for (let i = 0; i < count; i += 2000) {
      const points = [];
      for (let j = i; j < Math.min(count, i + 2000); j++) {
        const id = `syn${j}`;
        points.push({
          id,
          vector: gen.point(j).vector,
          payload: {
            app_id: APP,
            group_id: GROUP,
            user_id: `synu${Math.floor(j / 5)}`,
            face_id: id,
            model_id: modelId,
          },
        });
      }
      await store.upsert(points);
    }
  } finally {
    await store.close();
  }
  if (qdrantUrl) {
    const info = () => qdrantCall(qdrantUrl, 'GET', `/collections/${collection}`);
    await waitQdrantIndexed(info, 30 * 60);
  }
  return (performance.now() - start) / 1000;
}

/** The embedded gateway with VECTOR_STORE=qdrant on a Qdrant server of its own; stop() stops both. */
async function startEmbeddedOnQdrant() {
  const qdrant = await startQdrant();
  try {
    const gateway = await startEmbedded({
      env: { VECTOR_STORE: 'qdrant', QDRANT_URL: qdrant.url, ...QUANTIZATION_ENV },
      client: CLIENT,
    });
    return {
      ...gateway,
      qdrant,
      pids: () => ({ ...gateway.pids(), qdrant: qdrant.pid }),
      stop: async () => {
        await gateway.stop();
        qdrant.stop();
      },
    };
  } catch (err) {
    qdrant.stop();
    throw err;
  }
}

// ---------------------------------------------------------------- load

function requestFor(endpoint, i) {
  const form = new FormData();
  if (endpoint === 'detect') {
    const p = sent[i % sent.length];
    form.append('image', imageBlob(p.data, p.path), 'probe.jpg');
  } else if (endpoint === 'compare') {
    const [a, b] = pairs[i % pairs.length];
    form.append('image_a', imageBlob(a.data, a.path), 'a.jpg');
    form.append('image_b', imageBlob(b.data, b.path), 'b.jpg');
  } else if (endpoint === 'search_mn') {
    const g = groupPhotos[i % groupPhotos.length];
    form.append('image', imageBlob(g.data, g.path), 'group.jpg');
    form.append('group_ids', GROUP);
    form.append('top_k', '5');
    form.append('max_faces', String(GROUP_FACES));
  } else {
    const p = sent[i % sent.length];
    form.append('image', imageBlob(p.data, p.path), 'probe.jpg');
    form.append('group_ids', GROUP);
    form.append('top_k', '5');
  }
  return form;
}

/** `analyze;dur=63.2, vectors;dur=21.0` -> { analyze: 63.2, vectors: 21 } */
function parseServerTiming(header) {
  const stages = {};
  for (const entry of (header ?? '').split(',')) {
    const [name, dur] = entry.trim().split(';dur=');
    if (name && dur !== undefined) stages[name] = Number(dur);
  }
  return stages;
}

const pathOf = (endpoint) => `/v1/${endpoint === 'search_mn' ? 'search' : endpoint}`;

async function level(api, endpoint, concurrency) {
  const latencies = [];
  // Per stage, from the service's Server-Timing header; `outside` = the client's latency minus every stage (HTTP,
  // multipart parsing, auth, JSON, queueing in the gateway).
  const stages = {};
  const errors = {};
  let top1 = 0;
  let searched = 0;
  let next = 0;
  const start = performance.now();
  const worker = async () => {
    while (next < REQUESTS) {
      const i = next++;
      const form = requestFor(endpoint, i);
      const t = performance.now();
      try {
        const meta = {};
        const body = await api.request('POST', pathOf(endpoint), form, meta);
        const ms = performance.now() - t;
        latencies.push(ms);
        const timed = parseServerTiming(meta.serverTiming);
        // `engine` lies inside `analyze` (the engine's own share of it) and the stages inside `gateway` (the whole
        // request in the gateway): `around` = gateway minus the stages (upload, multipart, auth, validation);
        // `outside` = the client's latency minus the gateway's (HTTP client, serialising the answer, the network).
        const stagesMs = Object.entries(timed).reduce(
          (sum, [name, v]) => (name === 'engine' || name === 'gateway' ? sum : sum + v),
          0,
        );
        if (timed.gateway !== undefined) {
          timed.around = timed.gateway - stagesMs;
          timed.outside = ms - timed.gateway;
        } else {
          timed.outside = ms - stagesMs;
        }
        for (const [name, v] of Object.entries(timed)) {
          stages[name] ??= [];
          stages[name].push(v);
        }
        if (endpoint === 'search_mn') {
          const g = groupPhotos[i % groupPhotos.length];
          for (const face of body.results ?? []) {
            searched++;
            const best = face.matches?.[0]?.user_id ?? '';
            if (g.identities.some((identity) => isVariantOf(best, identity))) top1++;
          }
        }
        if (endpoint === 'search') {
          searched++;
          const best = body.results?.[0]?.matches?.[0]?.user_id ?? '';
          if (isVariantOf(best, sent[i % sent.length].identity)) top1++;
        }
      } catch (err) {
        const code = err.body?.error?.code ?? String(err.status ?? err.message);
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - start) / 1000;
  const latency = latencyStats(latencies);
  return {
    concurrency,
    latency_ms: latency,
    p99_over_p50: round(latency.p99 / latency.p50, 2),
    stages_ms: Object.fromEntries(Object.entries(stages).map(([name, v]) => [name, latencyStats(v)])),
    throughput_per_s: round(latencies.length / seconds, 2),
    errors,
    ...(endpoint.startsWith('search') ? { top1_same_identity: round(top1 / Math.max(1, searched), 3) } : {}),
  };
}

// ---------------------------------------------------------------- search paired with the raw model

/**
 * The search goal's reading without the VM's drift: REQUESTS searches at c=1, each next to a raw model run of the
 * same probe (engine.analyze, maxFaces 1, this process's engine; the order alternating per probe), so the two
 * figures of a pair see the same machine. The raw loops before and after the levels moved by up to 20 % within one
 * run on this VM (BENCHMARKS.md, sessions 15-16); `overhead` is the service's latency minus its pair's raw time.
 */
async function pairedSearch(api) {
  const service = [];
  const raw = [];
  const overhead = [];
  for (let i = 0; i < REQUESTS; i++) {
    const p = sent[i % sent.length];
    const runRaw = () => timeIt(() => engine.analyze(p.data, { maxFaces: 1 }));
    const runService = () => timeIt(() => api.request('POST', pathOf('search'), requestFor('search', i)));
    let rawMs;
    let serviceMs;
    if (i % 2 === 0) {
      rawMs = await runRaw();
      serviceMs = await runService();
    } else {
      serviceMs = await runService();
      rawMs = await runRaw();
    }
    service.push(serviceMs);
    raw.push(rawMs);
    overhead.push(serviceMs - rawMs);
  }
  return { service: latencyStats(service), raw: latencyStats(raw), overhead: latencyStats(overhead) };
}

// ---------------------------------------------------------------- Qdrant alone, float vs int8

/**
 * The adapter's search query sent straight to Qdrant with the probes' own embeddings, in turn per probe (the order
 * rotating): the library is one group, so the adapter asks without the filter (limit 20, payload, hnsw_ef 256), with
 * the float vectors (`quantization.ignore`) and with the int8 ones rescored (oversampling 2; on a collection without
 * int8 vectors this is the float search again); and the float search with the scope filter (what a filter costs;
 * same answer). Paired, so all see the same machine. Top-1 agreement: the same first point as the float search's.
 */
async function qdrantPaired(qdrantUrl, collection, passes = 3) {
  const filter = { must: [{ key: 'scope', match: { value: adapters.qdrantScope(APP, GROUP, modelId) } }] };
  const kinds = [
    ['float', { params: { hnsw_ef: 256, quantization: { ignore: true } } }],
    ['int8', { params: { hnsw_ef: 256, quantization: { ignore: false, rescore: true, oversampling: 2 } } }],
    ['float_filtered', { filter, params: { hnsw_ef: 256, quantization: { ignore: true } } }],
  ];
  const latencies = Object.fromEntries(kinds.map(([kind]) => [kind, []]));
  const agree = Object.fromEntries(kinds.map(([kind]) => [kind, 0]));
  let asked = 0;
  for (let pass = 0; pass < passes; pass++) {
    for (const [i, p] of sent.entries()) {
      const first = {};
      for (let k = 0; k < kinds.length; k++) {
        const [kind, body] = kinds[(i + pass + k) % kinds.length];
        const t = performance.now();
        const answer = await qdrantCall(qdrantUrl, 'POST', `/collections/${collection}/points/query`, {
          query: Array.from(p.embedding),
          limit: 20,
          with_payload: true,
          with_vector: false,
          ...body,
        });
        latencies[kind].push(performance.now() - t);
        first[kind] = answer.points[0]?.id;
      }
      asked++;
      for (const [kind] of kinds) if (first[kind] === first.float) agree[kind]++;
    }
  }
  return Object.fromEntries(
    kinds.map(([kind]) => [kind, { ...latencyStats(latencies[kind]), top1_as_float: round(agree[kind] / asked, 3) }]),
  );
}

// ---------------------------------------------------------------- run

let current = null;
stopOnSignals(async () => current?.stop());
const enrolment = await enrolmentItems();
log(`enrolment set: ${enrolment.length} variants of ${probes.length} photos`);

for (const mode of modes) {
  const label =
    mode === 'embedded'
      ? `embedded${EMBEDDED_QDRANT ? ' + Qdrant' : ''}`
      : `distributed ${DETECTORS}d+${EMBEDDERS}e+1i`;
  log(`${label}: starting ...`);
  // Without embedders the detectors embed the enrolment imports too.
  const stackEnv = { ...QUANTIZATION_ENV, ...(EMBEDDERS === 0 ? { IMPORT_EMBED: 'inline' } : {}) };
  current =
    mode === 'embedded'
      ? EMBEDDED_QDRANT
        ? await startEmbeddedOnQdrant()
        : await startEmbedded({ client: CLIENT })
      : await startStack({ detectors: DETECTORS, embedders: EMBEDDERS, env: stackEnv, client: CLIENT });
  try {
    const api = current.api;
    await ensureGroup(api, GROUP);
    const imported = await runImport(api, GROUP, enrolment, { chunk: 50 });
    log(
      `${label}: enrolled ${imported.succeeded} real-photo faces in ${round(imported.seconds, 1)} s (${imported.failed} failed ${JSON.stringify(imported.failures)})`,
    );
    const synthetic = FACES - imported.succeeded;
    const fillSeconds = await fillSynthetic(current, synthetic);
    log(
      `${label}: wrote ${Math.max(0, synthetic)} synthetic vectors straight into the vector store in ${round(fillSeconds, 1)} s`,
    );
    const rssLoaded = snapshotRss(current.pids());
    log(`${label}: RSS MiB with the library loaded: ${formatRss(rssLoaded)}`);
    // Warm-up: a few requests of each kind.
    for (const endpoint of ENDPOINTS)
      for (let i = 0; i < 3; i++) await api.request('POST', pathOf(endpoint), requestFor(endpoint, i));
    const sampler = new RssSampler(current.pids());
    const run = {
      target: label,
      enrolled_real: imported.succeeded,
      synthetic: Math.max(0, synthetic),
      enrol_seconds: round(imported.seconds, 1),
      synthetic_fill_seconds: round(fillSeconds, 1),
      loadavg_before: loadNow(),
      endpoints: {},
    };
    for (const endpoint of ENDPOINTS) {
      run.endpoints[endpoint] = [];
      for (const c of LEVELS) {
        const r = await level(api, endpoint, c);
        run.endpoints[endpoint].push(r);
        const err = Object.keys(r.errors).length ? ` errors ${JSON.stringify(r.errors)}` : '';
        const acc = r.top1_same_identity != null ? `, top-1 same identity ${r.top1_same_identity}` : '';
        log(
          `${label}: ${endpoint.padEnd(7)} c=${String(c).padEnd(2)} p50 ${r.latency_ms.p50} p95 ${r.latency_ms.p95} p99 ${r.latency_ms.p99} ms (p99/p50 ${r.p99_over_p50}), ${r.throughput_per_s} req/s` +
            ` (raw model p50 ${report.raw_model_ms[endpoint]}, p99/p50 ${round(report.raw_model_latency_ms[endpoint].p99 / report.raw_model_latency_ms[endpoint].p50, 2)})${acc}${err}`,
        );
        const inside = Object.entries(r.stages_ms).map(([name, st]) => `${name} ${st.p50}`);
        if (inside.length)
          log(`${label}: ${endpoint.padEnd(7)} c=${String(c).padEnd(2)} p50 ms by stage: ${inside.join(', ')}`);
      }
    }
    run.search_paired = await pairedSearch(api);
    const sp = run.search_paired;
    log(
      `${label}: search c=1 paired with the raw model per probe: service p50 ${sp.service.p50} ms, raw p50 ${sp.raw.p50} ms; service - raw p50 ${sp.overhead.p50} p95 ${sp.overhead.p95} ms`,
    );
    const rawAfter = [];
    for (const p of sent) rawAfter.push(await timeIt(() => engine.analyze(p.data, { maxFaces: 1 })));
    run.raw_search_ms_after = round(median(asSent(rawAfter)));
    log(
      `${label}: raw model search p50 again after the levels: ${run.raw_search_ms_after} ms (before: ${report.raw_model_ms.search})`,
    );
    const qdrant = qdrantOf(current);
    if (qdrant.url) {
      run.qdrant_alone = await qdrantPaired(qdrant.url, qdrant.collection);
      const q = run.qdrant_alone;
      log(
        `${label}: Qdrant alone, the adapter's query, paired per probe: float p50 ${q.float.p50} p99 ${q.float.p99} ms; int8 rescored p50 ${q.int8.p50} p99 ${q.int8.p99} ms (same top-1 ${q.int8.top1_as_float}); float with the scope filter p50 ${q.float_filtered.p50} p99 ${q.float_filtered.p99} ms (same top-1 ${q.float_filtered.top1_as_float})`,
      );
    }
    run.loadavg_after = loadNow();
    run.rss_loaded_mib = rssLoaded;
    run.rss_peak_mib = sampler.stop();
    log(
      `${label}: peak RSS MiB under the load levels: ${formatRss(run.rss_peak_mib)}; load ${run.loadavg_before.join(' ')} -> ${run.loadavg_after.join(' ')}`,
    );
    report.runs.push(run);
  } finally {
    await current.stop();
    current = null;
  }
}
await engine.close();
console.log(JSON.stringify(report));
