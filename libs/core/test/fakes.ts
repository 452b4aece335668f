/**
 * Small in-memory ports for unit tests. The fake analyzer reads "images" that are JSON text:
 * `{"faces":[{"person":"alice","level":"HIGH","variant":1}]}`; each person has a fixed random unit vector,
 * variants add a little noise, so the same person is similar and different people are not.
 */
import {
  type AlignedFace,
  type AnalyzeCall,
  type AnalyzeResult,
  type BlobStore,
  type DetectOptions,
  type DetectResult,
  type EmbeddedFace,
  type FaceAnalyzer,
  FaceSearchError,
  type ImageInfo,
  imageError,
  type QualityLevel,
  type VectorHit,
  type VectorPayload,
  type VectorPoint,
  type VectorQuery,
  type VectorStore,
} from '@facesearch/common';

export const DIM = 64;

export interface FakeFace {
  person: string;
  level?: QualityLevel;
  variant?: number;
  /** Box side; faces are sorted largest first like the real engine. */
  size?: number;
}

export function fakeImage(...faces: FakeFace[]): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ faces }));
}

function rng(seed: string): () => number {
  let h = 2166136261;
  for (const c of seed) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  return () => {
    h = Math.imul(h ^ (h >>> 15), 2246822507);
    h = Math.imul(h ^ (h >>> 13), 3266489909);
    h ^= h >>> 16;
    return (h >>> 0) / 4294967296;
  };
}

function unit(v: Float32Array): Float32Array {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

export function personVector(person: string, variant = 0): Float32Array {
  const base = rng(person);
  const noise = rng(`${person}#${variant}`);
  const v = new Float32Array(DIM);
  for (let i = 0; i < DIM; i++) v[i] = base() - 0.5 + (variant ? (noise() - 0.5) * 0.35 : 0);
  return unit(v);
}

/**
 * Also the import stages' aligner and embedder (like FaceEngine): a fake "crop" is the face's vector as bytes,
 * and embedding it gives that vector back.
 */
export class FakeAnalyzer implements FaceAnalyzer {
  readonly modelId = 'fake-model';
  readonly embeddingDim = DIM;
  calls = 0;
  embedCalls = 0;
  /** Whether each detect/analyze/detectAligned call, in order, handed its image over. */
  handedOver: boolean[] = [];

  async detectAligned(
    image: Uint8Array,
    options?: DetectOptions,
    call?: AnalyzeCall,
  ): Promise<{ image: ImageInfo; faces: AlignedFace[] }> {
    const r = await this.analyze(image, options, call);
    return {
      image: r.image,
      faces: r.faces.map(({ embedding, ...f }) => ({ ...f, crop: new Uint8Array(embedding.slice().buffer) })),
    };
  }

  async embed(crops: Uint8Array[]): Promise<Float32Array[]> {
    this.embedCalls++;
    return crops.map((crop) => new Float32Array(Uint8Array.from(crop).buffer));
  }

  async detect(image: Uint8Array, options?: DetectOptions, call?: AnalyzeCall): Promise<DetectResult> {
    const r = await this.analyze(image, options, call);
    return { image: r.image, faces: r.faces.map(({ embedding: _e, ...f }) => f), engine_ms: r.engine_ms };
  }

  /** Reports its own time as `engine_ms`, as the real engine does. */
  async analyze(image: Uint8Array, options: DetectOptions = {}, call: AnalyzeCall = {}): Promise<AnalyzeResult> {
    const start = performance.now();
    this.calls++;
    this.handedOver.push(call.handOver === true);
    if (image.length === 0) throw imageError.empty();
    let parsed: { faces: FakeFace[] };
    try {
      parsed = JSON.parse(new TextDecoder().decode(image));
    } catch {
      throw imageError.corrupt('not a fake image');
    }
    const faces: EmbeddedFace[] = parsed.faces
      .map((f, i) => {
        const size = f.size ?? 100 - i;
        const level = f.level ?? 'HIGH';
        return {
          box: { x: i * 120, y: 10, width: size, height: size },
          landmarks: {
            left_eye: { x: 1, y: 1 },
            right_eye: { x: 2, y: 1 },
            nose: { x: 1.5, y: 2 },
            mouth: { x: 1.5, y: 3 },
          },
          score: 0.9,
          quality: { size, blur: 100, yaw: 0, pitch: 0, roll: 0, score: 0.9, level },
          embedding: personVector(f.person, f.variant ?? 0),
        };
      })
      .sort((a, b) => b.box.width - a.box.width)
      .slice(0, options.maxFaces ?? 20);
    return {
      image: { width: 640, height: 480, format: 'fake' },
      faces,
      modelId: this.modelId,
      engine_ms: performance.now() - start,
    };
  }

  async close(): Promise<void> {}
}

export class MemoryBlobStore implements BlobStore {
  readonly blobs = new Map<string, Buffer>();

  async put(key: string, data: Uint8Array): Promise<void> {
    this.blobs.set(key, Buffer.from(data));
  }
  async get(key: string): Promise<Buffer> {
    const b = this.blobs.get(key);
    if (!b) throw new FaceSearchError('blob_not_found', `No blob ${key}`, 404);
    return b;
  }
  async exists(key: string): Promise<boolean> {
    return this.blobs.has(key);
  }
  async copy(fromKey: string, toKey: string): Promise<void> {
    this.blobs.set(toKey, Buffer.from(await this.get(fromKey)));
  }
  async delete(key: string): Promise<void> {
    this.blobs.delete(key);
  }
  async deletePrefix(prefix: string, options: { stillWanted?: () => Promise<boolean> } = {}): Promise<void> {
    const listed = [...this.blobs.keys()].filter((k) => k.startsWith(prefix));
    if (options.stillWanted && !(await options.stillWanted())) return;
    for (const k of listed) this.blobs.delete(k);
  }
  async presignPut(): Promise<string | null> {
    return null;
  }
  async ping(): Promise<void> {}
  async close(): Promise<void> {}
}

export class MemoryVectorStore implements VectorStore {
  readonly points = new Map<string, VectorPoint>();
  private key = (appId: string, faceId: string) => `${appId}/${faceId}`;

  async init(): Promise<void> {}
  async upsert(points: VectorPoint[]): Promise<void> {
    for (const p of points) this.points.set(this.key(p.payload.app_id, p.id), p);
  }
  async search(vector: Float32Array, q: VectorQuery): Promise<VectorHit[]> {
    const hits: VectorHit[] = [];
    for (const p of this.points.values()) {
      const { payload } = p;
      if (payload.app_id !== q.app_id || !q.group_ids.includes(payload.group_id) || payload.model_id !== q.model_id)
        continue;
      let dot = 0;
      for (let i = 0; i < vector.length; i++) dot += vector[i] * p.vector[i];
      hits.push({ ...payload, similarity: dot });
    }
    return hits.sort((a, b) => b.similarity - a.similarity).slice(0, q.limit);
  }
  async retrieve(appId: string, faceIds: string[]): Promise<Array<VectorPayload & { vector: Float32Array }>> {
    return faceIds.flatMap((id) => {
      const p = this.points.get(this.key(appId, id));
      return p ? [{ ...p.payload, vector: p.vector }] : [];
    });
  }
  async deleteFaces(appId: string, faceIds: string[]): Promise<void> {
    for (const id of faceIds) this.points.delete(this.key(appId, id));
  }
  async deleteWhere(f: { app_id: string; group_id: string; user_id?: string }): Promise<void> {
    for (const [k, p] of this.points) {
      if (
        p.payload.app_id === f.app_id &&
        p.payload.group_id === f.group_id &&
        (!f.user_id || p.payload.user_id === f.user_id)
      ) {
        this.points.delete(k);
      }
    }
  }
  async count(f: { app_id?: string; group_id?: string }): Promise<number> {
    return [...this.points.values()].filter(
      (p) => (!f.app_id || p.payload.app_id === f.app_id) && (!f.group_id || p.payload.group_id === f.group_id),
    ).length;
  }
  async ping(): Promise<void> {}
  async close(): Promise<void> {}
}

/** Polls until `check` returns true (imports finish asynchronously). */
export async function waitFor(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('timed out waiting');
}
