import { Reader, Writer } from 'protobufjs/minimal';

/**
 * Rewrites an ONNX model's PRelu nodes into ops that onnxruntime runs fast on CPU, with the same function.
 *
 * ORT's PRelu is a generic broadcast (per-channel slope over NCHW), and it is not an op of ORT's NCHWc layout, so
 * each one also costs a reorder out of that layout and back: in fr_feature (33 PRelu) that was 7 of 14 ms per
 * face. A per-channel PRelu(x, s) = x + (1 - s) * relu(-x) becomes two 1x1 depthwise convolutions, which the NCHWc
 * layout fuses with the ReLU and the addition; a single shared slope becomes LeakyRelu, which fuses into the
 * convolution before it. BENCHMARKS.md, session 9.
 *
 * The model is edited at the protobuf wire level: every field the rewrite does not touch is copied as it was, so
 * any ONNX version's extra fields survive. Field numbers are those of onnx.proto (ModelProto.graph 7;
 * GraphProto.node 1, initializer 5; NodeProto input 1, output 2, name 3, op_type 4, attribute 5; TensorProto dims 1,
 * data_type 2, float_data 4, name 8, raw_data 9, data_location 14; AttributeProto name 1, f 2, i 3, ints 8, type 20).
 */
export function rewritePRelu(model: Uint8Array): { model: Uint8Array; rewritten: number } {
  const modelFields = fieldsOf(model);
  const graphField = modelFields.find((f) => f.no === MODEL_GRAPH && f.wire === LENGTH_DELIMITED);
  if (!graphField) return { model, rewritten: 0 };
  const graph = payloadOf(model, graphField);
  const graphFields = fieldsOf(graph);

  const slopes = new Map<string, Float32Array | null>();
  const names = new Set<string>();
  for (const f of graphFields) {
    if (f.no === GRAPH_INITIALIZER && f.wire === LENGTH_DELIMITED) {
      const tensor = readSlope(payloadOf(graph, f));
      slopes.set(tensor.name, tensor.values);
      names.add(tensor.name);
    }
  }
  const nodes = graphFields
    .filter((f) => f.no === GRAPH_NODE && f.wire === LENGTH_DELIMITED)
    .map((f) => ({ field: f, node: readNode(payloadOf(graph, f)) }));
  for (const { node } of nodes) for (const name of [...node.inputs, ...node.outputs]) names.add(name);

  const replaced = new Map<Field, Uint8Array[]>();
  const added: Uint8Array[] = [];
  let count = 0;
  for (const { field, node } of nodes) {
    if (node.opType !== 'PRelu' || node.domain !== '' || node.inputs.length !== 2) continue;
    const slope = slopes.get(node.inputs[1]);
    if (!slope) continue;
    const [x, y] = [node.inputs[0], node.outputs[0]];
    const prefix = `prelu_rewrite_${count}_`;
    if ([...names].some((name) => name.startsWith(prefix))) continue;
    count++;
    if (slope.length === 1) {
      replaced.set(field, [encodeNode('LeakyRelu', [x], [y], `${prefix}leaky`, [floatAttr('alpha', slope[0])])]);
      continue;
    }
    const channels = slope.length;
    const depthwise = (input: string, weights: string, output: string) =>
      encodeNode('Conv', [input, weights], [output], output, [
        intAttr('group', channels),
        intsAttr('kernel_shape', [1, 1]),
      ]);
    added.push(
      encodeTensor(`${prefix}minus_one`, [channels, 1, 1, 1], new Float32Array(channels).fill(-1)),
      encodeTensor(
        `${prefix}one_minus_slope`,
        [channels, 1, 1, 1],
        Float32Array.from(slope, (s) => 1 - s),
      ),
    );
    replaced.set(field, [
      depthwise(x, `${prefix}minus_one`, `${prefix}negated`),
      encodeNode('Relu', [`${prefix}negated`], [`${prefix}negative_part`], `${prefix}relu`),
      depthwise(`${prefix}negative_part`, `${prefix}one_minus_slope`, `${prefix}scaled`),
      encodeNode('Add', [`${prefix}scaled`, x], [y], `${prefix}add`),
    ]);
  }
  if (count === 0) return { model, rewritten: 0 };

  const graphParts: Uint8Array[] = [];
  for (const f of graphFields) {
    const instead = replaced.get(f);
    if (instead) graphParts.push(...instead.map((node) => lengthDelimited(GRAPH_NODE, node)));
    else graphParts.push(graph.subarray(f.start, f.end));
  }
  graphParts.push(...added.map((tensor) => lengthDelimited(GRAPH_INITIALIZER, tensor)));
  const newGraph = lengthDelimited(MODEL_GRAPH, Buffer.concat(graphParts));
  const modelParts = modelFields.map((f) => (f === graphField ? newGraph : model.subarray(f.start, f.end)));
  return { model: Buffer.concat(modelParts), rewritten: count };
}

const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_INITIALIZER = 5;
const VARINT = 0;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;
const TENSOR_FLOAT = 1;
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

function readNode(buf: Uint8Array): { inputs: string[]; outputs: string[]; opType: string; domain: string } {
  const node = { inputs: [] as string[], outputs: [] as string[], opType: '', domain: '' };
  const reader = Reader.create(buf);
  while (reader.pos < reader.len) {
    const key = reader.uint32();
    const [no, wire] = [key >>> 3, key & 7];
    if (wire !== LENGTH_DELIMITED || ![1, 2, 4, 7].includes(no)) {
      reader.skipType(wire);
      continue;
    }
    const text = reader.string();
    if (no === 1) node.inputs.push(text);
    else if (no === 2) node.outputs.push(text);
    else if (no === 4) node.opType = text;
    else node.domain = text;
  }
  return node;
}

/**
 * An initializer's name and, when it can be a PRelu slope the rewrite handles, its values: float32 in the file,
 * shaped [1] or scalar (one shared slope), or [C, 1, 1] / [1, C, 1, 1] (one per channel of an NCHW input).
 */
function readSlope(buf: Uint8Array): { name: string; values: Float32Array | null } {
  let name = '';
  let dataType = 0;
  let external = false;
  const dims: number[] = [];
  let raw: Uint8Array | undefined;
  const floats: number[] = [];
  const reader = Reader.create(buf);
  while (reader.pos < reader.len) {
    const key = reader.uint32();
    const [no, wire] = [key >>> 3, key & 7];
    if (no === 1 && wire === VARINT) dims.push(Number(reader.int64()));
    else if (no === 1 && wire === LENGTH_DELIMITED) {
      const end = reader.uint32() + reader.pos;
      while (reader.pos < end) dims.push(Number(reader.int64()));
    } else if (no === 2 && wire === VARINT) dataType = reader.int32();
    else if (no === 4 && wire === FIXED32) floats.push(reader.float());
    else if (no === 4 && wire === LENGTH_DELIMITED) {
      const end = reader.uint32() + reader.pos;
      while (reader.pos < end) floats.push(reader.float());
    } else if (no === 8 && wire === LENGTH_DELIMITED) name = reader.string();
    else if (no === 9 && wire === LENGTH_DELIMITED) raw = reader.bytes();
    else if (no === 14 && wire === VARINT) external = reader.int32() === 1;
    else reader.skipType(wire);
  }
  const size = dims.reduce((a, b) => a * b, 1);
  const perChannel =
    (dims.length === 3 && dims[1] === 1 && dims[2] === 1) ||
    (dims.length === 4 && dims[0] === 1 && dims[2] === 1 && dims[3] === 1);
  if (dataType !== TENSOR_FLOAT || external || !(size === 1 || perChannel)) return { name, values: null };
  let values: Float32Array;
  if (raw) {
    if (raw.length !== size * 4) return { name, values: null };
    const view = new DataView(raw.buffer, raw.byteOffset, raw.length);
    values = Float32Array.from({ length: size }, (_, i) => view.getFloat32(i * 4, true));
  } else {
    if (floats.length !== size) return { name, values: null };
    values = Float32Array.from(floats);
  }
  return { name, values };
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
