import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { type BlobStore, FaceSearchError } from '@facesearch/common';
import { Client, CopyDestinationOptions, CopySourceOptions } from 'minio';
import { blobNotFound, checkBlobKey, checkBlobPrefix } from './keys';

export interface S3BlobStoreOptions {
  /** e.g. http://127.0.0.1:9000 (path-style addressing, so any S3 server works). */
  endpoint: string;
  accessKey: string;
  secretKey: string;
  bucket: string;
  /** Default `us-east-1`. */
  region?: string;
  /**
   * How long one S3 call may take before it fails with 503 blob_store_unavailable (retryable). Default 30000: a
   * server that accepts connections but never answers (a wedged radosgw) must not hang requests, jobs or start-up.
   */
  timeoutMs?: number;
}

/** S3 DeleteObjects takes at most 1000 keys per request. */
const DELETE_BATCH = 1000;

/** Blobs in one S3 bucket, through plain S3 calls only (MinIO in compose, any S3 server elsewhere). */
export class S3BlobStore implements BlobStore {
  private readonly client: Client;
  private readonly bucket: string;
  private readonly region: string;
  private readonly timeoutMs: number;

  constructor(private readonly options: S3BlobStoreOptions) {
    const url = new URL(options.endpoint);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new FaceSearchError('invalid_config', `S3_ENDPOINT must be an http(s) URL, got ${options.endpoint}.`, 500);
    }
    const useSSL = url.protocol === 'https:';
    this.bucket = options.bucket;
    this.region = options.region ?? 'us-east-1';
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.client = new Client({
      endPoint: url.hostname,
      port: url.port ? Number(url.port) : useSSL ? 443 : 80,
      useSSL,
      accessKey: options.accessKey,
      secretKey: options.secretKey,
      region: this.region,
      pathStyle: true,
    });
  }

  /** Creates the bucket if it does not exist. */
  async init(): Promise<void> {
    await this.call('init', async () => {
      if (await this.client.bucketExists(this.bucket)) return;
      try {
        await this.client.makeBucket(this.bucket, this.region);
      } catch (err) {
        // Created by another process in between.
        if (!['BucketAlreadyOwnedByYou', 'BucketAlreadyExists'].includes(s3Code(err) ?? '')) throw err;
      }
    });
  }

  async put(key: string, data: Uint8Array, contentType = 'application/octet-stream'): Promise<void> {
    checkBlobKey(key);
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    // One signed PUT of the bytes as they are. minio's putObject wraps a Buffer in a stream, reads it back into a
    // copy and hashes it twice (SHA-256, and an MD5 it sends only over HTTPS): ~1 ms more CPU per 330 KB photo here
    // (BENCHMARKS.md, session 15). Over plain HTTP SigV4 signs the payload's SHA-256; over HTTPS minio signs
    // UNSIGNED-PAYLOAD and the server checks Content-MD5 instead, as putObject does.
    const headers: Record<string, string | number> = { 'Content-Type': contentType, 'Content-Length': body.length };
    let payloadSha256 = '';
    if (this.client.enableSHA256) payloadSha256 = createHash('sha256').update(body).digest('hex');
    else headers['Content-MD5'] = createHash('md5').update(body).digest('base64');
    await this.call('put', async () => {
      const response = await this.client.makeRequestStreamAsync(
        { method: 'PUT', bucketName: this.bucket, objectName: key, headers },
        body,
        payloadSha256,
        [200],
        this.region,
      );
      response.resume();
      await finished(response);
    });
  }

  async get(key: string): Promise<Buffer> {
    checkBlobKey(key);
    return this.call(
      'get',
      async () => readAll(await this.client.getObject(this.bucket, key)),
      (code) => (code === 'NoSuchKey' || code === 'NotFound' ? blobNotFound(key) : null),
    );
  }

  async exists(key: string): Promise<boolean> {
    checkBlobKey(key);
    try {
      await this.call(
        'exists',
        () => this.client.statObject(this.bucket, key),
        (code) => (code === 'NoSuchKey' || code === 'NotFound' ? blobNotFound(key) : null),
      );
      return true;
    } catch (err) {
      if (err instanceof FaceSearchError && err.code === 'blob_not_found') return false;
      throw err;
    }
  }

  /** A server-side CopyObject: the bytes stay in S3 (and keep the source's content type). */
  async copy(fromKey: string, toKey: string): Promise<void> {
    checkBlobKey(fromKey);
    checkBlobKey(toKey);
    await this.call(
      'copy',
      () =>
        this.client.copyObject(
          new CopySourceOptions({ Bucket: this.bucket, Object: fromKey }),
          new CopyDestinationOptions({ Bucket: this.bucket, Object: toKey }),
        ),
      (code) => (code === 'NoSuchKey' || code === 'NotFound' ? blobNotFound(fromKey) : null),
    );
  }

  async delete(key: string): Promise<void> {
    checkBlobKey(key);
    await this.call('delete', () => this.client.removeObject(this.bucket, key));
  }

  async deletePrefix(prefix: string, options: { stillWanted?: () => Promise<boolean> } = {}): Promise<void> {
    checkBlobPrefix(prefix);
    // Any number of requests: each page of the listing and each batch of deletes is timed, not the whole.
    await this.call(
      'deletePrefix',
      async () => {
        const names: string[] = [];
        const listing = this.client.listObjectsV2(this.bucket, prefix, true)[Symbol.asyncIterator]();
        for (;;) {
          const next = await this.timed('deletePrefix (list)', listing.next());
          if (next.done) break;
          if (next.value.name) names.push(next.value.name);
        }
        for (let i = 0; i < names.length; i += DELETE_BATCH) {
          const batch = names.slice(i, i + DELETE_BATCH);
          if (options.stillWanted && !(await options.stillWanted())) return;
          const results = await this.timed('deletePrefix', this.client.removeObjects(this.bucket, batch));
          const failed = results.filter((r) => r?.Error);
          if (failed.length) {
            const first = failed[0]?.Error;
            throw new Error(
              `${failed.length} objects not deleted, e.g. ${first?.Key}: ${first?.Code} ${first?.Message}`,
            );
          }
        }
      },
      undefined,
      false,
    );
  }

  async presignPut(key: string, expiresSeconds: number): Promise<string> {
    checkBlobKey(key);
    // SigV4 allows 1 second to 7 days.
    const expiry = Math.min(Math.max(Math.floor(expiresSeconds), 1), 7 * 24 * 3600);
    return this.call('presignPut', () => this.client.presignedPutObject(this.bucket, key, expiry));
  }

  async ping(): Promise<void> {
    const found = await this.call('ping', () => this.client.bucketExists(this.bucket));
    if (!found) {
      throw new FaceSearchError('blob_store_unavailable', `S3 bucket ${this.bucket} does not exist.`, 503, true);
    }
  }

  async close(): Promise<void> {}

  /**
   * Runs an S3 call, at most timeoutMs. `known` maps an S3 error code to the error to throw; any other failure is a
   * 503 (retryable unless the server refused our credentials or request).
   */
  private async call<T>(
    operation: string,
    fn: () => Promise<T>,
    known: (code: string | undefined) => FaceSearchError | null = () => null,
    /** false: `fn` times its own requests (an operation of many requests). */
    timed = true,
  ): Promise<T> {
    try {
      return await (timed ? this.timed(operation, fn()) : fn());
    } catch (err) {
      if (err instanceof FaceSearchError) throw err;
      const code = s3Code(err);
      const mapped = known(code);
      if (mapped) throw mapped;
      const message = err instanceof Error ? err.message : String(err);
      const refused = ['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'NoSuchBucket'].includes(
        code ?? '',
      );
      throw new FaceSearchError(
        'blob_store_unavailable',
        `S3 ${operation} failed (${this.options.endpoint}, bucket ${this.bucket}): ${code ? `${code}: ` : ''}${message}`,
        503,
        !refused,
      );
    }
  }

  /** `work`, or 503 blob_store_unavailable once it took timeoutMs (minio's requests cannot be aborted: it may stay pending). */
  private timed<T>(operation: string, work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const where = `${this.options.endpoint}, bucket ${this.bucket}`;
        const message = `S3 ${operation} did not answer within ${this.timeoutMs} ms (${where}).`;
        reject(new FaceSearchError('blob_store_unavailable', message, 503, true));
      }, this.timeoutMs);
    });
    return Promise.race([work, timedOut]).finally(() => clearTimeout(timer));
  }
}

function s3Code(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' ? code : undefined;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}
