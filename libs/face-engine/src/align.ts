import type { Point } from '@facesearch/common';
import { estimateSimilarity, invertSimilarity, type Similarity, similarityScale, warpSimilarity } from './geometry';
import { cropResize, type RgbImage } from './image';

export const ALIGNED_SIZE = 112;

/** The ArcFace 112x112 template: left eye, right eye, nose tip, left and right mouth corners (image left/right). */
export const ARCFACE_TEMPLATE = {
  leftEye: { x: 38.2946, y: 51.6963 },
  rightEye: { x: 73.5318, y: 51.5014 },
  nose: { x: 56.0252, y: 71.7366 },
  mouthLeft: { x: 41.5493, y: 92.3655 },
  mouthRight: { x: 70.7299, y: 92.2041 },
};
const TEMPLATE_MOUTH_CENTRE = {
  x: (ARCFACE_TEMPLATE.mouthLeft.x + ARCFACE_TEMPLATE.mouthRight.x) / 2,
  y: (ARCFACE_TEMPLATE.mouthLeft.y + ARCFACE_TEMPLATE.mouthRight.y) / 2,
};

/** Similarity transform from the four detected points (eyes, nose, mouth centre) onto the template. */
export function alignmentTransform(leftEye: Point, rightEye: Point, nose: Point, mouth: Point): Similarity {
  return estimateSimilarity(
    [leftEye, rightEye, nose, mouth],
    [ARCFACE_TEMPLATE.leftEye, ARCFACE_TEMPLATE.rightEye, ARCFACE_TEMPLATE.nose, TEMPLATE_MOUTH_CENTRE],
  );
}

/**
 * Renders the 112x112 aligned face. When the face is much larger than the template, the region is first shrunk
 * with a proper filter, since bilinear sampling alone would alias and add noise to the embedding.
 */
export async function alignFace(image: RgbImage, transform: Similarity): Promise<Uint8Array> {
  const scale = similarityScale(transform);
  if (scale >= 0.67) return warpSimilarity(image, transform, ALIGNED_SIZE, ALIGNED_SIZE);

  const inv = invertSimilarity(transform);
  const corners = [
    { x: 0, y: 0 },
    { x: ALIGNED_SIZE, y: 0 },
    { x: 0, y: ALIGNED_SIZE },
    { x: ALIGNED_SIZE, y: ALIGNED_SIZE },
  ].map((p) => ({ x: inv.a * p.x - inv.b * p.y + inv.tx, y: inv.b * p.x + inv.a * p.y + inv.ty }));
  const left = Math.max(0, Math.floor(Math.min(...corners.map((p) => p.x))) - 2);
  const top = Math.max(0, Math.floor(Math.min(...corners.map((p) => p.y))) - 2);
  const right = Math.min(image.width, Math.ceil(Math.max(...corners.map((p) => p.x))) + 2);
  const bottom = Math.min(image.height, Math.ceil(Math.max(...corners.map((p) => p.y))) + 2);
  if (right - left < 2 || bottom - top < 2) return warpSimilarity(image, transform, ALIGNED_SIZE, ALIGNED_SIZE);

  const width = Math.max(1, Math.round((right - left) * scale));
  const height = Math.max(1, Math.round((bottom - top) * scale));
  const region = await cropResize(image, { left, top, width: right - left, height: bottom - top }, width, height);
  const sx = (right - left) / width;
  const sy = (bottom - top) / height;
  // Resized-region coordinates q map back to the image as (q.x*sx + left, q.y*sy + top); sx ~ sy ~ 1/scale.
  const s = (sx + sy) / 2;
  const composed: Similarity = {
    a: transform.a * s,
    b: transform.b * s,
    tx: transform.a * left - transform.b * top + transform.tx,
    ty: transform.b * left + transform.a * top + transform.ty,
  };
  return warpSimilarity(region, composed, ALIGNED_SIZE, ALIGNED_SIZE);
}
