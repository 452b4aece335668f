import type * as ort from 'onnxruntime-node';
import { type EmbedderManifest, InputBuffers, openSession, type SessionOptions, toTensor } from './models';

/** An ArcFace-style embedder: aligned RGB crop in, L2-normalised vector out. */
export class OnnxEmbedder {
  private readonly inputs: InputBuffers;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly manifest: EmbedderManifest,
  ) {
    this.inputs = new InputBuffers(manifest.input);
  }

  static async open(
    manifest: EmbedderManifest,
    path: string,
    threads: number,
    options: SessionOptions = {},
  ): Promise<OnnxEmbedder> {
    return new OnnxEmbedder(await openSession(manifest, path, threads, options), manifest);
  }

  get dim(): number {
    return this.manifest.output.dim;
  }

  async embed(crop: Uint8Array): Promise<Float32Array> {
    const { input, output } = this.manifest;
    if (crop.length !== input.width * input.height * 3) {
      throw new Error(`aligned crop must be ${input.width}x${input.height}x3 bytes, got ${crop.length}`);
    }
    const out = await this.inputs.with((buffer) => this.session.run({ [input.name]: toTensor(crop, input, buffer) }));
    return l2Normalise(Float32Array.from(out[output.name].data as Float32Array));
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

export function l2Normalise(v: Float32Array): Float32Array {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i] * v[i];
  const norm = Math.sqrt(sum) || 1;
  for (let i = 0; i < v.length; i++) v[i] /= norm;
  return v;
}
