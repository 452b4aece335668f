import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { BlobStore } from '@facesearch/common';
import { FaceSearchError } from '@facesearch/common';

export interface UploadTicket {
  object_key: string;
  upload_id: string;
  /** A presigned URL from the blob store, or null when the gateway must take the upload itself. */
  presigned_url: string | null;
  expires_at: string;
}

export const uploadKey = (appId: string, uploadId: string) => `uploads/${appId}/${uploadId}`;
export const isUploadKeyOf = (appId: string, key: string) =>
  key.startsWith(`uploads/${appId}/`) && /^uploads\/[A-Za-z0-9_-]{1,128}\/[A-Za-z0-9_-]{1,128}$/.test(key);

const invalidToken = () =>
  new FaceSearchError('upload_token_invalid', 'The upload URL is invalid or has expired.', 403);

/**
 * Pre-upload of import images. Stores with presigned URLs (S3) hand them out directly; otherwise the
 * gateway accepts the bytes at its own URL, authorised by an HMAC token scoped to one key and expiring.
 */
export class UploadService {
  private readonly secret: Buffer;

  constructor(
    private readonly blobs: BlobStore,
    options: { signingSecret: string | null; expiresSeconds?: number },
  ) {
    this.secret = options.signingSecret ? Buffer.from(options.signingSecret) : randomBytes(32);
    this.expiresSeconds = options.expiresSeconds ?? 900;
  }

  private readonly expiresSeconds: number;

  async create(appId: string): Promise<UploadTicket> {
    const uploadId = randomUUID();
    const key = uploadKey(appId, uploadId);
    const presigned = await this.blobs.presignPut(key, this.expiresSeconds);
    return {
      object_key: key,
      upload_id: uploadId,
      presigned_url: presigned,
      expires_at: new Date(Date.now() + this.expiresSeconds * 1000).toISOString(),
    };
  }

  /** Token for the gateway's own PUT URL: `<expiry>.<hmac(key|expiry)>`. */
  sign(key: string, expiresAt: Date): string {
    const exp = Math.floor(expiresAt.getTime() / 1000);
    return `${exp}.${this.mac(key, exp)}`;
  }

  verify(key: string, token: string | undefined): void {
    const m = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token ?? '');
    if (!m) throw invalidToken();
    const exp = Number(m[1]);
    const expected = Buffer.from(this.mac(key, exp));
    const given = Buffer.from(m[2]);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw invalidToken();
    if (exp * 1000 < Date.now()) throw invalidToken();
  }

  async store(key: string, data: Uint8Array, contentType?: string): Promise<void> {
    if (data.length === 0) throw new FaceSearchError('image_empty', 'The upload is empty (0 bytes).', 400);
    await this.blobs.put(key, data, contentType);
  }

  private mac(key: string, exp: number): string {
    return createHmac('sha256', this.secret).update(`${key}|${exp}`).digest('base64url');
  }
}
