#!/usr/bin/env node
// The raw compute bound: decode + detect + align + embed on real photos, per stage, then images/s with every
// core busy (one process per core, one ONNX thread each); then the same work in ONE process through EnginePool
// (what the services run) for each --pools entry WxT = W engine threads x T ONNX intra-op threads each
// (default 2x1,1x2 on 2 cores: one thread per core, or one thread with a 2-thread ONNX session), with 2 calls
// per engine thread in flight. Last, "decode only what the detector needs": the all-cores rate for one face per
// photo (search, import) with the default small first decode of large JPEGs (previewMaxSide 512) and without it
// (previewMaxSide 0, the engine before 29 Nov 2026), in the same run; and how far the answers move: the face count
// per photo and the cosine between the two embeddings of each face. And for the largest face only (max_faces 1): a
// close-up around a small face (the default) against the tiles (closeUp false), the rate and how far its vector moves,
// and which recognises better on portraits shrunk into a larger canvas (--small-faces K,..., default 2,3,5; '' skips).
// And the models rewritten into ops ORT fuses (the default, graph-rewrite.ts: the embedder's PRelu, the detector's
// channel pads) against the graphs as they are
// (rewriteGraphs false): ms per embedding on the same crops in turn, the all-cores rate, and the cosine between the
// two vectors of every face. And the photos that embed an sRGB ICC profile decoded without the conversion (the
// default, icc.ts) and through it, in turn: ms per decode and whether the pixels are the same.
// Usage: pnpm bench:engine [--rounds N] [--pools 2x1,1x2] [--small-faces 2,3,5]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { identityOf, listPhotos, rawComputeRate, require, ROOT as root } from './lib.mjs';

const { EnginePool, FaceEngine, decodeImage, inspectImage, median } = require(
  join(root, 'libs/face-engine/dist/index.js'),
);
const { cosineSimilarity } = require(join(root, 'libs/common/dist/index.js'));
const ort = require(join(root, 'libs/face-engine/node_modules/onnxruntime-node'));
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    pools: { type: 'string', default: `${availableParallelism()}x1,1x${availableParallelism()}` },
    'small-faces': { type: 'string', default: '2,3,5' },
  },
});

async function runAll(engine, images) {
  let faces = 0;
  for (const image of images) faces += (await engine.analyze(image)).faces.length;
  return faces;
}

const { source, files } = listPhotos();
const images = files.map((f) => readFileSync(f));
const engine = await FaceEngine.create({ threads: 1 });
await runAll(engine, images.slice(0, 3)); // warm-up

const perImage = [];
let faces = 0;
for (const image of images) {
  engine.resetTimings();
  const start = performance.now();
  const result = await engine.analyze(image);
  perImage.push({ ...engine.timings, total: performance.now() - start, faces: result.faces.length });
  faces += result.faces.length;
}
const stage = (k) => median(perImage.map((t) => t[k]));
const withFaces = perImage.filter((t) => t.faces > 0);
const perFace = (k) => median(withFaces.map((t) => t[k] / t.faces));
const sequentialRate = (1000 * images.length) / perImage.reduce((s, t) => s + t.total, 0);
await engine.close();

// Every core busy: the photos `rounds` times over, shared among one process per core (all faces, as detect does).
const rounds = Number(values.rounds);
const all = await rawComputeRate(Array.from({ length: rounds }, () => files).flat(), { maxFaces: 20 });
const { cores } = all;

// The same images through EnginePool in this one process: what the gateway, detector and embedder run.
const pools = [];
for (const spec of values.pools.split(',')) {
  const [workers, threads] = spec.split('x').map(Number);
  const pool = await EnginePool.create({ workers, threads });
  const work = Array.from({ length: rounds }, () => images).flat();
  await Promise.all(images.slice(0, 2 * workers).map((image) => pool.analyze(image))); // warm-up
  let next = 0;
  let poolFaces = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: 2 * workers }, async () => {
      while (next < work.length) {
        const image = work[next++];
        // Read after the await: `poolFaces += await ...` would read the total before it and lose updates.
        const { faces: found } = await pool.analyze(image).catch(() => ({ faces: [] }));
        poolFaces += found.length;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  await pool.close();
  const rate = Math.round((work.length / seconds) * 100) / 100;
  pools.push({
    workers,
    onnx_threads: threads,
    images_per_s: rate,
    faces_per_s: Math.round((poolFaces / seconds) * 100) / 100,
    ratio_to_processes: Math.round((rate / all.images_per_s) * 1000) / 1000,
  });
}

/** The all-cores rate of one face per photo for each engine option set, alternating twice to share the noise; best of each. */
async function alternatingRates(variants) {
  const rates = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
  for (let r = 0; r < 2; r++) {
    for (const [name, options] of Object.entries(variants)) {
      rates[name].push((await rawComputeRate(files, { maxFaces: 1, ...options })).images_per_s);
    }
  }
  return Object.fromEntries(Object.entries(rates).map(([name, v]) => [name, Math.max(...v)]));
}

/**
 * Every photo through two engines (options `a` and `b`, one ONNX thread each): the photos where they find as many
 * faces, the cosine between the two vectors of each face (sorted), and the detector runs each made.
 */
async function compareEngines(a, b, analyzeOptions = {}) {
  const engines = [await FaceEngine.create({ threads: 1, ...a }), await FaceEngine.create({ threads: 1, ...b })];
  const detectorRuns = [0, 0];
  for (const [k, e] of engines.entries()) {
    const session = e.detector.session;
    const run = session.run.bind(session);
    session.run = (...args) => {
      detectorRuns[k]++;
      return run(...args);
    };
  }
  const cosines = [];
  let sameCount = 0;
  for (const image of images) {
    const [x, y] = await Promise.all(engines.map((e) => e.analyze(image, analyzeOptions)));
    if (x.faces.length === y.faces.length) sameCount++;
    for (const [i, face] of y.faces.entries()) {
      if (x.faces[i]) cosines.push(cosineSimilarity(face.embedding, x.faces[i].embedding));
    }
  }
  await Promise.all(engines.map((e) => e.close()));
  return { sameCount, cosines: cosines.sort((p, q) => p - q), detectorRuns };
}

// One face per photo (search, import), with and without the small first decode.
const previewRates = await alternatingRates({ preview_0: { previewMaxSide: 0 }, preview_512: { previewMaxSide: 512 } });

// The largest face only (max_faces 1: search, compare, enrolment, import): a close-up around it or the tiles when it
// is small in the full frame; then how far its vector moves, and how often each needs a second pass.
const closeUpRates = await alternatingRates({ tiles: { closeUp: false }, close_up: { closeUp: true } });
const closeUpCompared = await compareEngines({}, { closeUp: false }, { maxFaces: 1 });
const closeUpCosines = closeUpCompared.cosines;
const moved = closeUpCosines.filter((c) => c < 0.9999);

// The graph rewrite: the embedder alone on the same aligned crops, the two engines in turn per crop; the detector
// alone on one input, in turn 200 times; then the all-cores rate of one face per photo, and how far any vector moves.
const rewriteEngines = {
  as_is: await FaceEngine.create({ threads: 1, rewriteGraphs: false }),
  rewritten: await FaceEngine.create({ threads: 1 }),
};
const crops = [];
for (const image of images) crops.push(...(await rewriteEngines.as_is.detectAligned(image)).faces.map((f) => f.crop));
const embedMs = { as_is: [], rewritten: [] };
for (const crop of [...crops.slice(0, 5), ...crops, ...crops]) {
  for (const [name, e] of Object.entries(rewriteEngines)) {
    const start = performance.now();
    await e.embed([crop]);
    embedMs[name].push(performance.now() - start);
  }
}
const detectorInput = Float32Array.from({ length: 256 * 256 * 3 }, (_, i) => Math.sin(i * 0.37));
const detectMs = { as_is: [], rewritten: [] };
for (let r = 0; r < 220; r++) {
  for (const [name, e] of Object.entries(rewriteEngines)) {
    const { session, manifest } = e.detector;
    const start = performance.now();
    await session.run({ [manifest.input.name]: new ort.Tensor('float32', detectorInput, [1, 256, 256, 3]) });
    if (r >= 20) detectMs[name].push(performance.now() - start);
  }
}
await Promise.all(Object.values(rewriteEngines).map((e) => e.close()));
const rewriteRates = await alternatingRates({ as_is: { rewriteGraphs: false }, rewritten: {} });
const rewriteCompared = await compareEngines({}, { rewriteGraphs: false });

// Photos with an embedded sRGB profile: the working-size decode skipping the conversion (as inspected) and through it.
const srgbDecode = { photos: 0, identical: 0, skipped_ms: [], converted_ms: [] };
for (const image of images) {
  const header = await inspectImage(image);
  if (!header.srgbProfile) continue;
  srgbDecode.photos++;
  const variants = { skipped_ms: header, converted_ms: { ...header, srgbProfile: false } };
  const pixels = {};
  for (let r = 0; r < 4; r++) {
    for (const [name, h] of Object.entries(variants)) {
      const start = performance.now();
      pixels[name] = (await decodeImage(image, undefined, { header: h })).working.data;
      if (r > 0) srgbDecode[name].push(performance.now() - start);
    }
  }
  if (pixels.skipped_ms.equals(pixels.converted_ms)) srgbDecode.identical++;
}

// Which sees a small face better, on labelled photos: each portrait of faces/ shrunk and pasted in the middle of a
// grey canvas K times its size (at most 2400 px), its largest face analysed with the close-up and with the tiles;
// per variant, the mean cosine of same-identity pairs, the worst, the accuracy at the calibrated threshold over all
// pairs, and rank-1 (each photo's nearest other photo is the same person).
const sharp = require(join(root, 'libs/face-engine/node_modules/sharp'));
const portraits = files.filter((f) => f.includes('/faces/'));
const smallFaces = [];
const scales = values['small-faces'] ? values['small-faces'].split(',').map(Number) : [];
if (portraits.length > 0 && scales.length > 0) {
  const variants = {
    close_up: await FaceEngine.create({ threads: 1 }),
    tiles: await FaceEngine.create({ threads: 1, closeUp: false }),
  };
  const threshold = variants.close_up.matchThreshold;
  for (const k of scales) {
    const found = { close_up: [], tiles: [] };
    for (const path of portraits) {
      const { data, info } = await sharp(readFileSync(path))
        .rotate()
        .resize(Math.round(2400 / k), Math.round(2400 / k), { fit: 'inside', withoutEnlargement: true })
        .jpeg({ quality: 92 })
        .toBuffer({ resolveWithObject: true });
      const [width, height] = [info.width * k, info.height * k];
      const canvas = await sharp({ create: { width, height, channels: 3, background: '#808080' } })
        .composite([
          { input: data, left: Math.floor((width - info.width) / 2), top: Math.floor((height - info.height) / 2) },
        ])
        .jpeg({ quality: 92 })
        .toBuffer();
      for (const [name, e] of Object.entries(variants)) {
        const [face] = (await e.analyze(canvas, { maxFaces: 1 })).faces;
        if (face) found[name].push({ id: identityOf(path), embedding: face.embedding, size: face.quality.size });
      }
    }
    const row = { scale: k, photos: portraits.length };
    for (const [name, faces] of Object.entries(found)) {
      const same = [];
      let right = 0;
      let pairs = 0;
      let rank1 = 0;
      let searched = 0;
      for (const [i, a] of faces.entries()) {
        let best = { similarity: -2, id: '' };
        for (const [j, b] of faces.entries()) {
          if (i === j) continue;
          const similarity = cosineSimilarity(a.embedding, b.embedding);
          if (similarity > best.similarity) best = { similarity, id: b.id };
          if (j < i) continue;
          pairs++;
          if (a.id === b.id) same.push(similarity);
          if (a.id === b.id ? similarity >= threshold : similarity < threshold) right++;
        }
        if (faces.some((b, j) => j !== i && b.id === a.id)) {
          searched++;
          if (best.id === a.id) rank1++;
        }
      }
      same.sort((x, y) => x - y);
      row[name] = {
        found: faces.length,
        face_px_median: median(faces.map((f) => f.size)),
        same_identity_cosine_mean: Math.round((same.reduce((x, y) => x + y, 0) / same.length) * 10000) / 10000,
        same_identity_cosine_min: Math.round(same[0] * 10000) / 10000,
        accuracy: Math.round((right / pairs) * 10000) / 10000,
        rank1: `${rank1}/${searched}`,
      };
    }
    smallFaces.push(row);
  }
  await Promise.all(Object.values(variants).map((e) => e.close()));
}

// What the small first decode changes in the answers: every face of every photo with and without it.
const { sameCount, cosines } = await compareEngines({}, { previewMaxSide: 0 });

const report = {
  source,
  images: images.length,
  faces,
  ms_per_image: {
    decode: stage('decode'),
    detect: stage('detect'),
    align: stage('align'),
    embed: stage('embed'),
    total: stage('total'),
  },
  ms_per_face: { align: perFace('align'), embed: perFace('embed'), total: perFace('total') },
  sequential_images_per_s: Math.round(sequentialRate * 100) / 100,
  cores,
  all_cores_images_per_s: all.images_per_s,
  all_cores_faces_per_s: all.faces_per_s,
  one_process_pools: pools,
  one_face_all_cores_images_per_s: previewRates,
  largest_face_all_cores_images_per_s: closeUpRates,
  largest_face_detector_runs: {
    tiles: closeUpCompared.detectorRuns[1],
    close_up: closeUpCompared.detectorRuns[0],
    photos: images.length,
  },
  close_up_fidelity: {
    faces_compared: closeUpCosines.length,
    faces_moved: moved.length,
    cosine_min: Math.round(closeUpCosines[0] * 10000) / 10000,
    cosine_median_of_moved: moved.length ? Math.round(median(moved) * 10000) / 10000 : null,
  },
  small_faces: smallFaces,
  srgb_profile_decode: {
    photos: srgbDecode.photos,
    identical_pixels: srgbDecode.identical,
    ms_median: { converted: median(srgbDecode.converted_ms), skipped: median(srgbDecode.skipped_ms) },
  },
  graph_rewrite: {
    crops: crops.length,
    embed_ms_median: { as_is: median(embedMs.as_is.slice(5)), rewritten: median(embedMs.rewritten.slice(5)) },
    detector_run_ms_median: { as_is: median(detectMs.as_is), rewritten: median(detectMs.rewritten) },
    one_face_all_cores_images_per_s: rewriteRates,
    faces_compared: rewriteCompared.cosines.length,
    cosine_min: Math.round(rewriteCompared.cosines[0] * 1e6) / 1e6,
  },
  preview_fidelity: {
    photos_with_the_same_face_count: sameCount,
    photos: images.length,
    faces_compared: cosines.length,
    cosine_min: Math.round(cosines[0] * 10000) / 10000,
    cosine_median: Math.round(median(cosines) * 10000) / 10000,
  },
};
console.log(`bench:engine on ${report.images} photos (${source}), ${report.faces} faces, ${cores} cores`);
console.log(
  `median ms per image: decode ${report.ms_per_image.decode}  detect ${report.ms_per_image.detect}  align ${report.ms_per_image.align}  embed ${report.ms_per_image.embed}  total ${report.ms_per_image.total}`,
);
console.log(
  `median ms per face:  align ${report.ms_per_face.align}  embed ${report.ms_per_face.embed}  total ${report.ms_per_face.total}`,
);
console.log(`one process:         ${report.sequential_images_per_s} images/s`);
console.log(
  `${cores} processes:         ${report.all_cores_images_per_s} images/s, ${report.all_cores_faces_per_s} faces/s`,
);
for (const p of pools) {
  console.log(
    `1 process, EnginePool ${p.workers} threads x ${p.onnx_threads} ONNX threads: ${p.images_per_s} images/s, ${p.faces_per_s} faces/s (${p.ratio_to_processes} of ${cores} processes)`,
  );
}
const { preview_0: before, preview_512: after } = report.one_face_all_cores_images_per_s;
console.log(
  `one face per photo, ${cores} processes: ${after} images/s with the 512 px first decode, ${before} without (best of 2 each): x${Math.round((after / before) * 100) / 100}`,
);
const fid = report.preview_fidelity;
console.log(
  `same faces with and without it: ${fid.photos_with_the_same_face_count}/${fid.photos} photos with the same face count; cosine between the two embeddings of each face (${fid.faces_compared}): min ${fid.cosine_min}, median ${fid.cosine_median}`,
);
const lf = report.largest_face_all_cores_images_per_s;
const runs = report.largest_face_detector_runs;
const cf = report.close_up_fidelity;
console.log(
  `largest face only, ${cores} processes: ${lf.close_up} images/s with a close-up of a small face, ${lf.tiles} with the tiles (best of 2 each): x${Math.round((lf.close_up / lf.tiles) * 100) / 100}; detector runs for the ${runs.photos} photos ${runs.close_up} vs ${runs.tiles}`,
);
console.log(
  `its vector, close-up vs tiles: ${cf.faces_moved} of ${cf.faces_compared} faces moved (the photos with a second pass), cosine min ${cf.cosine_min}, median of those ${cf.cosine_median_of_moved}`,
);
for (const row of smallFaces) {
  for (const name of ['close_up', 'tiles']) {
    const v = row[name];
    console.log(
      `small faces, portraits at 1/${row.scale} of the canvas, ${name.replace('_', '-')}: ${v.found}/${row.photos} found, face ${v.face_px_median} px; same-identity cosine mean ${v.same_identity_cosine_mean}, min ${v.same_identity_cosine_min}; accuracy ${v.accuracy}; rank-1 ${v.rank1}`,
    );
  }
}
const sd = report.srgb_profile_decode;
console.log(
  `embedded sRGB profile, ${sd.photos} photos: decode ${sd.ms_median.skipped} ms without the conversion, ${sd.ms_median.converted} through it (median, 3 each in turn); identical pixels ${sd.identical_pixels}/${sd.photos}`,
);
const pr = report.graph_rewrite;
console.log(
  `graphs rewritten: detector ${pr.detector_run_ms_median.rewritten} ms per run, ${pr.detector_run_ms_median.as_is} as it is (median of 200 in turn): x${Math.round((pr.detector_run_ms_median.as_is / pr.detector_run_ms_median.rewritten) * 100) / 100}`,
);
console.log(
  `graphs rewritten: embed ${pr.embed_ms_median.rewritten} ms per face, ${pr.embed_ms_median.as_is} as it is (median of ${pr.crops} crops x2, in turn): x${Math.round((pr.embed_ms_median.as_is / pr.embed_ms_median.rewritten) * 100) / 100}`,
);
console.log(
  `one face per photo, ${cores} processes: ${pr.one_face_all_cores_images_per_s.rewritten} images/s rewritten, ${pr.one_face_all_cores_images_per_s.as_is} as it is (best of 2 each): x${Math.round((pr.one_face_all_cores_images_per_s.rewritten / pr.one_face_all_cores_images_per_s.as_is) * 100) / 100}; cosine between the two vectors of each face (${pr.faces_compared}): min ${pr.cosine_min}`,
);
console.log(JSON.stringify(report));
