#!/usr/bin/env node
// The import's engine work alone: the embedded gateway's engine pool (one thread per core, two calls per thread)
// given --images photos as the detection stage gives them (detectAligned with the image handed over, then embed
// of the crop, --concurrency items at once, as IMPORT_CONCURRENCY), and nothing else in the process: no HTTP, no
// storage, no queue. Between bench:import's raw loop (one process per core, one image after another) and the
// service, it tells the cost of the pool from the cost of everything around it. Prints images/s and the process's
// CPU seconds; run it under thread-cpu.mjs (--match engine-pool.mjs) for the CPU of each thread.
//   node scripts/bench/engine-pool.mjs [--images 400] [--concurrency 6] [--rounds 1]
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { listPhotos, loadEngine, ROOT, require, round } from './lib.mjs';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '400' },
    concurrency: { type: 'string', default: String(3 * availableParallelism()) },
    rounds: { type: 'string', default: '1' },
  },
});
const { EnginePool } = loadEngine();
const { mapConcurrent } = require(join(ROOT, 'libs/common/dist/index.js'));
const { files } = listPhotos();
const photos = Array.from({ length: Number(values.images) }, (_, i) => readFileSync(files[i % files.length]));
const pool = await EnginePool.create({ workers: availableParallelism() });
for (const photo of photos.slice(0, 4)) await pool.analyze(photo, { maxFaces: 1 }).catch(() => undefined);

for (let round_ = 1; round_ <= Number(values.rounds); round_++) {
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  // As the detection stage runs an item: detect and align, then embed the crop.
  const embedded = await mapConcurrent(photos, Number(values.concurrency), async (photo) => {
    // A copy, as the stage's upload is its own buffer (the pool takes it instead of copying it).
    const image = Buffer.from(photo);
    try {
      const [face] = (await pool.detectAligned(image, { maxFaces: 1 }, { handOver: true })).faces;
      return face ? (await pool.embed([face.crop])).length : 0;
    } catch {
      return 0; // a photo the engine refuses fails as an import item would
    }
  });
  const faces = embedded.reduce((a, b) => a + b, 0);
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  console.log(
    `engine pool: ${round(photos.length / seconds, 2)} images/s, ${faces} faces (${photos.length} images in ` +
      `${round(seconds, 2)} s, ${values.concurrency} at once); process CPU ${round((cpu.user + cpu.system) / 1e6, 2)} s ` +
      `of ${round(seconds * availableParallelism(), 2)} available`,
  );
}
await pool.close();
