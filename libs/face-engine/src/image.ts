import { imageError } from '@facesearch/common';
import sharp from 'sharp';
import { isSrgbProfile } from './icc';

/** An upright RGB image held as raw bytes (3 channels, row-major). */
export interface RgbImage {
  data: Buffer;
  width: number;
  height: number;
}

export interface DecodedImage {
  /** Format detected from the content, as sharp names it (jpeg, png, webp, gif, tiff, heif). */
  format: string;
  /** Size of the upright original, after EXIF orientation. */
  width: number;
  height: number;
  /** The image decoded at most `maxSide` (default `workingMaxSide`) on its longer side; `scale` = working / original. */
  working: RgbImage;
  scale: number;
}

export interface ImageLimits {
  maxBytes: number;
  maxPixels: number;
  /** Longer side of the decoded working image: enough for detection tiles and sharp 112x112 crops. */
  workingMaxSide: number;
}

export const DEFAULT_IMAGE_LIMITS: ImageLimits = {
  maxBytes: 20 * 1024 * 1024,
  maxPixels: 50_000_000,
  workingMaxSide: 1536,
};

// SVG and PDF are left out on purpose: they are programs more than pictures (external references, scripts).
const ACCEPTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'avif']);
const MIN_SIDE = 16;

/** What the header says, checked against the limits before any pixel is decoded. */
export interface ImageHeader {
  format: string;
  /** Size of the upright original, after EXIF orientation. */
  width: number;
  height: number;
  /** It embeds an ICC profile that is sRGB's own (icc.ts): decoding skips the conversion, which changes no pixel. */
  srgbProfile?: boolean;
}

/**
 * Reads and checks an untrusted image's header: size in bytes, accepted format, pixel count, minimum size.
 * Every failure is a FaceSearchError with an image_* code.
 */
export async function inspectImage(
  input: Uint8Array,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
): Promise<ImageHeader> {
  if (!input || input.length === 0) throw imageError.empty();
  if (input.length > limits.maxBytes) throw imageError.tooLarge(input.length, limits.maxBytes);

  let meta: sharp.Metadata;
  try {
    // Header only; the pixel limit is checked below with our own message.
    meta = await sharp(input, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw classifySharpError(err);
  }
  const format = meta.format ?? 'unknown';
  if (!ACCEPTED_FORMATS.has(format)) throw imageError.unsupportedFormat(format);
  const rawWidth = meta.width ?? 0;
  const rawHeight = meta.height ?? 0;
  if (rawWidth * rawHeight > limits.maxPixels) throw imageError.tooManyPixels(rawWidth, rawHeight, limits.maxPixels);
  const rotated = (meta.orientation ?? 1) >= 5;
  const width = rotated ? rawHeight : rawWidth;
  const height = rotated ? rawWidth : rawHeight;
  if (width < MIN_SIDE || height < MIN_SIDE) throw imageError.tooSmall(width, height);
  return { format, width, height, srgbProfile: isSrgbProfile(meta.icc) };
}

/**
 * Decodes an untrusted image: checks its header (inspectImage, unless `header` comes from it already), honours EXIF
 * orientation, flattens alpha, converts greyscale/CMYK/16-bit to 8-bit sRGB, and decodes only as large as
 * `maxSide` (default: the working size) on the longer side (JPEG shrink-on-load). Every failure is a
 * FaceSearchError with an image_* code.
 */
export async function decodeImage(
  input: Uint8Array,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
  options: { header?: ImageHeader; maxSide?: number } = {},
): Promise<DecodedImage> {
  const { format, width, height, srgbProfile } = options.header ?? (await inspectImage(input, limits));
  const scale = Math.min(1, (options.maxSide ?? limits.workingMaxSide) / Math.max(width, height));
  const targetWidth = Math.max(1, Math.round(width * scale));
  const targetHeight = Math.max(1, Math.round(height * scale));
  try {
    const { data, info } = await sharp(input, {
      failOn: 'error',
      limitInputPixels: limits.maxPixels,
      pages: 1,
      ignoreIcc: srgbProfile === true,
    })
      .rotate()
      .resize(targetWidth, targetHeight, { fit: 'fill', fastShrinkOnLoad: true })
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw imageError.corrupt(`expected 3 channels after conversion, got ${info.channels}`);
    return {
      format,
      width,
      height,
      working: { data, width: info.width, height: info.height },
      scale: info.width / width,
    };
  } catch (err) {
    throw classifySharpError(err);
  }
}

function classifySharpError(err: unknown) {
  if (
    err &&
    typeof err === 'object' &&
    'code' in err &&
    typeof (err as { code: unknown }).code === 'string' &&
    (err as { code: string }).code.startsWith('image_')
  ) {
    return err as ReturnType<typeof imageError.corrupt>;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (/unsupported image format/i.test(message)) return imageError.unsupportedFormat('unrecognised content');
  if (/buffer is empty/i.test(message)) return imageError.empty();
  if (/pixel limit/i.test(message)) return imageError.tooManyPixels(0, 0, 0);
  return imageError.corrupt(message.split('\n')[0].replace(/^Vips\w*: /, ''));
}

/** Cuts a region out of an RGB image and resizes it (area-averaging when shrinking). */
export async function cropResize(
  image: RgbImage,
  region: { left: number; top: number; width: number; height: number },
  width: number,
  height: number,
): Promise<RgbImage> {
  const data = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .extract(region)
    .resize(width, height, { fit: 'fill', kernel: 'cubic' })
    .raw()
    .toBuffer();
  return { data, width, height };
}
