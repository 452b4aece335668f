import { FaceSearchError, imageError } from '@facesearch/common';

export type UploadedFiles = Record<string, Express.Multer.File[] | undefined>;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** Decodes `image_base64` (plain, URL-safe or a data: URL); refuses anything that is not strict base64. */
export function decodeBase64Image(field: string, value: string, maxBytes: number): Buffer {
  let s = value.trim();
  const dataUrl = /^data:[^;,]*;base64,/i.exec(s);
  if (dataUrl) s = s.slice(dataUrl[0].length);
  s = s.replace(/\s+/g, '');
  if (s.length === 0) throw new FaceSearchError('image_empty', `${field}: the image is empty.`, 400);
  if ((!BASE64.test(s) && !BASE64URL.test(s)) || s.replace(/=+$/, '').length % 4 === 1) {
    throw new FaceSearchError('image_base64_invalid', `${field}: not valid base64.`, 400);
  }
  // Checked before decoding so a huge string is not decoded for nothing.
  const approxBytes = Math.floor((s.replace(/=+$/, '').length * 3) / 4);
  if (approxBytes > maxBytes) throw imageError.tooLarge(approxBytes, maxBytes);
  return Buffer.from(s, BASE64.test(s) ? 'base64' : 'base64url');
}

/** The image of a request: the multipart file `fileField`, else the base64 `base64Field` of the body. */
export function imageFrom(
  files: UploadedFiles | undefined,
  body: Record<string, unknown> | undefined,
  fileField: string,
  base64Field: string,
  maxBytes: number,
): Buffer | undefined {
  const file = files?.[fileField]?.[0];
  const b64 = body?.[base64Field];
  // Both given: which one was meant is a guess, and the other one may be broken; say so instead.
  if (file && b64 !== undefined) {
    throw new FaceSearchError(
      'invalid_request',
      `${fileField}: send the image once, as the multipart file \`${fileField}\` or as \`${base64Field}\`, not both`,
      400,
    );
  }
  if (file) {
    if (file.size === 0) throw imageError.empty();
    return file.buffer;
  }
  if (typeof b64 === 'string') return decodeBase64Image(base64Field, b64, maxBytes);
  return undefined;
}

export function requireImage(image: Buffer | undefined, fileField: string, base64Field: string): Buffer {
  if (!image) {
    throw new FaceSearchError(
      'invalid_request',
      `${fileField}: required (multipart file \`${fileField}\` or JSON \`${base64Field}\`)`,
      400,
    );
  }
  return image;
}
