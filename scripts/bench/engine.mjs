#!/usr/bin/env node
// The raw compute bound: decode + detect + align + embed on real photos, per stage, then images/s with every
// core busy (one process per core, one ONNX thread each). Usage: pnpm bench:engine [--rounds N]
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { listPhotos, require, ROOT as root } from './lib.mjs';

const { FaceEngine, median } = require(join(root, 'libs/face-engine/dist/index.js'));
const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '2' }, worker: { type: 'boolean', default: false } },
});

async function runAll(engine, images) {
  let faces = 0;
  for (const image of images) faces += (await engine.analyze(image)).faces.length;
  return faces;
}

if (values.worker) {
  // A child: analyse the images `rounds` times, report how many faces it saw.
  const engine = await FaceEngine.create({ threads: 1 });
  const images = listPhotos().files.map((f) => readFileSync(f));
  await runAll(engine, images.slice(0, 3));
  process.send({ ready: true });
  process.once('message', async () => {
    let faces = 0;
    for (let r = 0; r < Number(values.rounds); r++) faces += await runAll(engine, images);
    process.send({ faces, images: images.length * Number(values.rounds) });
    await engine.close();
    process.exit(0);
  });
} else {
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

  const cores = availableParallelism();
  const children = Array.from({ length: cores }, () =>
    fork(fileURLToPath(import.meta.url), ['--worker', '--rounds', values.rounds], { stdio: 'inherit' }),
  );
  await Promise.all(children.map((c) => new Promise((ok) => c.once('message', ok))));
  const start = performance.now();
  const done = await Promise.all(
    children.map(
      (c) =>
        new Promise((ok) => {
          c.once('message', ok);
          c.send('go');
        }),
    ),
  );
  const seconds = (performance.now() - start) / 1000;
  const totalImages = done.reduce((s, d) => s + d.images, 0);
  const totalFaces = done.reduce((s, d) => s + d.faces, 0);

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
    all_cores_images_per_s: Math.round((totalImages / seconds) * 100) / 100,
    all_cores_faces_per_s: Math.round((totalFaces / seconds) * 100) / 100,
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
}
