import { FaceSearchError } from '@facesearch/common';

/** S3's own limit on key length, in UTF-8 bytes. */
const MAX_KEY_BYTES = 1024;

/**
 * Blob keys are relative, `/`-separated paths such as `app/group/xyz.jpg`. Both stores accept the same keys, so
 * a key that could escape the root folder on disk is refused everywhere: `.` or `..` segments, a leading `/`,
 * empty segments, backslashes, NUL and other control characters.
 */
export function checkBlobKey(key: string): string {
  checkPath(key, 'key');
  if (key.endsWith('/')) throw invalidKey(key, 'a key cannot end with /');
  return key;
}

/** A prefix follows the key rules but may end with `/` (a "folder"); it cannot be empty (that is everything). */
export function checkBlobPrefix(prefix: string): string {
  checkPath(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix, 'prefix');
  return prefix;
}

function checkPath(path: string, what: string): void {
  if (typeof path !== 'string' || path.length === 0) throw invalidKey(path, `the ${what} is empty`);
  if (Buffer.byteLength(path, 'utf8') > MAX_KEY_BYTES) throw invalidKey(path, `longer than ${MAX_KEY_BYTES} bytes`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point.
  if (/[\u0000-\u001f\u007f]/.test(path)) throw invalidKey(path, 'control characters (NUL included) are not allowed');
  if (path.includes('\\')) throw invalidKey(path, 'backslashes are not allowed');
  if (path.startsWith('/')) throw invalidKey(path, 'absolute paths are not allowed');
  for (const segment of path.split('/')) {
    if (segment === '') throw invalidKey(path, 'empty path segments are not allowed');
    if (segment === '.' || segment === '..') throw invalidKey(path, '. and .. segments are not allowed');
  }
}

function invalidKey(key: unknown, why: string): FaceSearchError {
  const shown = typeof key === 'string' ? JSON.stringify(key.slice(0, 200)) : String(key);
  return new FaceSearchError('invalid_key', `Invalid blob key ${shown}: ${why}.`, 400);
}

export function blobNotFound(key: string): FaceSearchError {
  return new FaceSearchError('blob_not_found', `No blob with key ${JSON.stringify(key)}.`, 404);
}
