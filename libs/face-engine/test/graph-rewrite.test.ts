import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MODEL_DIR, type ModelManifest, openSession, rewriteGraph } from '@facesearch/face-engine';
import * as ort from 'onnxruntime-node';
import { Writer } from 'protobufjs/minimal';
import { describe, expect, it } from 'vitest';

const pinned: ModelManifest[] = JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, 'manifest.json'), 'utf8')).models;

/** Opens `bytes` as a model file twice: as it is and with the rewrite (the default). */
async function bothSessions(bytes: Uint8Array, manifest: ModelManifest) {
  const path = join(mkdtempSync(join(tmpdir(), 'rewrite-')), 'model.onnx');
  writeFileSync(path, bytes);
  const { sha256: _sha, ...unpinned } = manifest;
  return {
    original: await openSession(unpinned as ModelManifest, path, 1, { rewrite: false }),
    rewritten: await openSession(unpinned as ModelManifest, path, 1),
  };
}

/**
 * A manifest that feeds a test graph as the engine would: its input `name`, NCHW [1, 3, height, width]. openSession
 * runs the rewritten graph once on such an input, and keeps the original when that fails.
 */
function fedAs(name: string, width: number, height: number): ModelManifest {
  return { ...embedder, input: { ...embedder.input, name, width, height } } as ModelManifest;
}

async function outputsOf(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const out = await session.run(feeds);
  return out[session.outputNames[0]].data as Float32Array;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** Deterministic values in [-range, range). */
function values(n: number, seed: number, range = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648 - 0.5) * 2 * range;
  });
}

// A minimal ONNX writer for test graphs (field numbers of onnx.proto), independent of the code under test.
const field = (w: Writer, no: number, wire: number) => w.uint32((no << 3) | wire);
function message(build: (w: Writer) => void): Uint8Array {
  const w = Writer.create();
  build(w);
  return w.finish();
}
/** A float tensor type, of unknown shape without `dims`. */
const tensorType = (dims?: number[]) =>
  message((t) => {
    const shape = message((s) => {
      for (const d of dims ?? []) field(s, 1, 2).bytes(message((dim) => field(dim, 1, 0).int64(d)));
    });
    field(t, 1, 2).bytes(
      message((tt) => {
        field(tt, 1, 0).int32(1);
        if (dims) field(tt, 2, 2).bytes(shape);
      }),
    );
  });
const valueInfo = (name: string, dims?: number[]) =>
  message((v) => {
    field(v, 1, 2).string(name);
    field(v, 2, 2).bytes(tensorType(dims));
  });
const initializer = (name: string, dims: number[], data: Float32Array | BigInt64Array) =>
  message((t) => {
    for (const d of dims) field(t, 1, 0).int64(d);
    field(t, 2, 0).int32(data instanceof Float32Array ? 1 : 7);
    field(t, 8, 2).string(name);
    field(t, 9, 2).bytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  });
const node = (opType: string, inputs: string[], outputs: string[], attributes: Uint8Array[] = []) =>
  message((n) => {
    for (const i of inputs) field(n, 1, 2).string(i);
    for (const o of outputs) field(n, 2, 2).string(o);
    field(n, 4, 2).string(opType);
    for (const a of attributes) field(n, 5, 2).bytes(a);
  });
function model(graph: {
  nodes: Uint8Array[];
  initializers: Uint8Array[];
  input: Uint8Array;
  output: Uint8Array;
  valueInfos?: Uint8Array[];
}) {
  return message((m) => {
    field(m, 1, 0).int64(7);
    field(m, 8, 2).bytes(
      message((o) => {
        field(o, 1, 2).string('');
        field(o, 2, 0).int64(13);
      }),
    );
    field(m, 7, 2).bytes(
      message((g) => {
        for (const n of graph.nodes) field(g, 1, 2).bytes(n);
        field(g, 2, 2).string('test');
        for (const i of graph.initializers) field(g, 5, 2).bytes(i);
        field(g, 11, 2).bytes(graph.input);
        field(g, 12, 2).bytes(graph.output);
        for (const v of graph.valueInfos ?? []) field(g, 13, 2).bytes(v);
      }),
    );
  });
}

/** Concat's `axis` attribute = 1 (AttributeProto: name, i (field 3), type INT (field 20) = 2). */
const CHANNEL_AXIS = message((a) => field(a, 1, 2).string('axis').uint32(24).int64(1).uint32(160).int32(2));

const embedder = pinned.find((m) => m.role === 'embedder') as ModelManifest;
const detector = pinned.find((m) => m.role === 'detector') as ModelManifest;

describe('graph rewrite (graph-rewrite.ts)', () => {
  it('keeps the function of per-channel and shared slopes, negative and above 1 included', async () => {
    const channels = 4;
    const bytes = model({
      nodes: [
        node('Conv', ['x', 'w', 'b'], ['c']),
        node('PRelu', ['c', 'per_channel'], ['p']),
        node('PRelu', ['p', 'shared'], ['y']),
      ],
      initializers: [
        initializer('w', [channels, 3, 1, 1], values(channels * 3, 1)),
        initializer('b', [channels], values(channels, 2)),
        initializer('per_channel', [channels, 1, 1], Float32Array.of(-1.3, 0, 0.25, 1.2)),
        initializer('shared', [1], Float32Array.of(0.1)),
      ],
      input: valueInfo('x', [1, 3, 6, 5]),
      output: valueInfo('y', [1, channels, 6, 5]),
    });
    const { rewritten, model: rewrittenBytes } = rewriteGraph(bytes);
    expect(rewritten).toBe(2);
    expect(rewrittenBytes.length).toBeGreaterThan(bytes.length);

    const sessions = await bothSessions(bytes, fedAs('x', 5, 6));
    const x = new ort.Tensor('float32', values(3 * 30, 3, 4), [1, 3, 6, 5]);
    const [before, after] = [await outputsOf(sessions.original, { x }), await outputsOf(sessions.rewritten, { x })];
    expect(before.some((v) => v < 0)).toBe(true);
    expect(maxAbsDiff(before, after)).toBeLessThan(1e-5);
  });

  it('falls back to the model as it is when onnxruntime refuses the rewrite (a PRelu on a 3-d input)', async () => {
    const bytes = model({
      nodes: [node('PRelu', ['x', 'slope'], ['y'])],
      initializers: [initializer('slope', [3, 1, 1], Float32Array.of(0.5, -0.5, 2))],
      input: valueInfo('x', [1, 3, 7]),
      output: valueInfo('y', [3, 3, 7]),
    });
    expect(rewriteGraph(bytes).rewritten).toBe(1);
    const sessions = await bothSessions(bytes, embedder);
    const x = new ort.Tensor('float32', values(21, 4), [1, 3, 7]);
    const [before, after] = [await outputsOf(sessions.original, { x }), await outputsOf(sessions.rewritten, { x })];
    expect(after).toEqual(before);
  });

  it('falls back as well when the rewritten graph loads but cannot run (shapes known only at run time)', async () => {
    // 'input' of unknown shape, squeezed to [3, 112, 112] (a rank onnxruntime cannot know at load): the PRelu still
    // works per channel, its rewrite's 1x1 convolutions fail on a 3-d tensor, but only when run.
    const bytes = model({
      nodes: [node('Squeeze', ['input'], ['squeezed']), node('PRelu', ['squeezed', 'slope'], ['y'])],
      initializers: [initializer('slope', [3, 1, 1], Float32Array.of(0.5, -0.5, 2))],
      input: valueInfo('input'),
      output: valueInfo('y'),
    });
    expect(rewriteGraph(bytes).rewritten).toBe(1);
    const sessions = await bothSessions(bytes, embedder); // fed as the embedder: [1, 3, 112, 112]
    const input = new ort.Tensor('float32', values(3 * 112 * 112, 8), [1, 3, 112, 112]);
    const [before, after] = [
      await outputsOf(sessions.original, { input }),
      await outputsOf(sessions.rewritten, { input }),
    ];
    expect(after).toEqual(before);
  });

  it('turns a channel pad with zeros into a convolution, where the shape of the padded tensor is known', async () => {
    const padGraph = (withShape: boolean) =>
      model({
        nodes: [
          node('Conv', ['x', 'w'], ['c']),
          node('ConstantOfShape', ['pad_shape'], ['zeros']),
          node('Concat', ['c', 'zeros'], ['y'], [CHANNEL_AXIS]),
        ],
        initializers: [
          initializer('w', [2, 3, 1, 1], values(6, 9)),
          initializer('pad_shape', [4], BigInt64Array.of(1n, 3n, 4n, 4n)),
        ],
        input: valueInfo('x', [1, 3, 4, 4]),
        output: valueInfo('y', [1, 5, 4, 4]),
        valueInfos: withShape ? [valueInfo('c', [1, 2, 4, 4])] : [],
      });
    expect(rewriteGraph(padGraph(false)).rewritten).toBe(0);
    const padOfInput = model({
      nodes: [node('ConstantOfShape', ['pad_shape'], ['zeros']), node('Concat', ['x', 'zeros'], ['y'], [CHANNEL_AXIS])],
      initializers: [initializer('pad_shape', [4], BigInt64Array.of(1n, 2n, 4n, 4n))],
      input: valueInfo('x', [1, 3, 4, 4]), // the shape of a graph input serves as well
      output: valueInfo('y', [1, 5, 4, 4]),
    });
    expect(rewriteGraph(padOfInput).channelPads).toBe(1);
    const bytes = padGraph(true);
    expect(rewriteGraph(bytes)).toMatchObject({ rewritten: 1, channelPads: 1, prelu: 0 });
    const sessions = await bothSessions(bytes, fedAs('x', 4, 4));
    const x = new ort.Tensor('float32', values(48, 10, 3), [1, 3, 4, 4]);
    const [before, after] = [await outputsOf(sessions.original, { x }), await outputsOf(sessions.rewritten, { x })];
    expect(before.slice(32).every((v) => v === 0)).toBe(true);
    expect(maxAbsDiff(before, after)).toBeLessThan(1e-6);
  });

  it('rewrites the two channel pads of the detector, same outputs to float rounding', async () => {
    const bytes = readFileSync(join(DEFAULT_MODEL_DIR, detector.file));
    expect(rewriteGraph(bytes)).toMatchObject({ rewritten: 2, channelPads: 2, prelu: 0 });
    const sessions = await bothSessions(bytes, detector);
    const input = new ort.Tensor('float32', values(256 * 256 * 3, 11), [1, 256, 256, 3]);
    for (const name of sessions.original.outputNames) {
      const [before, after] = [
        await sessions.original.run({ 'input:0': input }),
        await sessions.rewritten.run({ 'input:0': input }),
      ];
      expect(maxAbsDiff(before[name].data as Float32Array, after[name].data as Float32Array), name).toBeLessThan(2e-3);
    }
  });

  it('leaves a model with nothing to rewrite untouched, and unreadable bytes to onnxruntime', async () => {
    const bytes = model({
      nodes: [node('Relu', ['x'], ['y'])],
      initializers: [],
      input: valueInfo('x', [1, 2, 3, 3]),
      output: valueInfo('y', [1, 2, 3, 3]),
    });
    const result = rewriteGraph(bytes);
    expect(result.rewritten).toBe(0);
    expect(result.model).toBe(bytes);
    const path = join(mkdtempSync(join(tmpdir(), 'rewrite-')), 'model.onnx');
    writeFileSync(path, Buffer.from('not an onnx model, not even protobuf \xff\xff\xff'));
    const { sha256: _sha, ...unpinned } = embedder;
    await expect(openSession(unpinned as ModelManifest, path, 1)).rejects.toThrow();
  });

  it('gives the pinned embedder the same vectors, its 33 PRelu rewritten', async () => {
    const bytes = readFileSync(join(DEFAULT_MODEL_DIR, embedder.file));
    expect(rewriteGraph(bytes).rewritten).toBe(33);
    const sessions = await bothSessions(bytes, embedder);
    for (const seed of [5, 6, 7]) {
      const input = new ort.Tensor('float32', values(3 * 112 * 112, seed), [1, 3, 112, 112]);
      const [before, after] = [
        await outputsOf(sessions.original, { input }),
        await outputsOf(sessions.rewritten, { input }),
      ];
      let [dot, na, nb] = [0, 0, 0];
      for (let i = 0; i < before.length; i++) {
        dot += before[i] * after[i];
        na += before[i] ** 2;
        nb += after[i] ** 2;
      }
      expect(dot / Math.sqrt(na * nb)).toBeGreaterThan(0.99999);
      expect(maxAbsDiff(before, after)).toBeLessThan(1e-3 * Math.sqrt(na / before.length) + 1e-6);
    }
  });
});
