import type { Box, FaceSearchConfig } from '@facesearch/common';
import { LibraryService } from '@facesearch/core';
import { Inject, Injectable } from '@nestjs/common';
import sharp from 'sharp';
import { sniffImageType } from '../dtos/views';
import { CONFIG } from '../tokens';

export interface FaceImage {
  bytes: Buffer;
  contentType: string;
}

/** Thumbnails are square JPEGs of this side, the face box plus a margin. */
export const THUMBNAIL_SIZE = 160;
const MARGIN = 0.3;

/** The stored image of an enrolled face, whole or cropped to the face (for the console's thumbnails). */
@Injectable()
export class FaceImageService {
  constructor(
    private readonly library: LibraryService,
    @Inject(CONFIG) private readonly config: FaceSearchConfig,
  ) {}

  async get(appId: string, groupId: string, userId: string, faceId: string, crop: boolean): Promise<FaceImage> {
    const bytes = await this.library.faceImage(appId, groupId, userId, faceId);
    if (!crop) return { bytes, contentType: sniffImageType(bytes) };
    const face = await this.library.getFace(appId, faceId);
    try {
      return { bytes: await this.cropToFace(bytes, face.box), contentType: 'image/jpeg' };
    } catch {
      // The stored bytes were decodable at enrolment; should sharp still fail, the whole image is a fine fallback.
      return { bytes, contentType: sniffImageType(bytes) };
    }
  }

  /** Boxes are in pixels of the upright image, so EXIF orientation is applied before cutting. */
  private async cropToFace(bytes: Buffer, box: Box): Promise<Buffer> {
    const upright = sharp(bytes, { limitInputPixels: this.config.maxImagePixels }).rotate();
    const { data, info } = await upright.toBuffer({ resolveWithObject: true });
    const side = Math.max(box.width, box.height) * (1 + 2 * MARGIN);
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    const left = clamp(Math.round(cx - side / 2), 0, info.width - 1);
    const top = clamp(Math.round(cy - side / 2), 0, info.height - 1);
    const width = clamp(Math.round(side), 1, info.width - left);
    const height = clamp(Math.round(side), 1, info.height - top);
    return sharp(data)
      .extract({ left, top, width, height })
      .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'cover' })
      .jpeg({ quality: 85 })
      .toBuffer();
  }
}

const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
