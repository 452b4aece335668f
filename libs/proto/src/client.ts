import {
  type AlignedFace,
  type AnalyzeResult,
  type DetectOptions,
  type DetectResult,
  type EngineTiming,
  FaceSearchError,
  type ImageInfo,
  imageError,
} from '@facesearch/common';
import * as grpc from '@grpc/grpc-js';
import {
  alignedFacesFromWire,
  analyzeResultFromWire,
  detectRequest,
  detectResultFromWire,
  embeddingsFromWire,
  engineTimingFromWire,
} from './convert';
import { fromServiceError } from './errors';
import { services } from './load';
import type * as pb from './messages';
import { DEFAULT_MAX_MESSAGE_BYTES, FLOW_CONTROL_WINDOW_BYTES } from './server';

export const DEFAULT_DEADLINE_MS = 30_000;

export interface GrpcClientOptions {
  /** Per call, retry included. Default 30 s. */
  deadlineMs?: number;
  maxMessageBytes?: number;
  /** Receive window for replies; default FLOW_CONTROL_WINDOW_BYTES. */
  flowControlWindowBytes?: number;
  /** Extra channel options, e.g. keepalive settings. */
  channelOptions?: grpc.ChannelOptions;
}

/**
 * `host:port,host:port` or `dns:///name:port` (or a mix). Each entry gets its own channel; a dns:/// entry
 * balances over every address the name resolves to (one per replica in compose) with grpc's round_robin.
 */
export function parseAddresses(list: string): string[] {
  const targets = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (targets.length === 0) throw new FaceSearchError('invalid_grpc_address', `no gRPC address in "${list}"`, 500);
  return targets;
}

type Callback<Res> = (error: grpc.ServiceError | null, reply?: Res) => void;
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: Callback<Res>,
) => void;

/**
 * Round-robin over per-address channels, with a deadline per call and one retry on the next address when
 * the first answers UNAVAILABLE (down, restarting, or overloaded). Failures become FaceSearchError.
 */
export class BalancedClient {
  readonly targets: string[];
  private readonly clients: grpc.Client[];
  private readonly healthClients: grpc.Client[];
  private readonly deadlineMs: number;
  private next = 0;

  constructor(addresses: string, ctor: grpc.ServiceClientConstructor, options: GrpcClientOptions = {}) {
    this.targets = parseAddresses(addresses);
    this.deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const { Health } = services();
    this.clients = this.targets.map((target) => {
      const channelOptions: grpc.ChannelOptions = {
        'grpc.max_receive_message_length': max,
        'grpc.max_send_message_length': max,
        // Replies with aligned crops run to hundreds of KiB; see FLOW_CONTROL_WINDOW_BYTES.
        'grpc-node.flow_control_window': options.flowControlWindowBytes ?? FLOW_CONTROL_WINDOW_BYTES,
        ...options.channelOptions,
      };
      if (target.startsWith('dns:')) {
        channelOptions['grpc.service_config'] = JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] });
      }
      return new ctor(target, grpc.credentials.createInsecure(), channelOptions);
    });
    // The health checks ride on the same channels.
    this.healthClients = this.clients.map(
      (client, i) =>
        new Health(this.targets[i], grpc.credentials.createInsecure(), { channelOverride: client.getChannel() }),
    );
  }

  /** Each address's serving status for `service` ('' = the server as a whole); unreachable ones are 'UNREACHABLE'. */
  async checkHealth(
    service = '',
    timeoutMs = 2000,
  ): Promise<Array<{ target: string; status: pb.ServingStatus | 'UNREACHABLE' }>> {
    return Promise.all(
      this.healthClients.map(async (client, i) => {
        const check = (client as unknown as Record<string, UnaryMethod<pb.HealthCheckRequest, pb.HealthCheckResponse>>)
          .Check;
        try {
          const reply = await new Promise<pb.HealthCheckResponse>((resolve, reject) =>
            check.call(client, { service }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
              err || !res ? reject(err) : resolve(res),
            ),
          );
          return { target: this.targets[i], status: reply.status };
        } catch (error) {
          const notFound = (error as grpc.ServiceError | undefined)?.code === grpc.status.NOT_FOUND;
          return {
            target: this.targets[i],
            status: notFound ? ('SERVICE_UNKNOWN' as const) : ('UNREACHABLE' as const),
          };
        }
      }),
    );
  }

  close(): void {
    for (const client of this.clients) client.close();
  }

  protected async call<Req, Res>(method: string, request: Req): Promise<Res> {
    const deadline = Date.now() + this.deadlineMs;
    const first = this.pick();
    try {
      return await this.invoke<Req, Res>(first, method, request, deadline);
    } catch (error) {
      const err = error as grpc.ServiceError;
      if (err.code !== grpc.status.UNAVAILABLE || Date.now() >= deadline)
        throw fromServiceError(err, this.targets[first]);
      const second = (first + 1) % this.clients.length;
      try {
        return await this.invoke<Req, Res>(second, method, request, deadline);
      } catch (retryError) {
        throw fromServiceError(retryError as grpc.ServiceError, this.targets[second]);
      }
    }
  }

  /** The next address in turn, skipping channels known to be failing while another might not be. */
  private pick(): number {
    const n = this.clients.length;
    for (let k = 0; k < n; k++) {
      const i = (this.next + k) % n;
      if (this.clients[i].getChannel().getConnectivityState(false) !== grpc.connectivityState.TRANSIENT_FAILURE) {
        this.next = (i + 1) % n;
        return i;
      }
    }
    const i = this.next;
    this.next = (i + 1) % n;
    return i;
  }

  private invoke<Req, Res>(index: number, method: string, request: Req, deadline: number): Promise<Res> {
    const client = this.clients[index];
    const fn = (client as unknown as Record<string, UnaryMethod<Req, Res>>)[method];
    return new Promise((resolve, reject) => {
      fn.call(client, request, new grpc.Metadata(), { deadline }, (err, reply) => {
        if (err) reject(err);
        else if (reply === undefined) reject(Object.assign(new Error('empty reply'), { code: grpc.status.INTERNAL }));
        else resolve(reply);
      });
    });
  }
}

export class DetectorClient extends BalancedClient {
  constructor(addresses: string, options?: GrpcClientOptions) {
    super(addresses, services().Detector, options);
  }

  detectRaw(request: pb.DetectRequest): Promise<pb.DetectReply> {
    return this.call('Detect', request);
  }

  async detect(image: Uint8Array, options: DetectOptions = {}): Promise<DetectResult> {
    return detectResultFromWire(await this.detectRaw(detectRequest(image, options, false)));
  }

  /** Faces with their aligned 112x112x3 RGB crops, ready for the embedder. */
  async detectAligned(
    image: Uint8Array,
    options: DetectOptions = {},
  ): Promise<{ image: ImageInfo; faces: AlignedFace[] } & EngineTiming> {
    return alignedFacesFromWire(await this.detectRaw(detectRequest(image, options, true)));
  }

  analyzeRaw(request: pb.DetectRequest): Promise<pb.AnalyzeReply> {
    return this.call('Analyze', request);
  }

  /** Faces with their embeddings, computed by the detector service itself (one call instead of two). */
  async analyze(image: Uint8Array, options: DetectOptions = {}): Promise<AnalyzeResult> {
    // On the wire an empty image asks for the model only; as an image it is the caller's error, as with Detect.
    if (image.byteLength === 0) throw imageError.empty();
    return analyzeResultFromWire(await this.analyzeRaw(detectRequest(image, options, false)));
  }

  /** The embedding model the detectors run, from an Analyze call with an empty image. */
  async info(): Promise<{ modelId: string; dim: number }> {
    const reply = await this.analyzeRaw(detectRequest(new Uint8Array(0), {}, false));
    return { modelId: reply.model_id, dim: reply.dim };
  }
}

export interface Embeddings extends EngineTiming {
  modelId: string;
  dim: number;
  /** One per crop, in order. */
  embeddings: Float32Array[];
}

export class EmbedderClient extends BalancedClient {
  constructor(addresses: string, options?: GrpcClientOptions) {
    super(addresses, services().Embedder, options);
  }

  embedRaw(request: pb.EmbedRequest): Promise<pb.EmbedReply> {
    return this.call('Embed', request);
  }

  async embed(crops: Uint8Array[]): Promise<Embeddings> {
    const reply = await this.embedRaw({ crops });
    const embeddings = embeddingsFromWire(reply, crops.length, 'The embedder', 'crops');
    return { modelId: reply.model_id, dim: reply.dim, embeddings, ...engineTimingFromWire(reply) };
  }

  /** The model id and dimension, from an Embed call with no crops. */
  async info(): Promise<{ modelId: string; dim: number }> {
    const { modelId, dim } = await this.embed([]);
    return { modelId, dim };
  }
}
