/**
 * The transport under test, with fake models: real gRPC servers on 127.0.0.1 random ports, real clients.
 */
import { existsSync } from 'node:fs';
import * as http2 from 'node:http2';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { join } from 'node:path';
import {
  type AlignedFace,
  type AnalyzeResult,
  type DetectOptions,
  type DetectResult,
  FaceSearchError,
  type ImageInfo,
  imageError,
} from '@facesearch/common';
import {
  DETECTOR_SERVICE,
  type DetectorImplementation,
  DetectorClient,
  type EmbedderImplementation,
  EmbedderClient,
  FLOW_CONTROL_WINDOW_BYTES,
  type FaceSearchGrpcServer,
  GrpcFaceAnalyzer,
  PROTO_DIR,
  analyzeResultFromWire,
  createDetectorServer,
  createEmbedderServer,
  services,
} from '@facesearch/proto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const CROP_BYTES = 112 * 112 * 3;
const IMAGE: ImageInfo = { width: 1920, height: 1080, format: 'jpeg' };
const SLOW = 0xdd;
const CORRUPT = 0xee;
const BUG = 0xbb;
const BUSY = 0xcc;

function crop(seed: number): Uint8Array {
  const c = new Uint8Array(CROP_BYTES);
  for (let i = 0; i < c.length; i++) c[i] = (i * 7 + seed) & 0xff;
  return c;
}

const FACES: AlignedFace[] = [
  {
    box: { x: 100.5, y: 200.25, width: 300.125, height: 310.75 },
    landmarks: {
      left_eye: { x: 180.1, y: 300.2 },
      right_eye: { x: 320.3, y: 298.4 },
      nose: { x: 250.5, y: 380.6 },
      mouth: { x: 251.7, y: 450.8 },
      mouth_left: { x: 200.9, y: 449.1 },
      mouth_right: { x: 300.2, y: 451.3 },
    },
    score: 0.987654321,
    quality: { size: 300, blur: 1234.5678, yaw: -12.5, pitch: 3.25, roll: -1.125, score: 0.875, level: 'HIGH' },
    crop: crop(1),
  },
  {
    box: { x: 10, y: 20, width: 40, height: 42 },
    landmarks: {
      left_eye: { x: 20, y: 30 },
      right_eye: { x: 40, y: 30 },
      nose: { x: 30, y: 40 },
      mouth: { x: 30, y: 50 },
    },
    score: 0.61,
    quality: { size: 40, blur: 12.5, yaw: 40, pitch: -20, roll: 15, score: 0.2, level: 'LOW' },
    crop: crop(2),
  },
];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const withoutCrop = ({ crop: _crop, ...face }: AlignedFace) => face;

class FakeDetector implements DetectorImplementation {
  readonly calls: Array<{ image: Uint8Array; options: DetectOptions; aligned: boolean }> = [];

  async detect(image: Uint8Array, options: DetectOptions): Promise<DetectResult> {
    const { image: info, faces } = await this.detectAligned(image, options, false);
    return { image: info, faces: faces.map(withoutCrop) };
  }

  async detectAligned(image: Uint8Array, options: DetectOptions, aligned = true) {
    this.calls.push({ image, options, aligned });
    if (image[0] === CORRUPT) throw imageError.corrupt('not a JPEG');
    if (image[0] === BUG) throw new TypeError('cannot read properties of undefined');
    if (image[0] === BUSY) throw new FaceSearchError('engine_busy', 'too many requests in flight', 503, true);
    if (image[0] === SLOW) await sleep(3000);
    const faces = image[0] === 0 ? [] : FACES.slice(0, options.maxFaces ?? FACES.length);
    return { image: IMAGE, faces };
  }
}

/** A deterministic "embedding" of a crop, so the test can tell which crop produced which vector. */
function fakeVector(c: Uint8Array): Float32Array {
  const v = Float32Array.from([c[0], c[1], c[2], c[3]].map((b) => b / 255 + 0.1));
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

class FakeEmbedder implements EmbedderImplementation {
  readonly modelId = 'fake-arcface-v1';
  readonly embeddingDim = 4;
  calls = 0;

  async embed(crops: Uint8Array[]): Promise<Float32Array[]> {
    this.calls++;
    if (crops.some((c) => c.byteLength !== CROP_BYTES))
      throw new FaceSearchError('invalid_crop', 'crop must be 112x112x3', 400);
    return crops.map(fakeVector);
  }
}

/** A detector with the embedding model too (as the detector worker's FaceEngine): it serves Detector.Analyze. */
class FakeAnalyzingDetector extends FakeDetector {
  readonly modelId = 'fake-arcface-v1';
  readonly embeddingDim = 4;
  analyses = 0;

  async analyze(image: Uint8Array, options: DetectOptions): Promise<AnalyzeResult> {
    this.analyses++;
    const { image: info, faces } = await this.detectAligned(image, options);
    return {
      image: info,
      faces: faces.map((face) => ({ ...withoutCrop(face), embedding: fakeVector(face.crop) })),
      modelId: this.modelId,
      engine_ms: 12.5,
    };
  }
}

const servers: FaceSearchGrpcServer[] = [];
async function start(server: FaceSearchGrpcServer): Promise<string> {
  servers.push(server);
  const port = await server.listen('127.0.0.1:0');
  return `127.0.0.1:${port}`;
}

/** A port nothing listens on. */
async function deadAddress(): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((resolve) => s.close(resolve));
  return `127.0.0.1:${port}`;
}

const clients: Array<{ close(): void }> = [];
function track<C extends { close(): void }>(client: C): C {
  clients.push(client);
  return client;
}

describe('gRPC transport', () => {
  const detector = new FakeDetector();
  const embedder = new FakeEmbedder();
  let detectorAddress: string;
  let embedderAddress: string;

  beforeAll(async () => {
    detectorAddress = await start(createDetectorServer(detector));
    embedderAddress = await start(createEmbedderServer(embedder));
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close(1000)));
  });

  it('finds the .proto files from the package root', () => {
    expect(existsSync(join(PROTO_DIR, 'facesearch.proto'))).toBe(true);
    expect(existsSync(join(PROTO_DIR, 'grpc', 'health', 'v1', 'health.proto'))).toBe(true);
  });

  const distIndex = join(__dirname, '..', 'dist', 'index.js');
  it.skipIf(!existsSync(distIndex))('loads the protos from the compiled dist/ too', () => {
    const dist = createRequire(__filename)(distIndex) as { services: typeof services; PROTO_DIR: string };
    expect(dist.PROTO_DIR).toBe(PROTO_DIR);
    expect(Object.keys(dist.services().Detector.service)).toContain('Detect');
  });

  it('round-trips a detection with every field, without crops', async () => {
    const client = track(new DetectorClient(detectorAddress));
    const image = Uint8Array.from([1, 2, 3, 4]);
    const result = await client.detect(image, { maxFaces: 5, minFaceSize: 0, scoreThreshold: 0.5 });
    // engine_ms: the engine gave none, so the server reports its handler's time.
    expect(result).toEqual({ image: IMAGE, faces: FACES.map(withoutCrop), engine_ms: expect.any(Number) });
    expect(result.engine_ms).toBeGreaterThanOrEqual(0);
    expect(result.faces[1].landmarks).not.toHaveProperty('mouth_left');
    const call = detector.calls.at(-1);
    expect(call?.aligned).toBe(false);
    expect(Array.from(call?.image ?? [])).toEqual([1, 2, 3, 4]);
    // 0 is a value, not "unset"; unset options stay unset.
    expect(call?.options).toEqual({ maxFaces: 5, minFaceSize: 0, scoreThreshold: 0.5 });
    await client.detect(image);
    expect(detector.calls.at(-1)?.options).toEqual({});
  });

  it('carries the aligned crops as bytes when asked', async () => {
    const client = track(new DetectorClient(detectorAddress));
    const { image, faces } = await client.detectAligned(Uint8Array.from([9]), { maxFaces: 2 });
    expect(image).toEqual(IMAGE);
    expect(faces).toHaveLength(2);
    for (const [i, face] of faces.entries()) {
      expect(face.crop).toBeInstanceOf(Uint8Array);
      expect(face.crop.byteLength).toBe(CROP_BYTES);
      expect(Buffer.from(face.crop).equals(Buffer.from(FACES[i].crop))).toBe(true);
      expect(withoutCrop(face)).toEqual(withoutCrop(FACES[i]));
    }
  });

  it('embeds crops into Float32Arrays and reports the model', async () => {
    const client = track(new EmbedderClient(embedderAddress));
    const out = await client.embed([FACES[0].crop, FACES[1].crop]);
    expect(out.modelId).toBe('fake-arcface-v1');
    expect(out.dim).toBe(4);
    expect(out.embeddings).toHaveLength(2);
    expect(out.embeddings[0]).toBeInstanceOf(Float32Array);
    expect(out.embeddings[0]).toEqual(fakeVector(FACES[0].crop));
    expect(out.embeddings[1]).toEqual(fakeVector(FACES[1].crop));
    expect(out.engine_ms).toBeGreaterThanOrEqual(0);
    const calls = embedder.calls;
    expect(await client.info()).toEqual({ modelId: 'fake-arcface-v1', dim: 4 });
    expect(embedder.calls).toBe(calls); // zero crops never reach the model
  });

  it('re-raises the server FaceSearchError with the same code, status and message', async () => {
    const client = track(new DetectorClient(detectorAddress));
    const error = await client.detect(Uint8Array.from([CORRUPT])).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FaceSearchError);
    expect(error).toMatchObject({
      code: 'image_corrupt',
      status: 422,
      retryable: false,
      message: 'The image could not be decoded: not a JPEG',
    });

    const busy = await client.detect(Uint8Array.from([BUSY])).catch((e: unknown) => e);
    expect(busy).toMatchObject({ code: 'engine_busy', status: 503, retryable: true });

    const bug = await client.detect(Uint8Array.from([BUG])).catch((e: unknown) => e);
    expect(bug).toBeInstanceOf(FaceSearchError);
    expect(bug).toMatchObject({ code: 'engine_error', status: 500, retryable: true });
    expect((bug as Error).message).toMatch(/cannot read properties/);

    const badCrop = await track(new EmbedderClient(embedderAddress))
      .embed([Uint8Array.from([1])])
      .catch((e: unknown) => e);
    expect(badCrop).toMatchObject({ code: 'invalid_crop', status: 400 });
  });

  it('tells onCallEnd about every answered call: method, status code name, seconds', async () => {
    const calls: Array<{ method: string; code: string; seconds: number }> = [];
    const address = await start(
      createDetectorServer(new FakeDetector(), {
        onCallEnd: (method, code, seconds) => calls.push({ method, code, seconds }),
      }),
    );
    const client = track(new DetectorClient(address));
    await client.detect(Uint8Array.from([1, 2, 3]));
    await client.detect(Uint8Array.from([CORRUPT])).catch(() => undefined);
    await client.detect(Uint8Array.from([BUG])).catch(() => undefined);
    expect(calls.map(({ method, code }) => `${method} ${code}`)).toEqual([
      'Detect OK',
      'Detect INVALID_ARGUMENT',
      'Detect INTERNAL',
    ]);
    for (const call of calls) expect(call.seconds).toBeGreaterThanOrEqual(0);
    expect(calls.every((c) => c.seconds < 10)).toBe(true);
  });

  it('sends the fs-error-* metadata on the wire', async () => {
    const { Detector } = services();
    const raw = new Detector(detectorAddress, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      (raw as unknown as Record<string, (r: unknown, cb: (e: grpc.ServiceError) => void) => void>).Detect(
        { image: Buffer.from([CORRUPT]) },
        resolve,
      ),
    );
    raw.close();
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.metadata.get('fs-error-code')).toEqual(['image_corrupt']);
    expect(err.metadata.get('fs-error-status')).toEqual(['422']);
    expect(err.metadata.get('fs-retryable')).toEqual(['false']);
  });

  it('round-robins over the addresses it is given', async () => {
    const a = new FakeDetector();
    const b = new FakeDetector();
    const client = track(
      new DetectorClient(`${await start(createDetectorServer(a))}, ${await start(createDetectorServer(b))}`),
    );
    for (let i = 0; i < 10; i++) await client.detect(Uint8Array.from([1]));
    expect(a.calls.length).toBe(5);
    expect(b.calls.length).toBe(5);
  });

  it('accepts a dns:/// target (round_robin over what the name resolves to)', async () => {
    const port = detectorAddress.split(':')[1];
    const client = track(new DetectorClient(`dns:///127.0.0.1:${port}`));
    expect((await client.detect(Uint8Array.from([1]))).faces).toHaveLength(2);
  });

  it('fails over to the next address when one is down', async () => {
    const live = new FakeDetector();
    const liveAddress = await start(createDetectorServer(live));
    const client = track(new DetectorClient(`${await deadAddress()},${liveAddress}`));
    for (let i = 0; i < 6; i++) expect((await client.detect(Uint8Array.from([1]))).faces).toHaveLength(2);
    expect(live.calls.length).toBe(6);
  });

  it('reports every address down as a retryable engine_unavailable', async () => {
    const client = track(new DetectorClient(`${await deadAddress()},${await deadAddress()}`));
    const error = await client.detect(Uint8Array.from([1])).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'engine_unavailable', status: 503, retryable: true });
  });

  it('gives up at the deadline', async () => {
    const client = track(new DetectorClient(detectorAddress, { deadlineMs: 200 }));
    const t0 = Date.now();
    const error = await client.detect(Uint8Array.from([SLOW])).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(error).toMatchObject({ code: 'engine_timeout', status: 504, retryable: true });
  });

  it('answers the standard health check, and reports changes', async () => {
    const server = createDetectorServer(new FakeDetector());
    const address = await start(server);
    const client = track(new DetectorClient(`${address},${await deadAddress()}`));
    expect(await client.checkHealth(DETECTOR_SERVICE)).toEqual([
      { target: address, status: 'SERVING' },
      { target: expect.any(String), status: 'UNREACHABLE' },
    ]);
    expect((await client.checkHealth(''))[0].status).toBe('SERVING');
    expect((await client.checkHealth('facesearch.v1.Embedder'))[0].status).toBe('SERVICE_UNKNOWN');

    // Watch streams the current status, then every change.
    const { Health } = services();
    const raw = new Health(address, grpc.credentials.createInsecure());
    const stream = (
      raw as unknown as Record<string, (r: unknown) => grpc.ClientReadableStream<{ status: string }>>
    ).Watch({
      service: DETECTOR_SERVICE,
    });
    const seen: string[] = [];
    stream.on('data', (m) => seen.push(m.status));
    stream.on('error', () => {});
    await expect.poll(() => seen).toEqual(['SERVING']);
    server.health.setStatus(DETECTOR_SERVICE, 'NOT_SERVING');
    await expect.poll(() => seen).toEqual(['SERVING', 'NOT_SERVING']);
    expect((await client.checkHealth(DETECTOR_SERVICE))[0].status).toBe('NOT_SERVING');
    stream.cancel();
    raw.close();
  });

  it('raises the message size limit above the 4 MiB default', async () => {
    const client = track(new DetectorClient(detectorAddress));
    const big = new Uint8Array(6 * 1024 * 1024).fill(1);
    expect((await client.detect(big)).faces).toHaveLength(2);
    expect(detector.calls.at(-1)?.image.byteLength).toBe(big.byteLength);
  });

  it('lets a client send a whole photo without waiting for window updates (stream and connection windows)', async () => {
    // A plain HTTP/2 client sees what the server grants: the stream window in its SETTINGS, the connection window
    // in the WINDOW_UPDATE that follows. Both default to 64 KiB; a grpc-js upgrade that moves the internals this
    // relies on fails here rather than silently slowing every upload down.
    const session = http2.connect(`http://${detectorAddress}`);
    try {
      const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
      expect(settings.initialWindowSize).toBe(FLOW_CONTROL_WINDOW_BYTES);
      const deadline = Date.now() + 2000;
      while ((session.state.remoteWindowSize ?? 0) < FLOW_CONTROL_WINDOW_BYTES && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(session.state.remoteWindowSize).toBeGreaterThanOrEqual(FLOW_CONTROL_WINDOW_BYTES);
    } finally {
      session.destroy();
    }
  });

  describe('GrpcFaceAnalyzer', () => {
    it('learns the model from the embedder and analyzes over both services', async () => {
      const analyzer = await GrpcFaceAnalyzer.connect({
        detector: detectorAddress,
        embedderAddresses: embedderAddress,
      });
      clients.push({ close: () => void analyzer.close() });
      expect(analyzer.modelId).toBe('fake-arcface-v1');
      expect(analyzer.embeddingDim).toBe(4);

      const detected = await analyzer.detect(Uint8Array.from([1]), { maxFaces: 1 });
      expect(detected.faces).toEqual([withoutCrop(FACES[0])]);
      expect(detector.calls.at(-1)?.aligned).toBe(false);

      const analyzed = await analyzer.analyze(Uint8Array.from([1]));
      expect(detector.calls.at(-1)?.aligned).toBe(true);
      expect(analyzed.modelId).toBe('fake-arcface-v1');
      expect(analyzed.image).toEqual(IMAGE);
      expect(analyzed.faces.map(({ embedding: _e, ...face }) => face)).toEqual(FACES.map(withoutCrop));
      expect(analyzed.faces.map((f) => f.embedding)).toEqual(FACES.map((f) => fakeVector(f.crop)));
      expect(analyzed.faces[0]).not.toHaveProperty('crop');
      // The engine's time in both services together (each reported its handler's time).
      expect(analyzed.engine_ms).toBeGreaterThanOrEqual(0);

      const calls = embedder.calls;
      expect((await analyzer.analyze(Uint8Array.from([0]))).faces).toEqual([]);
      expect(embedder.calls).toBe(calls);

      await expect(analyzer.analyze(Uint8Array.from([CORRUPT]))).rejects.toMatchObject({
        code: 'image_corrupt',
        status: 422,
      });
    });

    it('connect gives up on an unreachable embedder after its timeout', async () => {
      const t0 = Date.now();
      const error = await GrpcFaceAnalyzer.connect({
        detector: detectorAddress,
        embedderAddresses: await deadAddress(),
        connectTimeoutMs: 300,
      }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'engine_unavailable' });
      expect(Date.now() - t0).toBeLessThan(3000);
    });

    describe('without an embedder address: the detector service embeds (Detector.Analyze)', () => {
      const analyzing = new FakeAnalyzingDetector();
      let analyzingAddress: string;
      beforeAll(async () => {
        analyzingAddress = await start(createDetectorServer(analyzing));
      });

      it('learns the model from the detector and analyzes in one call, with the same result as over both services', async () => {
        const oneHop = await GrpcFaceAnalyzer.connect({ detector: analyzingAddress });
        const twoHops = await GrpcFaceAnalyzer.connect({
          detector: detectorAddress,
          embedderAddresses: embedderAddress,
        });
        clients.push({ close: () => void oneHop.close() }, { close: () => void twoHops.close() });
        expect(oneHop.embedder).toBeNull();
        expect([oneHop.modelId, oneHop.embeddingDim]).toEqual(['fake-arcface-v1', 4]);

        const embedderCalls = embedder.calls;
        const analyses = analyzing.analyses;
        const { engine_ms, ...result } = await oneHop.analyze(Uint8Array.from([1]), { maxFaces: 2 });
        expect(analyzing.analyses).toBe(analyses + 1);
        expect(embedder.calls).toBe(embedderCalls);
        expect(analyzing.calls.at(-1)?.options).toEqual({ maxFaces: 2 });
        expect(engine_ms).toBe(12.5);
        const { engine_ms: _, ...viaBoth } = await twoHops.analyze(Uint8Array.from([1]), { maxFaces: 2 });
        expect(result).toEqual(viaBoth);
        expect(result.faces).toHaveLength(2);
        expect(result.faces[0]).not.toHaveProperty('crop');

        expect((await oneHop.analyze(Uint8Array.from([0]))).faces).toEqual([]);
        await expect(oneHop.analyze(new Uint8Array(0))).rejects.toMatchObject({ code: 'image_empty', status: 400 });
        await expect(oneHop.analyze(Uint8Array.from([CORRUPT]))).rejects.toMatchObject({
          code: 'image_corrupt',
          status: 422,
        });
      });

      it('answers an empty image with the model only', async () => {
        const client = track(new DetectorClient(analyzingAddress));
        const analyses = analyzing.analyses;
        expect(await client.info()).toEqual({ modelId: 'fake-arcface-v1', dim: 4 });
        const reply = await client.analyzeRaw({ image: new Uint8Array(0), with_crops: false });
        expect(reply).toMatchObject({ image: null, faces: [], embeddings: [] });
        expect(analyzing.analyses).toBe(analyses);
      });

      it('a detector without the embedding model says so at once (UNIMPLEMENTED, not retried)', async () => {
        const t0 = Date.now();
        const error = await GrpcFaceAnalyzer.connect({ detector: detectorAddress, connectTimeoutMs: 5000 }).catch(
          (e: unknown) => e,
        );
        expect(error).toMatchObject({ code: 'engine_unsupported', status: 502, retryable: false });
        expect(Date.now() - t0).toBeLessThan(2000);
      });

      it('a detector in this process needs embedder addresses', async () => {
        await expect(GrpcFaceAnalyzer.connect({ detector: analyzing })).rejects.toMatchObject({
          code: 'invalid_config',
        });
      });

      it('rejects a reply whose vectors do not match its faces', async () => {
        const client = track(new DetectorClient(analyzingAddress));
        const reply = await client.analyzeRaw({ image: Uint8Array.from([1]), with_crops: false });
        expect(() => analyzeResultFromWire({ ...reply, embeddings: reply.embeddings.slice(1) })).toThrow(
          expect.objectContaining({ code: 'engine_bad_reply' }),
        );
        expect(() => analyzeResultFromWire({ ...reply, dim: 5 })).toThrow(
          expect.objectContaining({ code: 'engine_bad_reply' }),
        );
      });
    });

    it('rejects an empty address list', () => {
      expect(() => new DetectorClient(' , ')).toThrow(expect.objectContaining({ code: 'invalid_grpc_address' }));
    });
  });
});
