import type { FaceAnalyzer } from '@facesearch/common';
import {
  type BalancedClient,
  DETECTOR_SERVICE,
  DetectorClient,
  EMBEDDER_SERVICE,
  GrpcFaceAnalyzer,
} from '@facesearch/proto';

export interface WorkerHealth {
  serving: number;
  total: number;
  targets: Array<{ target: string; status: string }>;
}

/** Asks every address of a gRPC client for the service's health; throws unless at least one is SERVING. */
export async function requireServing(client: BalancedClient, service: string, timeoutMs = 2000): Promise<WorkerHealth> {
  const targets = await client.checkHealth(service, timeoutMs);
  const serving = targets.filter((t) => t.status === 'SERVING').length;
  const health = { serving, total: targets.length, targets };
  if (serving === 0) {
    const detail = targets.map((t) => `${t.target} ${t.status}`).join(', ');
    throw Object.assign(new Error(`no ${service} instance is serving (${detail})`), { health });
  }
  return health;
}

/**
 * The readiness checks of the analyzer: with the gRPC engine, at least one detector and one embedder (when it
 * uses the embedder service) must answer SERVING; the local engine is ready once it is built.
 */
export function engineChecks(analyzer: FaceAnalyzer): Record<string, () => Promise<unknown>> {
  if (analyzer instanceof GrpcFaceAnalyzer) {
    const { detector, embedder } = analyzer;
    return {
      ...(detector instanceof DetectorClient ? { detectors: () => requireServing(detector, DETECTOR_SERVICE) } : {}),
      ...(embedder ? { embedders: () => requireServing(embedder, EMBEDDER_SERVICE) } : {}),
    };
  }
  return { engine: async () => undefined };
}
