/**
 * FaceSearchError across the wire: a gRPC status whose metadata carries the error's code, HTTP status and
 * retryable flag, so the client raises the same error (image codes pass through the gateway unchanged).
 */
import { FaceSearchError } from '@facesearch/common';
import { Metadata, type ServiceError, status as Status } from '@grpc/grpc-js';

export const ERROR_CODE_KEY = 'fs-error-code';
export const ERROR_STATUS_KEY = 'fs-error-status';
export const ERROR_RETRYABLE_KEY = 'fs-retryable';

export interface WireError {
  code: Status;
  details: string;
  metadata: Metadata;
}

function grpcCodeFor(httpStatus: number): Status {
  switch (httpStatus) {
    case 400:
    case 413:
    case 415:
    case 422:
      return Status.INVALID_ARGUMENT;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.NOT_FOUND;
    case 409:
      return Status.ALREADY_EXISTS;
    case 429:
      return Status.RESOURCE_EXHAUSTED;
    case 503:
      return Status.UNAVAILABLE;
    case 504:
      return Status.DEADLINE_EXCEEDED;
    default:
      return httpStatus >= 400 && httpStatus < 500 ? Status.FAILED_PRECONDITION : Status.INTERNAL;
  }
}

/** What a server handler sends for anything it throws. */
export function toWireError(error: unknown): WireError {
  const fse =
    error instanceof FaceSearchError
      ? error
      : // A bug or a runtime failure in the service: the caller may retry (another replica, later).
        new FaceSearchError(
          'engine_error',
          `engine failure: ${error instanceof Error ? error.message : String(error)}`,
          500,
          true,
        );
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_KEY, fse.code);
  metadata.set(ERROR_STATUS_KEY, String(fse.status));
  metadata.set(ERROR_RETRYABLE_KEY, String(fse.retryable));
  return { code: grpcCodeFor(fse.status), details: fse.message, metadata };
}

function first(metadata: Metadata | undefined, key: string): string | undefined {
  const value = metadata?.get(key)[0];
  return value === undefined ? undefined : String(value);
}

/** What a client raises for a failed call: the server's FaceSearchError, or one made from the transport status. */
export function fromServiceError(error: ServiceError, target: string): FaceSearchError {
  const code = first(error.metadata, ERROR_CODE_KEY);
  if (code) {
    const status = Number(first(error.metadata, ERROR_STATUS_KEY));
    return new FaceSearchError(
      code,
      error.details || error.message,
      Number.isInteger(status) ? status : 500,
      first(error.metadata, ERROR_RETRYABLE_KEY) === 'true',
    );
  }
  const detail = `${target}: ${error.details || error.message}`;
  switch (error.code) {
    case Status.UNAVAILABLE:
      return new FaceSearchError('engine_unavailable', `Face engine service unavailable (${detail})`, 503, true);
    case Status.DEADLINE_EXCEEDED:
      return new FaceSearchError('engine_timeout', `Face engine service timed out (${detail})`, 504, true);
    case Status.CANCELLED:
      return new FaceSearchError('engine_unavailable', `Face engine call cancelled (${detail})`, 503, true);
    case Status.RESOURCE_EXHAUSTED:
      return new FaceSearchError('engine_overloaded', `Face engine service refused the call (${detail})`, 503, true);
    case Status.UNIMPLEMENTED:
      // An older service, or a detector without the embedding model: asking again cannot help.
      return new FaceSearchError(
        'engine_unsupported',
        `The face engine service does not offer this call (${detail})`,
        502,
        false,
      );
    default:
      return new FaceSearchError(
        'engine_error',
        `Face engine call failed with gRPC status ${error.code} (${detail})`,
        502,
        true,
      );
  }
}
