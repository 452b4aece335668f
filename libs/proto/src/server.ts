import type {
  AlignedFace,
  AnalyzeResult,
  DetectOptions,
  DetectResult,
  EngineTiming,
  ImageInfo,
} from '@facesearch/common';
import { FaceSearchError } from '@facesearch/common';
import type * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { analyzeReplyToWire, detectOptions, detectReplyToWire, embeddingsToWire } from './convert';
import { toWireError } from './errors';
import { HealthImplementation } from './health';
import { DETECTOR_SERVICE, EMBEDDER_SERVICE, services } from './load';
import type * as pb from './messages';

/** 64 MiB: images up to the gateway's limit plus a reply with many 37 KB crops. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/**
 * HTTP/2 flow-control window of both ends, stream and connection. The protocol's default, 64 KiB, makes the sender
 * of a photo wait for the receiver's WINDOW_UPDATE about every 64 KiB: on this 2-core VM (bench:grpc, BENCHMARKS.md)
 * a 4 MiB request took 42-44 ms beyond a handler that holds 50 ms with it and 23-25 ms with 8 MiB, 1 MiB 10.5-10.8 vs
 * 8.1-8.2 ms.
 */
export const FLOW_CONTROL_WINDOW_BYTES = 8 * 1024 * 1024;
const HTTP2_DEFAULT_WINDOW_BYTES = 65_535;

/** The parts of grpc-js's Server that hold its HTTP/2 settings; not public API, so every use checks they exist. */
interface GrpcServerInternals {
  commonServerOptions?: http2.ServerOptions;
  http2Servers?: Map<http2.Http2Server, unknown>;
}

/**
 * grpc-js lets a client raise its receive window ('grpc-node.flow_control_window') but not a server, which is the
 * side that receives the photos. Before bind: the stream window in the SETTINGS every client gets. After bind: the
 * connection window, raised on each new session. Missing internals (another grpc-js) leave the defaults: slower,
 * not wrong; the proto tests check that the windows are raised with the pinned version.
 */
function widenServerWindowBeforeBind(server: grpc.Server, bytes: number): void {
  if (bytes <= HTTP2_DEFAULT_WINDOW_BYTES) return;
  const options = (server as unknown as GrpcServerInternals).commonServerOptions;
  if (options) options.settings = { ...options.settings, initialWindowSize: bytes };
}

function widenServerWindowAfterBind(server: grpc.Server, bytes: number): void {
  if (bytes <= HTTP2_DEFAULT_WINDOW_BYTES) return;
  for (const http2Server of (server as unknown as GrpcServerInternals).http2Servers?.keys() ?? []) {
    http2Server.on('session', (session: http2.ServerHttp2Session) => {
      try {
        session.setLocalWindowSize(bytes);
      } catch {
        // A session closed before it started; nothing to widen.
      }
    });
  }
}

/** What the detector service runs; FaceEngine from @facesearch/face-engine fits as is. */
export interface DetectorImplementation {
  detect(image: Uint8Array, options: DetectOptions): Promise<DetectResult>;
  /** Faces with their aligned 112x112x3 RGB crops. */
  detectAligned(
    image: Uint8Array,
    options: DetectOptions,
  ): Promise<{ image: ImageInfo; faces: AlignedFace[] } & EngineTiming>;
}

/**
 * A detector that also embeds (FaceEngine: the detector worker loads both models): it serves Detector.Analyze,
 * so a caller needs one call per image instead of Detect then Embedder.Embed.
 */
export interface AnalyzingDetectorImplementation extends DetectorImplementation {
  readonly modelId: string;
  readonly embeddingDim: number;
  analyze(image: Uint8Array, options: DetectOptions): Promise<AnalyzeResult>;
}

function canAnalyze(impl: DetectorImplementation): impl is AnalyzingDetectorImplementation {
  const candidate = impl as Partial<AnalyzingDetectorImplementation>;
  return typeof candidate.analyze === 'function' && typeof candidate.modelId === 'string';
}

/** What the embedder service runs; FaceEngine fits as is. */
export interface EmbedderImplementation {
  readonly modelId: string;
  readonly embeddingDim: number;
  embed(crops: Uint8Array[]): Promise<Float32Array[]>;
}

export interface GrpcServerOptions {
  maxMessageBytes?: number;
  /** Receive window, stream and connection; default FLOW_CONTROL_WINDOW_BYTES, 65535 keeps the protocol's. */
  flowControlWindowBytes?: number;
  /** Told about every error that is not a FaceSearchError (bugs, runtime failures). */
  onUnexpectedError?: (error: unknown, method: string) => void;
  /** Told about every call once answered: its method, status code name (OK, INVALID_ARGUMENT, ...) and seconds. */
  onCallEnd?: (method: string, code: string, seconds: number) => void;
}

type UnaryHandler = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => void;

/** Runs an async handler; anything it throws goes back as status + fs-error-* metadata, never a crash. */
function unary<Req, Res>(method: string, fn: (request: Req) => Promise<Res>, options: GrpcServerOptions): UnaryHandler {
  return (call, callback) => {
    const start = performance.now();
    const ended = (code: grpc.status) =>
      options.onCallEnd?.(method, grpc.status[code], (performance.now() - start) / 1000);
    Promise.resolve()
      .then(() => fn(call.request as Req))
      .then(
        (reply) => {
          callback(null, reply);
          ended(grpc.status.OK);
        },
        (error: unknown) => {
          if (!(error instanceof FaceSearchError)) options.onUnexpectedError?.(error, method);
          const wire = toWireError(error);
          callback({ code: wire.code, details: wire.details, metadata: wire.metadata });
          ended(wire.code);
        },
      );
  };
}

function detectHandler(impl: DetectorImplementation, options: GrpcServerOptions): UnaryHandler {
  return unary<pb.DetectRequest, pb.DetectReply>(
    'Detect',
    async (request) => {
      const opts = detectOptions(request);
      const start = performance.now();
      const result = request.with_crops
        ? await impl.detectAligned(request.image, opts)
        : await impl.detect(request.image, opts);
      // The engine's own figure when it gives one (inside its thread), else the handler's.
      const engineMs = result.engine_ms ?? performance.now() - start;
      return detectReplyToWire({ ...result, engine_ms: engineMs }, request.with_crops);
    },
    options,
  );
}

function analyzeHandler(impl: AnalyzingDetectorImplementation, options: GrpcServerOptions): UnaryHandler {
  return unary<pb.DetectRequest, pb.AnalyzeReply>(
    'Analyze',
    async (request) => {
      const model = { modelId: impl.modelId, dim: impl.embeddingDim };
      // An empty image asks for the model only.
      if (request.image.byteLength === 0) return analyzeReplyToWire(model);
      const start = performance.now();
      const result = await impl.analyze(request.image, detectOptions(request));
      return analyzeReplyToWire(model, { ...result, engine_ms: result.engine_ms ?? performance.now() - start });
    },
    options,
  );
}

function embedHandler(impl: EmbedderImplementation, options: GrpcServerOptions): UnaryHandler {
  return unary<pb.EmbedRequest, pb.EmbedReply>(
    'Embed',
    async (request) => {
      // Zero crops: the caller only wants the model id and dimension.
      const start = performance.now();
      const vectors = request.crops.length === 0 ? [] : await impl.embed(request.crops);
      const engineMs = performance.now() - start;
      if (vectors.length !== request.crops.length) {
        throw new FaceSearchError(
          'engine_error',
          `embedder returned ${vectors.length} vectors for ${request.crops.length} crops`,
          500,
          true,
        );
      }
      return embeddingsToWire(vectors, impl.modelId, impl.embeddingDim, engineMs);
    },
    options,
  );
}

/** A gRPC server with the face services it was given and the standard health service. */
export class FaceSearchGrpcServer {
  readonly server: grpc.Server;
  readonly health: HealthImplementation;
  private readonly flowControlWindowBytes: number;

  constructor(
    impl: { detector?: DetectorImplementation; embedder?: EmbedderImplementation },
    options: GrpcServerOptions = {},
  ) {
    const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.server = new grpc.Server({ 'grpc.max_receive_message_length': max, 'grpc.max_send_message_length': max });
    this.flowControlWindowBytes = options.flowControlWindowBytes ?? FLOW_CONTROL_WINDOW_BYTES;
    widenServerWindowBeforeBind(this.server, this.flowControlWindowBytes);
    const { Detector, Embedder, Health } = services();
    const serving: Record<string, 'SERVING'> = { '': 'SERVING' };
    if (impl.detector) {
      // A detector without the embedding model answers Analyze with UNIMPLEMENTED.
      const handlers: grpc.UntypedServiceImplementation = { Detect: detectHandler(impl.detector, options) };
      if (canAnalyze(impl.detector)) handlers.Analyze = analyzeHandler(impl.detector, options);
      this.server.addService(Detector.service, handlers);
      serving[DETECTOR_SERVICE] = 'SERVING';
    }
    if (impl.embedder) {
      this.server.addService(Embedder.service, { Embed: embedHandler(impl.embedder, options) });
      serving[EMBEDDER_SERVICE] = 'SERVING';
    }
    this.health = new HealthImplementation(serving);
    this.server.addService(Health.service, this.health.handlers());
  }

  /** Binds (insecure: the workers live on a private network) and starts; resolves to the bound port. */
  listen(address = '127.0.0.1:0'): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => {
        if (err) return reject(err);
        widenServerWindowAfterBind(this.server, this.flowControlWindowBytes);
        resolve(port);
      });
    });
  }

  /** Reports NOT_SERVING, lets running calls finish for up to graceMs, then cuts the rest. */
  async close(graceMs = 10_000): Promise<void> {
    this.health.setAll('NOT_SERVING');
    this.health.endWatches();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

export function createDetectorServer(impl: DetectorImplementation, options?: GrpcServerOptions): FaceSearchGrpcServer {
  return new FaceSearchGrpcServer({ detector: impl }, options);
}

export function createEmbedderServer(impl: EmbedderImplementation, options?: GrpcServerOptions): FaceSearchGrpcServer {
  return new FaceSearchGrpcServer({ embedder: impl }, options);
}
