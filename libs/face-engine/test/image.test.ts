import { deflateSync } from 'node:zlib';
import { FaceSearchError } from '@facesearch/common';
import { decodeImage, DEFAULT_IMAGE_LIMITS } from '@facesearch/face-engine';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

const gradient = (width: number, height: number, channels: 3 | 4 = 3) =>
  sharp(Buffer.from(Array.from({ length: width * height * channels }, (_, i) => (i * 7) % 256)), {
    raw: { width, height, channels },
  });

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'no error';
  } catch (err) {
    expect(err).toBeInstanceOf(FaceSearchError);
    return (err as FaceSearchError).code;
  }
}

/** A valid PNG header that claims a huge size, with no pixel data worth the name. */
function pngClaiming(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(64))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

describe('image intake', () => {
  it.each([
    ['jpeg', () => gradient(64, 48).jpeg().toBuffer()],
    ['png', () => gradient(64, 48).png().toBuffer()],
    ['webp', () => gradient(64, 48).webp().toBuffer()],
    ['gif', () => gradient(64, 48).gif().toBuffer()],
    ['tiff', () => gradient(64, 48).tiff().toBuffer()],
    ['heif', () => gradient(64, 48).avif().toBuffer()],
  ])('decodes %s from its content to 8-bit RGB', async (format, make) => {
    const image = await decodeImage(await make());
    expect(image.format).toBe(format);
    expect([image.width, image.height]).toEqual([64, 48]);
    expect(image.working.data.length).toBe(64 * 48 * 3);
  });

  it('handles greyscale, CMYK, 16-bit and alpha', async () => {
    for (const input of [
      await gradient(40, 30).greyscale().png().toBuffer(),
      await gradient(40, 30).toColourspace('cmyk').jpeg().toBuffer(),
      await gradient(40, 30).toColourspace('rgb16').png().toBuffer(),
      await gradient(40, 30, 4).png().toBuffer(),
    ]) {
      const image = await decodeImage(input);
      expect(image.working.data.length).toBe(40 * 30 * 3);
    }
  });

  it('honours EXIF orientation', async () => {
    const rotated = await gradient(80, 40).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const image = await decodeImage(rotated);
    expect([image.width, image.height]).toEqual([40, 80]);
    expect([image.working.width, image.working.height]).toEqual([40, 80]);
  });

  it('decodes large images only as large as the working size', async () => {
    const image = await decodeImage(await gradient(3000, 2000).jpeg().toBuffer());
    expect([image.width, image.height]).toEqual([3000, 2000]);
    expect(image.working.width).toBe(DEFAULT_IMAGE_LIMITS.workingMaxSide);
    expect(image.scale).toBeCloseTo(DEFAULT_IMAGE_LIMITS.workingMaxSide / 3000);
  });

  it('gives every bad input a typed error', async () => {
    const jpeg = await gradient(64, 48).jpeg().toBuffer();
    expect(await codeOf(decodeImage(Buffer.alloc(0)))).toBe('image_empty');
    expect(await codeOf(decodeImage(Buffer.from('hello, this is not a picture')))).toBe('image_unsupported_format');
    expect(
      await codeOf(decodeImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="50" height="50"/>'))),
    ).toBe('image_unsupported_format');
    expect(await codeOf(decodeImage(jpeg.subarray(0, jpeg.length / 2)))).toBe('image_corrupt');
    expect(await codeOf(decodeImage(jpeg, { ...DEFAULT_IMAGE_LIMITS, maxBytes: 100 }))).toBe('image_too_large');
    // A decompression bomb is refused from its header: the 100000x100000 claim is never decoded.
    expect(await codeOf(decodeImage(pngClaiming(100_000, 100_000)))).toBe('image_too_many_pixels');
    expect(await codeOf(decodeImage(await gradient(8, 8).png().toBuffer()))).toBe('image_too_small');
  });
});
