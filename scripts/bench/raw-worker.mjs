// A child of rawComputeRate (lib.mjs): gets a list of photo paths, loads them, warms up, then on 'go' analyses each
// once with FaceEngine (1 ONNX thread; other FaceEngine options as given) and answers { images, faces }. Not run by
// itself.
import { readFileSync } from 'node:fs';
import { loadEngine } from './lib.mjs';

const { FaceEngine } = loadEngine();

process.once('message', async ({ files, maxFaces, engineOptions }) => {
  const engine = await FaceEngine.create({ ...engineOptions, threads: 1 });
  const images = files.map((f) => readFileSync(f));
  for (const image of images.slice(0, 3)) await engine.analyze(image, { maxFaces }).catch(() => undefined);
  process.send({ ready: true });
  process.once('message', async () => {
    let faces = 0;
    const cpuBefore = process.cpuUsage();
    for (const image of images) {
      try {
        faces += (await engine.analyze(image, { maxFaces })).faces.length;
      } catch {
        // a photo the engine refuses counts as an image with no face, as the import would fail it
      }
    }
    const cpu = process.cpuUsage(cpuBefore);
    process.send({ images: images.length, faces, cpu_seconds: (cpu.user + cpu.system) / 1e6 });
    await engine.close();
    process.exit(0);
  });
});
