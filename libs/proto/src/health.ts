/** The standard grpc.health.v1.Health service, small enough to own rather than pull in grpc-health-check. */
import {
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
  type sendUnaryData,
  status as Status,
} from '@grpc/grpc-js';
import type { HealthCheckRequest, HealthCheckResponse, ServingStatus } from './messages';

type Watcher = ServerWritableStream<HealthCheckRequest, HealthCheckResponse>;

export class HealthImplementation {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<Watcher>>();

  /** `''` is the server as a whole; other keys are fully qualified service names. */
  constructor(initial: Record<string, ServingStatus> = {}) {
    for (const [service, status] of Object.entries(initial)) this.statuses.set(service, status);
  }

  setStatus(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const watcher of this.watchers.get(service) ?? []) watcher.write({ status });
  }

  /** Marks every service NOT_SERVING (on shutdown). */
  setAll(status: ServingStatus): void {
    for (const service of this.statuses.keys()) this.setStatus(service, status);
  }

  getStatus(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Ends the Watch streams, so that a graceful server shutdown is not held up by them. */
  endWatches(): void {
    for (const set of this.watchers.values()) for (const watcher of set) watcher.end();
    this.watchers.clear();
  }

  handlers(): UntypedServiceImplementation {
    return {
      Check: (
        call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
        callback: sendUnaryData<HealthCheckResponse>,
      ) => {
        const status = this.statuses.get(call.request.service);
        if (status === undefined)
          callback({ code: Status.NOT_FOUND, details: `unknown service ${call.request.service}` });
        else callback(null, { status });
      },
      List: (_call: unknown, callback: sendUnaryData<{ statuses: Record<string, HealthCheckResponse> }>) => {
        const statuses: Record<string, HealthCheckResponse> = {};
        for (const [service, status] of this.statuses) statuses[service] = { status };
        callback(null, { statuses });
      },
      Watch: (call: Watcher) => {
        const service = call.request.service;
        call.write({ status: this.statuses.get(service) ?? 'SERVICE_UNKNOWN' });
        const set = this.watchers.get(service) ?? new Set<Watcher>();
        this.watchers.set(service, set);
        set.add(call);
        call.on('cancelled', () => set.delete(call));
      },
    };
  }
}
