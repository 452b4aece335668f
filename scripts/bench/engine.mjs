#!/usr/bin/env node
// The raw compute bound: decode + detect + align + embed on real photos, per stage, then images/s with every
// core busy (one process per core, one ONNX thread each). Usage: pnpm bench:engine [--rounds N]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { listPhotos, rawComputeRate, require, ROOT as root } from './lib.mjs';

const { FaceEngine, median } = require(join(root, 'libs/face-engine/dist/index.js'));
const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '2' } },
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
console.log(JSON.stringify(report));
