import { Reader, Writer } from 'protobufjs/minimal';

/**
 * Rewrites an ONNX model into ops that onnxruntime runs faster on CPU, with the same function:
 *
 * - **PRelu**: ORT's PRelu is a generic broadcast (per-channel slope over NCHW), and it is not an op of ORT's NCHWc
 *   layout, so each one also costs a reorder out of that layout and back: in fr_feature (33 PRelu) that was 7 of 14
 *   ms per face. PRelu(x, s) = x + (1 - s) * relu(-x) becomes two 1x1 depthwise convolutions, which the NCHWc layout
 *   fuses with the ReLU and the addition; a single shared slope becomes LeakyRelu, fused into the convolution before.
 * - **Channel padding** (TensorFlow's pad of a residual to more channels, exported as Concat(x, ConstantOfShape(0))):
 *   the constant is not in NCHWc layout either, so every block after it was reordered (BlazeFace: ~0.9 of 8 ms). It
 *   becomes a 1x1 convolution whose weights copy x's channels and add zero ones. Needs x's shape in the graph's
 *   value_info (or inputs); without it the Concat stays.
 *
 * BENCHMARKS.md, session 9. The model is edited at the protobuf wire level: every field the rewrite does not touch
 * is copied as it was, so any ONNX version's extra fields survive. Field numbers are those of onnx.proto
 * (ModelProto.graph 7; GraphProto node 1, initializer 5, input 11, output 12, value_info 13; NodeProto input 1, output 2,
 * name 3, op_type 4, attribute 5, domain 7; TensorProto dims 1, data_type 2, float_data 4, int64_data 7, name 8,
 * raw_data 9, data_location 14; AttributeProto name 1, f 2, i 3, t 5, ints 8, type 20; ValueInfoProto name 1,
 * type 2; TypeProto tensor_type 1; its shape 2; TensorShapeProto dim 1; dim_value 1).
 */
export function rewriteGraph(model: Uint8Array): GraphRewrite {
  const none = { model, rewritten: 0, prelu: 0, channelPads: 0 };
  const modelFields = fieldsOf(model);
  const graphField = modelFields.find((f) => f.no === MODEL_GRAPH && f.wire === LENGTH_DELIMITED);
  if (!graphField) return none;
  const graph = payloadOf(model, graphField);
  const graphFields = fieldsOf(graph);

  const tensors = new Map<string, Tensor>();
  const shapes = new Map<string, Array<number | undefined>>();
  const graphOutputs = new Set<string>();
  for (const f of graphFields) {
    if (f.wire !== LENGTH_DELIMITED) continue;
    if (f.no === GRAPH_INITIALIZER) {
      const tensor = readTensor(payloadOf(graph, f));
      tensors.set(tensor.name, tensor);
    } else if (f.no === GRAPH_VALUE_INFO || f.no === GRAPH_INPUT || f.no === GRAPH_OUTPUT) {
      const { name, dims } = readValueInfo(payloadOf(graph, f));
      if (f.no === GRAPH_OUTPUT) graphOutputs.add(name);
      else if (dims) shapes.set(name, dims);
    }
  }
  const nodes = graphFields
    .filter((f) => f.no === GRAPH_NODE && f.wire === LENGTH_DELIMITED)
    .map((f) => ({ field: f, ...readNode(payloadOf(graph, f)) }));
  const names = new Set([...tensors.keys(), ...nodes.flatMap((n) => [...n.inputs, ...n.outputs])]);
  let prefix = 'cpu_rewrite_';
  while ([...names].some((name) => name.startsWith(prefix))) prefix += '_';
  const producer = new Map(nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  const uses = (name: string) =>
    nodes.reduce((k, n) => k + n.inputs.filter((i) => i === name).length, graphOutputs.has(name) ? 1 : 0);

  const replaced = new Map<Field, Uint8Array[]>();
  const added: Uint8Array[] = [];
  const counts = { prelu: 0, channelPads: 0 };
  for (const node of nodes) {
    if (node.domain !== '') continue;
    const id = `${prefix}${counts.prelu + counts.channelPads}_`;
    if (node.opType === 'PRelu' && node.inputs.length === 2) {
      const slope = preluSlope(tensors.get(node.inputs[1]));
      if (!slope) continue;
      const [x, y] = [node.inputs[0], node.outputs[0]];
      counts.prelu++;
      if (slope.length === 1) {
        replaced.set(node.field, [encodeNode('LeakyRelu', [x], [y], `${id}leaky`, [floatAttr('alpha', slope[0])])]);
        continue;
      }
      const channels = slope.length;
      const depthwise = (input: string, weights: string, output: string) =>
        encodeNode('Conv', [input, weights], [output], output, [
          intAttr('group', channels),
          intsAttr('kernel_shape', [1, 1]),
        ]);
      added.push(
        encodeTensor(`${id}minus_one`, [channels, 1, 1, 1], new Float32Array(channels).fill(-1)),
        encodeTensor(
          `${id}one_minus_slope`,
          [channels, 1, 1, 1],
          Float32Array.from(slope, (s) => 1 - s),
        ),
      );
      replaced.set(node.field, [
        depthwise(x, `${id}minus_one`, `${id}negated`),
        encodeNode('Relu', [`${id}negated`], [`${id}negative_part`], `${id}relu`),
        depthwise(`${id}negative_part`, `${id}one_minus_slope`, `${id}scaled`),
        encodeNode('Add', [`${id}scaled`, x], [y], `${id}add`),
      ]);
    } else if (node.opType === 'Concat' && node.inputs.length === 2 && node.attributes.get('axis')?.i === 1) {
      // Concat(x [1, C, H, W], zeros [1, P, H, W]) on channels -> Conv(x) with [C + P, C, 1, 1] weights [I; 0].
      const [x, padded] = node.inputs;
      const zeros = producer.get(padded);
      if (zeros?.opType !== 'ConstantOfShape' || zeros.domain !== '' || uses(padded) !== 1) continue;
      const value = zeros.attributes.get('value')?.t;
      if (value !== undefined && !isZeroFloat(readTensor(value))) continue;
      const padShape = int64Values(tensors.get(zeros.inputs[0]));
      const xShape = shapes.get(x);
      if (padShape?.length !== 4 || xShape?.length !== 4) continue;
      const [n, channels, h, w] = xShape;
      if (n !== 1 || padShape[0] !== 1 || !channels || h !== padShape[2] || w !== padShape[3]) continue;
      const out = channels + padShape[1];
      const weights = new Float32Array(out * channels);
      for (let c = 0; c < channels; c++) weights[c * channels + c] = 1;
      counts.channelPads++;
      added.push(encodeTensor(`${id}copy_channels`, [out, channels, 1, 1], weights));
      replaced.set(node.field, [
        encodeNode('Conv', [x, `${id}copy_channels`], [node.outputs[0]], `${id}pad`, [
          intsAttr('kernel_shape', [1, 1]),
        ]),
      ]);
      replaced.set(zeros.field, []);
    }
  }
  const rewritten = counts.prelu + counts.channelPads;
  if (rewritten === 0) return none;

  const graphParts: Uint8Array[] = [];
  for (const f of graphFields) {
    const instead = replaced.get(f);
    if (instead) graphParts.push(...instead.map((bytes) => lengthDelimited(GRAPH_NODE, bytes)));
    else graphParts.push(graph.subarray(f.start, f.end));
  }
  graphParts.push(...added.map((tensor) => lengthDelimited(GRAPH_INITIALIZER, tensor)));
  const newGraph = lengthDelimited(MODEL_GRAPH, Buffer.concat(graphParts));
  const modelParts = modelFields.map((f) => (f === graphField ? newGraph : model.subarray(f.start, f.end)));
  return { model: Buffer.concat(modelParts), rewritten, ...counts };
}

export interface GraphRewrite {
  model: Uint8Array;
  /** Nodes rewritten in all (0: `model` is the input itself). */
  rewritten: number;
  prelu: number;
  channelPads: number;
}

const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_INITIALIZER = 5;
const GRAPH_INPUT = 11;
const GRAPH_OUTPUT = 12;
const GRAPH_VALUE_INFO = 13;
const VARINT = 0;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;
const TENSOR_FLOAT = 1;
const TENSOR_INT64 = 7;
const ATTRIBUTE_FLOAT = 1;
const ATTRIBUTE_INT = 2;
const ATTRIBUTE_INTS = 7;

/** One field of a message: its number, wire type and where it lies (tag included). */
interface Field {
  no: number;
  wire: number;
  start: number;
  end: number;
}

function tag(no: number, wire: number): number {
  return ((no << 3) | wire) >>> 0;
}

function fieldsOf(buf: Uint8Array): Field[] {
  const reader = Reader.create(buf);
  const fields: Field[] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const key = reader.uint32();
    reader.skipType(key & 7);
    fields.push({ no: key >>> 3, wire: key & 7, start, end: reader.pos });
  }
  return fields;
}

/** The bytes of a length-delimited field, without its tag and length. */
function payloadOf(buf: Uint8Array, field: Field): Uint8Array {
  const reader = Reader.create(buf.subarray(field.start, field.end));
  reader.uint32();
  return reader.bytes();
}

/** A length-delimited field: tag, length, bytes. */
function lengthDelimited(no: number, bytes: Uint8Array): Uint8Array {
  return Writer.create().uint32(tag(no, LENGTH_DELIMITED)).bytes(bytes).finish();
}

/** Reads repeated varints, packed or not, into `into`. */
function readVarints(reader: Reader, wire: number, into: number[]): void {
  if (wire === VARINT) {
    into.push(Number(reader.int64()));
    return;
  }
  const end = reader.uint32() + reader.pos;
  while (reader.pos < end) into.push(Number(reader.int64()));
}

interface GraphNode {
  inputs: string[];
  outputs: string[];
  opType: string;
  domain: string;
  /** The attributes the rewrites read: an int (`i`) or a tensor (`t`). */
  attributes: Map<string, { i?: number; t?: Uint8Array }>;
}

function readNode(buf: Uint8Array): GraphNode {
  const node: GraphNode = { inputs: [], outputs: [], opType: '', domain: '', attributes: new Map() };
  const reader = Reader.create(buf);
  while (reader.pos < reader.len) {
    const key = reader.uint32();
    const [no, wire] = [key >>> 3, key & 7];
    if (wire !== LENGTH_DELIMITED || ![1, 2, 4, 5, 7].includes(no)) reader.skipType(wire);
    else if (no === 5) {
      const attribute = readAttribute(reader.bytes());
      node.attributes.set(attribute.name, attribute);
    } else {
      const text = reader.string();
      if (no === 1) node.inputs.push(text);
      else if (no === 2) node.outputs.push(text);
      else if (no === 4) node.opType = text;
      else node.domain = text;
    }
  }
  return node;
}

function readAttribute(buf: Uint8Array): { name: string; i?: number; t?: Uint8Array } {
  const attribute: { name: string; i?: number; t?: Uint8Array } = { name: '' };
  const reader = Reader.create(buf);
  while (reader.pos < reader.len) {
    const key = reader.uint32();
    const [no, wire] = [key >>> 3, key & 7];
    if (no === 1 && wire === LENGTH_DELIMITED) attribute.name = reader.string();
    else if (no === 3 && wire === VARINT) attribute.i = Number(reader.int64());
    else if (no === 5 && wire === LENGTH_DELIMITED) attribute.t = reader.bytes();
    else reader.skipType(wire);
  }
  return attribute;
}

/** A value_info's name and, for a tensor of known rank, its dims (undefined where symbolic). */
function readValueInfo(buf: Uint8Array): { name: string; dims?: Array<number | undefined> } {
  let name = '';
  let dims: Array<number | undefined> | undefined;
  for (const [no, bytes] of lengthDelimitedFields(buf)) {
    if (no === 1) name = Buffer.from(bytes).toString('utf8');
    else if (no === 2) {
      // type -> tensor_type (1) -> shape (2) -> dim (1) each -> dim_value (1)
      const tensorType = lengthDelimitedFields(bytes).find(([n]) => n === 1)?.[1];
      const shape = tensorType && lengthDelimitedFields(tensorType).find(([n]) => n === 2)?.[1];
      if (shape) {
        dims = lengthDelimitedFields(shape)
          .filter(([n]) => n === 1)
          .map(([, dim]) => {
            const value = fieldsOf(dim).find((f) => f.no === 1 && f.wire === VARINT);
            if (!value) return undefined;
            const reader = Reader.create(dim.subarray(value.start, value.end));
            reader.uint32();
            return Number(reader.int64());
          });
      }
    }
  }
  return { name, dims };
}

/** The length-delimited fields of a message: number and payload. */
function lengthDelimitedFields(buf: Uint8Array): Array<[number, Uint8Array]> {
  return fieldsOf(buf)
    .filter((f) => f.wire === LENGTH_DELIMITED)
    .map((f) => [f.no, payloadOf(buf, f)]);
}

interface Tensor {
  name: string;
  dims: number[];
  dataType: number;
  external: boolean;
  raw?: Uint8Array;
  floats: number[];
  int64s: number[];
}

function readTensor(buf: Uint8Array): Tensor {
  const tensor: Tensor = { name: '', dims: [], dataType: 0, external: false, floats: [], int64s: [] };
  const reader = Reader.create(buf);
  while (reader.pos < reader.len) {
    const key = reader.uint32();
    const [no, wire] = [key >>> 3, key & 7];
    if (no === 1 && (wire === VARINT || wire === LENGTH_DELIMITED)) readVarints(reader, wire, tensor.dims);
    else if (no === 2 && wire === VARINT) tensor.dataType = reader.int32();
    else if (no === 4 && wire === FIXED32) tensor.floats.push(reader.float());
    else if (no === 4 && wire === LENGTH_DELIMITED) {
      const end = reader.uint32() + reader.pos;
      while (reader.pos < end) tensor.floats.push(reader.float());
    } else if (no === 7 && (wire === VARINT || wire === LENGTH_DELIMITED)) readVarints(reader, wire, tensor.int64s);
    else if (no === 8 && wire === LENGTH_DELIMITED) tensor.name = reader.string();
    else if (no === 9 && wire === LENGTH_DELIMITED) tensor.raw = reader.bytes();
    else if (no === 14 && wire === VARINT) tensor.external = reader.int32() === 1;
    else reader.skipType(wire);
  }
  return tensor;
}

/** A float tensor's values, or null (another type, stored elsewhere, or sizes that disagree). */
function floatValues(tensor: Tensor): Float32Array | null {
  const size = tensor.dims.reduce((a, b) => a * b, 1);
  if (tensor.dataType !== TENSOR_FLOAT || tensor.external) return null;
  if (tensor.raw) {
    if (tensor.raw.length !== size * 4) return null;
    const view = new DataView(tensor.raw.buffer, tensor.raw.byteOffset, tensor.raw.length);
    return Float32Array.from({ length: size }, (_, i) => view.getFloat32(i * 4, true));
  }
  return tensor.floats.length === size ? Float32Array.from(tensor.floats) : null;
}

function int64Values(tensor: Tensor | undefined): number[] | null {
  if (!tensor || tensor.dataType !== TENSOR_INT64 || tensor.external) return null;
  if (!tensor.raw) return tensor.int64s;
  const view = new DataView(tensor.raw.buffer, tensor.raw.byteOffset, tensor.raw.length);
  return Array.from({ length: Math.floor(tensor.raw.length / 8) }, (_, i) => Number(view.getBigInt64(i * 8, true)));
}

function isZeroFloat(tensor: Tensor): boolean {
  const values = floatValues(tensor);
  return values?.every((v) => v === 0) ?? false;
}

/**
 * A PRelu slope the rewrite handles: float32 in the file, shaped [1] or scalar (one shared slope), or [C, 1, 1] /
 * [1, C, 1, 1] (one per channel of an NCHW input).
 */
function preluSlope(tensor: Tensor | undefined): Float32Array | null {
  if (!tensor) return null;
  const { dims } = tensor;
  const size = dims.reduce((a, b) => a * b, 1);
  const perChannel =
    (dims.length === 3 && dims[1] === 1 && dims[2] === 1) ||
    (dims.length === 4 && dims[0] === 1 && dims[2] === 1 && dims[3] === 1);
  return size === 1 || perChannel ? floatValues(tensor) : null;
}

type Attribute = (writer: Writer) => void;

/** An AttributeProto: its name, its value (written by `value`) and its type. */
function attribute(name: string, type: number, value: (writer: Writer) => void): Attribute {
  return (w) => {
    w.uint32(tag(1, LENGTH_DELIMITED)).string(name);
    value(w);
    w.uint32(tag(20, VARINT)).int32(type);
  };
}

const intAttr = (name: string, v: number) => attribute(name, ATTRIBUTE_INT, (w) => w.uint32(tag(3, VARINT)).int64(v));
const floatAttr = (name: string, v: number) =>
  attribute(name, ATTRIBUTE_FLOAT, (w) => w.uint32(tag(2, FIXED32)).float(v));
const intsAttr = (name: string, values: number[]) =>
  attribute(name, ATTRIBUTE_INTS, (w) => {
    for (const v of values) w.uint32(tag(8, VARINT)).int64(v);
  });

function encodeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  name: string,
  attributes: Attribute[] = [],
): Uint8Array {
  const w = Writer.create();
  for (const input of inputs) w.uint32(tag(1, LENGTH_DELIMITED)).string(input);
  for (const output of outputs) w.uint32(tag(2, LENGTH_DELIMITED)).string(output);
  w.uint32(tag(3, LENGTH_DELIMITED)).string(name);
  w.uint32(tag(4, LENGTH_DELIMITED)).string(opType);
  for (const attribute of attributes) {
    w.uint32(tag(5, LENGTH_DELIMITED)).fork();
    attribute(w);
    w.ldelim();
  }
  return w.finish();
}

function encodeTensor(name: string, dims: number[], values: Float32Array): Uint8Array {
  const w = Writer.create();
  for (const d of dims) w.uint32(tag(1, VARINT)).int64(d);
  w.uint32(tag(2, VARINT)).int32(TENSOR_FLOAT);
  w.uint32(tag(8, LENGTH_DELIMITED)).string(name);
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  w.uint32(tag(9, LENGTH_DELIMITED)).bytes(raw);
  return w.finish();
}
