import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The .proto files ship next to src/ and dist/, at the package root: this resolves the same from the
 * TypeScript sources (tests) and from the compiled dist/.
 */
export const PROTO_DIR = resolve(__dirname, '..', 'protos');

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  // Unset `optional` scalars stay absent instead of reading as 0.
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

export const DETECTOR_SERVICE = 'facesearch.v1.Detector';
export const EMBEDDER_SERVICE = 'facesearch.v1.Embedder';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

interface LoadedServices {
  Detector: grpc.ServiceClientConstructor;
  Embedder: grpc.ServiceClientConstructor;
  Health: grpc.ServiceClientConstructor;
}

let loaded: LoadedServices | undefined;

/** Parses the protos once per process. */
export function services(): LoadedServices {
  if (!loaded) {
    const definition = protoLoader.loadSync(
      [join(PROTO_DIR, 'facesearch.proto'), join(PROTO_DIR, 'grpc', 'health', 'v1', 'health.proto')],
      LOADER_OPTIONS,
    );
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      facesearch: { v1: { Detector: grpc.ServiceClientConstructor; Embedder: grpc.ServiceClientConstructor } };
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    loaded = {
      Detector: pkg.facesearch.v1.Detector,
      Embedder: pkg.facesearch.v1.Embedder,
      Health: pkg.grpc.health.v1.Health,
    };
  }
  return loaded;
}
