#!/usr/bin/env node
// pnpm bench:grpc [--calls 60] [--photos 30]
//
// What one gRPC hop between the gateway and a model worker costs on this machine, apart from the model:
//   1. transport alone: the project's DetectorClient against a Detector server in a child process whose handler
//      answers at once, then after 50 ms (as a model would: both processes then sleep during each call), for
//      requests of 1 KiB to 4 MiB; latency per call beyond the handler, and CPU per call in client and server; each
//      with HTTP/2's default 64 KiB flow-control windows and with the project's (FLOW_CONTROL_WINDOW_BYTES), in
//      alternating blocks of 10 calls;
//   2. with the models: the Detector and Embedder services over the real engine (EnginePool, ENGINE_WORKERS 2, as the
//      apps run it) in a child process, on real photos: the client's latency per call against the handler's own time
//      measured inside the server, so the difference is the hop (gRPC both ways, protobuf, the engine thread hand-off
//      is inside the handler's time); and the same engine in this process through EnginePool, for the hand-off;
//   3. one call or two: the analysis a search asks for (largest face, embedded) through Detector.Detect then
//      Embedder.Embed (a gateway with EMBEDDER_GRPC_URL) and through Detector.Analyze (one call, the detector
//      embeds), alternating per photo against the same server; latency and the part beyond the handlers.
// Prints readable lines, then one JSON object.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { latencyStats, listPhotos, log, machine, median, require, ROOT, round } from './lib.mjs';

const proto = require(join(ROOT, 'libs/proto/dist/index.js'));
const SELF = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------- child: the servers

async function serve() {
  const kind = process.argv[3];
  const handlerMs = [];
  let impl;
  if (kind === 'stub') {
    const hold = Number(process.argv[4] ?? 0);
    const reply = { image: { width: 1, height: 1, format: 'jpeg' }, faces: [] };
    const answer = async () => {
      if (hold > 0) await new Promise((r) => setTimeout(r, hold));
      return reply;
    };
    impl = { detector: { detect: answer, detectAligned: answer } };
  } else {
    const { createLocalFaceAnalyzer } = require(join(ROOT, 'libs/face-engine/dist/index.js'));
    const engine = await createLocalFaceAnalyzer({ workers: 2 });
    const timed =
      (fn) =>
      async (...args) => {
        const start = performance.now();
        try {
          return await fn(...args);
        } finally {
          handlerMs.push(performance.now() - start);
        }
      };
    impl = {
      detector: {
        modelId: engine.modelId,
        embeddingDim: engine.embeddingDim,
        detect: timed((i, o) => engine.detect(i, o)),
        detectAligned: timed((i, o) => engine.detectAligned(i, o)),
        analyze: timed((i, o) => engine.analyze(i, o)),
      },
      embedder: { modelId: engine.modelId, embeddingDim: engine.embeddingDim, embed: timed((c) => engine.embed(c)) },
    };
  }
  const window = process.argv[5] ? { flowControlWindowBytes: Number(process.argv[5]) } : {};
  const server = new proto.FaceSearchGrpcServer(impl, window);
  const port = await server.listen();
  process.on('message', (msg) => {
    if (msg === 'stats') {
      process.send({ cpu: process.cpuUsage(), handlerMs: handlerMs.splice(0) });
    }
  });
  process.send({ port });
}

// ---------------------------------------------------------------- parent: the clients

async function startServer(...args) {
  const child = fork(SELF, ['serve', ...args.map(String)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { port } = await new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const stats = () =>
    new Promise((resolve) => {
      child.once('message', resolve);
      child.send('stats');
    });
  return { port, stats, stop: () => child.kill() };
}

const cpuMs = (u) => (u.user + u.system) / 1000;

async function main() {
  const { values } = parseArgs({
    options: { calls: { type: 'string', default: '60' }, photos: { type: 'string', default: '30' } },
  });
  const CALLS = Number(values.calls);
  const report = { benchmark: 'grpc', machine: machine(), transport: [], with_models: {} };
  log(`bench:grpc: ${CALLS} calls per size; ${report.machine.cores} cores, load ${report.machine.loadavg.join(' ')}`);

  // 1. Transport alone, with the protocol's 64 KiB flow-control windows and with the project's (alternating blocks
  //    of calls, each window against its own server process, so both see the same machine).
  const windows = { default_64k: 65_535, project: proto.FLOW_CONTROL_WINDOW_BYTES };
  for (const hold of [0, 50]) {
    const ends = {};
    for (const [name, bytes] of Object.entries(windows)) {
      const server = await startServer('stub', hold, bytes);
      ends[name] = {
        server,
        client: new proto.DetectorClient(`127.0.0.1:${server.port}`, { flowControlWindowBytes: bytes }),
      };
    }
    try {
      for (const kib of [1, 64, 256, 1024, 4096]) {
        const image = new Uint8Array(kib * 1024);
        const runs = {};
        for (const [name, { client, server }] of Object.entries(ends)) {
          for (let i = 0; i < 5; i++) await client.detectAligned(image);
          runs[name] = { latencies: [], clientCpu: 0, serverBefore: (await server.stats()).cpu };
        }
        const BLOCK = 10;
        for (let done = 0; done < CALLS; done += BLOCK) {
          for (const [name, { client }] of Object.entries(ends)) {
            const cpuBefore = process.cpuUsage();
            for (let i = 0; i < Math.min(BLOCK, CALLS - done); i++) {
              const start = performance.now();
              await client.detectAligned(image);
              runs[name].latencies.push(performance.now() - start - hold);
            }
            runs[name].clientCpu += cpuMs(process.cpuUsage(cpuBefore));
          }
        }
        const parts = [];
        for (const [name, { server }] of Object.entries(ends)) {
          const run = runs[name];
          const row = {
            handler_holds_ms: hold,
            request_kib: kib,
            window: name,
            window_bytes: windows[name],
            latency_minus_hold_ms: latencyStats(run.latencies),
            client_cpu_ms_per_call: round(run.clientCpu / CALLS, 2),
            server_cpu_ms_per_call: round((cpuMs((await server.stats()).cpu) - cpuMs(run.serverBefore)) / CALLS, 2),
          };
          report.transport.push(row);
          parts.push(
            `${name} window p50 ${row.latency_minus_hold_ms.p50} ms (CPU client ${row.client_cpu_ms_per_call}, server ${row.server_cpu_ms_per_call})`,
          );
        }
        log(
          `transport, handler ${hold ? `holds ${hold} ms` : 'answers at once'}, ${String(kib).padStart(4)} KiB request, beyond the handler: ${parts.join('; ')}`,
        );
      }
    } finally {
      for (const { client, server } of Object.values(ends)) {
        client.close();
        server.stop();
      }
    }
  }

  // 2. With the models.
  const { files } = listPhotos();
  const step = Math.max(1, Math.floor(files.length / Number(values.photos)));
  const images = files.filter((_, i) => i % step === 0).map((f) => readFileSync(f));
  const { createLocalFaceAnalyzer } = require(join(ROOT, 'libs/face-engine/dist/index.js'));
  const engine = await createLocalFaceAnalyzer({ workers: 2 });
  const server = await startServer('engine');
  const remote = await proto.GrpcFaceAnalyzer.connect({
    detector: `127.0.0.1:${server.port}`,
    embedderAddresses: `127.0.0.1:${server.port}`,
  });
  try {
    // Calls in order, c=1: the server's handler times come back in the same order.
    let calls = [];
    const local = { detect: [], embed: [] };
    const timed = async (fn) => {
      const start = performance.now();
      const result = await fn();
      return { result, ms: performance.now() - start };
    };
    for (let round = 0; round < 3; round++) {
      if (round === 1) {
        // The first round warms up; drop its figures.
        calls = [];
        local.detect.length = 0;
        local.embed.length = 0;
        await server.stats();
      }
      for (const image of images) {
        const detect = await timed(() => remote.detector.detectAligned(image, { maxFaces: 1 }));
        calls.push({ kind: 'detect', ms: detect.ms });
        local.detect.push((await timed(() => engine.detectAligned(image, { maxFaces: 1 }))).ms);
        const crops = detect.result.faces.map((f) => f.crop);
        if (crops.length === 0) continue;
        calls.push({ kind: 'embed', ms: (await timed(() => remote.embedder.embed(crops))).ms });
        local.embed.push((await timed(() => engine.embed(crops))).ms);
      }
    }
    const handler = (await server.stats()).handlerMs;
    if (handler.length !== calls.length) throw new Error(`${handler.length} handler times for ${calls.length} calls`);
    for (const kind of ['detect', 'embed']) {
      const mine = calls.map((c, i) => ({ ...c, inside: handler[i] })).filter((c) => c.kind === kind);
      report.with_models[kind] = {
        calls: mine.length,
        client_p50_ms: round(median(mine.map((c) => c.ms))),
        handler_p50_ms: round(median(mine.map((c) => c.inside))),
        hop_p50_ms: round(median(mine.map((c) => c.ms - c.inside))),
        in_process_pool_p50_ms: round(median(local[kind])),
      };
      const w = report.with_models[kind];
      log(
        `with the models, ${kind.padEnd(6)} (${w.calls} calls): p50 ${w.client_p50_ms} ms through gRPC, ${w.handler_p50_ms} ms inside the server's handler -> the hop ${w.hop_p50_ms} ms (p50 of the differences); ${w.in_process_pool_p50_ms} ms through EnginePool in this process`,
      );
    }

    // 3. One call or two, alternating which goes first per photo.
    const oneCall = await proto.GrpcFaceAnalyzer.connect({ detector: `127.0.0.1:${server.port}` });
    try {
      let runs = [];
      for (let round = 0; round < 3; round++) {
        if (round === 1) {
          runs = [];
          await server.stats();
        }
        for (const [i, image] of images.entries()) {
          const order = (i + round) % 2 === 0 ? ['two', 'one'] : ['one', 'two'];
          for (const kind of order) {
            const analyzer = kind === 'one' ? oneCall : remote;
            const { result, ms } = await timed(() => analyzer.analyze(image, { maxFaces: 1 }));
            // Handler times this call left in the server: Analyze, or Detect plus Embed when a face was found.
            runs.push({ kind, ms, handlers: kind === 'one' ? 1 : result.faces.length > 0 ? 2 : 1 });
          }
        }
      }
      const handler = (await server.stats()).handlerMs;
      let next = 0;
      for (const run of runs) {
        run.inside = handler.slice(next, next + run.handlers).reduce((a, b) => a + b, 0);
        next += run.handlers;
      }
      if (next !== handler.length) throw new Error(`${handler.length} handler times for ${next} expected`);
      const pick = (kind) => runs.filter((r) => r.kind === kind);
      const summary = (kind) => ({
        calls: pick(kind).length,
        client_p50_ms: round(median(pick(kind).map((r) => r.ms))),
        handlers_p50_ms: round(median(pick(kind).map((r) => r.inside))),
        beyond_handlers_p50_ms: round(median(pick(kind).map((r) => r.ms - r.inside))),
      });
      const two = pick('two');
      const one = pick('one');
      // CPU of both processes per analysis, each way in a block of its own (CPU cannot be split per call).
      const cpuPerAnalysis = async (analyzer) => {
        const before = { client: process.cpuUsage(), server: (await server.stats()).cpu };
        for (const image of images) await analyzer.analyze(image, { maxFaces: 1 });
        const after = { client: process.cpuUsage(), server: (await server.stats()).cpu };
        const spent = cpuMs(after.client) - cpuMs(before.client) + cpuMs(after.server) - cpuMs(before.server);
        return round(spent / images.length, 1);
      };
      const cpu = { two: [], one: [] };
      for (let i = 0; i < 2; i++) {
        cpu.two.push(await cpuPerAnalysis(remote));
        cpu.one.push(await cpuPerAnalysis(oneCall));
      }
      report.one_call_or_two = {
        two_calls: { ...summary('two'), cpu_ms_per_analysis: cpu.two },
        one_call: { ...summary('one'), cpu_ms_per_analysis: cpu.one },
        saved_p50_ms: round(median(two.map((r, i) => r.ms - one[i].ms))),
      };
      const o = report.one_call_or_two;
      log(
        `one call or two, search's analysis (${o.one_call.calls} photos each): Detect + Embed p50 ${o.two_calls.client_p50_ms} ms (${o.two_calls.beyond_handlers_p50_ms} beyond the handlers); Analyze p50 ${o.one_call.client_p50_ms} ms (${o.one_call.beyond_handlers_p50_ms} beyond); saved per photo p50 ${o.saved_p50_ms} ms; CPU ms per analysis, client + server (two blocks each): ${cpu.two.join(', ')} vs ${cpu.one.join(', ')}`,
      );
    } finally {
      await oneCall.close();
    }
  } finally {
    await remote.close();
    await engine.close();
    server.stop();
  }
  console.log(JSON.stringify(report));
  process.exit(0);
}

if (process.argv[2] === 'serve') await serve();
else await main();
