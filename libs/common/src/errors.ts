/**
 * One error type for the whole service. `code` is stable and part of the public API;
 * `status` is the HTTP status the gateway answers with.
 */
export class FaceSearchError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number = 400,
    /** Whether retrying the same work later can succeed (network, overload), as opposed to bad input. */
    readonly retryable = false,
  ) {
    super(message);
    this.name = 'FaceSearchError';
  }

  /** For 429 and 503: when to try again, in seconds (the gateway's Retry-After header); unset: a default. */
  retryAfterSeconds?: number;

  /** Sets retryAfterSeconds and returns the error (for `throw err.retryAfter(5)`). */
  retryAfter(seconds: number): this {
    this.retryAfterSeconds = seconds;
    return this;
  }

  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Image errors raised by the engine; they pass through the API unchanged. */
export const ImageErrorCode = {
  empty: 'image_empty',
  unsupportedFormat: 'image_unsupported_format',
  corrupt: 'image_corrupt',
  tooLarge: 'image_too_large',
  tooManyPixels: 'image_too_many_pixels',
  tooSmall: 'image_too_small',
} as const;
export type ImageErrorCode = (typeof ImageErrorCode)[keyof typeof ImageErrorCode];

export const imageError = {
  empty: () => new FaceSearchError(ImageErrorCode.empty, 'The image is empty (0 bytes).', 400),
  unsupportedFormat: (detail: string) =>
    new FaceSearchError(
      ImageErrorCode.unsupportedFormat,
      `Unsupported image format${detail ? ` (${detail})` : ''}; send JPEG, PNG, WebP, GIF, TIFF or AVIF/HEIF.`,
      415,
    ),
  corrupt: (detail: string) =>
    new FaceSearchError(ImageErrorCode.corrupt, `The image could not be decoded: ${detail}`, 422),
  tooLarge: (bytes: number, limit: number) =>
    new FaceSearchError(ImageErrorCode.tooLarge, `The image is ${bytes} bytes; the limit is ${limit} bytes.`, 413),
  tooManyPixels: (width: number, height: number, limit: number) =>
    new FaceSearchError(
      ImageErrorCode.tooManyPixels,
      `The image is ${width}x${height} pixels; the limit is ${limit} pixels.`,
      413,
    ),
  tooSmall: (width: number, height: number) =>
    new FaceSearchError(
      ImageErrorCode.tooSmall,
      `The image is ${width}x${height} pixels, too small to hold a face.`,
      422,
    ),
};

/** A user at MAX_FACES_PER_USER: refused by the services' own check and, atomically, where a face record is added. */
export function tooManyFacesError(userId: string, limit: number): FaceSearchError {
  return new FaceSearchError(
    'too_many_faces',
    `User '${userId}' would have more than ${limit} faces; delete some or enrol with mode REPLACE.`,
    409,
  );
}

export function isFaceSearchError(err: unknown): err is FaceSearchError {
  return err instanceof FaceSearchError;
}
