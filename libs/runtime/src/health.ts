import type { FaceAnalyzer } from '@facesearch/common';

/** An analyzer that knows how to check its own services (the gRPC one, libs/proto). */
interface SelfChecking {
  readinessChecks(): Record<string, () => Promise<unknown>>;
}

/**
 * The readiness checks of the analyzer: the gRPC engine's own (at least one detector and one embedder, when it
 * uses the embedder service, answering SERVING); the local engine is ready once it is built. By shape rather than
 * class, so that processes without an engine (the indexer) need not load gRPC.
 */
export function engineChecks(analyzer: FaceAnalyzer): Record<string, () => Promise<unknown>> {
  const checking = analyzer as Partial<SelfChecking>;
  if (typeof checking.readinessChecks === 'function') return checking.readinessChecks();
  return { engine: async () => undefined };
}
