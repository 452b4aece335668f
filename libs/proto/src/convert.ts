/** Between the shared types of @facesearch/common and the wire messages. */
import {
  type AlignedFace,
  type AnalyzeResult,
  type DetectedFace,
  type DetectOptions,
  type DetectResult,
  type EngineTiming,
  FaceSearchError,
  type ImageInfo,
  type Landmarks,
  type Point,
  QUALITY_LEVELS,
  type QualityLevel,
} from '@facesearch/common';
import type * as pb from './messages';

export function detectRequest(image: Uint8Array, options: DetectOptions, withCrops: boolean): pb.DetectRequest {
  return {
    image,
    max_faces: options.maxFaces,
    min_face_size: options.minFaceSize,
    score_threshold: options.scoreThreshold,
    with_crops: withCrops,
  };
}

export function detectOptions(request: pb.DetectRequest): DetectOptions {
  const options: DetectOptions = {};
  if (request.max_faces !== undefined && request.max_faces !== null) options.maxFaces = request.max_faces;
  if (request.min_face_size !== undefined && request.min_face_size !== null)
    options.minFaceSize = request.min_face_size;
  if (request.score_threshold !== undefined && request.score_threshold !== null)
    options.scoreThreshold = request.score_threshold;
  return options;
}

export function faceToWire(face: DetectedFace & { crop?: Uint8Array }, withCrop: boolean): pb.Face {
  const { landmarks: l, quality: q } = face;
  return {
    box: { ...face.box },
    landmarks: {
      left_eye: l.left_eye,
      right_eye: l.right_eye,
      nose: l.nose,
      mouth: l.mouth,
      mouth_left: l.mouth_left ?? null,
      mouth_right: l.mouth_right ?? null,
    },
    score: face.score,
    quality: {
      size: q.size,
      blur: q.blur,
      yaw: q.yaw,
      pitch: q.pitch,
      roll: q.roll,
      score: q.score,
      level: `QUALITY_LEVEL_${q.level}`,
    },
    crop: withCrop && face.crop ? face.crop : new Uint8Array(0),
  };
}

export function detectReplyToWire(
  result: { image: ImageInfo; faces: Array<DetectedFace & { crop?: Uint8Array }> } & EngineTiming,
  withCrops: boolean,
): pb.DetectReply {
  return {
    image: { ...result.image },
    faces: result.faces.map((f) => faceToWire(f, withCrops)),
    ...engineTimingToWire(result.engine_ms),
  };
}

function engineTimingToWire(ms: number | undefined): { engine_ms?: number } {
  return ms === undefined ? {} : { engine_ms: Math.round(ms * 10) / 10 };
}

/** The engine's time from a reply; absent from servers that do not send it. */
export function engineTimingFromWire(reply: { engine_ms?: number | null }): EngineTiming {
  return typeof reply.engine_ms === 'number' ? { engine_ms: reply.engine_ms } : {};
}

function badReply(what: string): FaceSearchError {
  return new FaceSearchError('engine_bad_reply', `The detector sent an incomplete reply: ${what} missing`, 502, false);
}

/** The reply to Detector.Analyze; `model` alone (no result) answers a model info call. */
export function analyzeReplyToWire(model: { modelId: string; dim: number }, result?: AnalyzeResult): pb.AnalyzeReply {
  if (!result) return { image: null, faces: [], embeddings: [], model_id: model.modelId, dim: model.dim };
  return {
    image: { ...result.image },
    faces: result.faces.map((f) => faceToWire(f, false)),
    embeddings: result.faces.map((f) => ({ values: Array.from(f.embedding) })),
    model_id: result.modelId,
    dim: model.dim,
    ...engineTimingToWire(result.engine_ms),
  };
}

export function analyzeResultFromWire(reply: pb.AnalyzeReply): AnalyzeResult {
  const { faces, ...rest } = detectResultFromWire(reply);
  const vectors = embeddingsFromWire(reply, faces.length, 'The detector', 'faces');
  return {
    ...rest,
    faces: faces.map((face, i) => ({ ...face, embedding: vectors[i] })),
    modelId: reply.model_id,
  };
}

function point(p: pb.Point | null | undefined, what: string): Point {
  if (!p) throw badReply(what);
  return { x: p.x, y: p.y };
}

function qualityLevel(level: pb.QualityLevel): QualityLevel {
  const short = level.replace('QUALITY_LEVEL_', '') as QualityLevel;
  return QUALITY_LEVELS.includes(short) ? short : 'LOW';
}

export function faceFromWire(face: pb.Face): DetectedFace {
  if (!face.box || !face.landmarks || !face.quality) throw badReply('box, landmarks or quality');
  const l = face.landmarks;
  const landmarks: Landmarks = {
    left_eye: point(l.left_eye, 'left_eye'),
    right_eye: point(l.right_eye, 'right_eye'),
    nose: point(l.nose, 'nose'),
    mouth: point(l.mouth, 'mouth'),
  };
  if (l.mouth_left) landmarks.mouth_left = point(l.mouth_left, 'mouth_left');
  if (l.mouth_right) landmarks.mouth_right = point(l.mouth_right, 'mouth_right');
  const { x, y, width, height } = face.box;
  const q = face.quality;
  return {
    box: { x, y, width, height },
    landmarks,
    score: face.score,
    quality: {
      size: q.size,
      blur: q.blur,
      yaw: q.yaw,
      pitch: q.pitch,
      roll: q.roll,
      score: q.score,
      level: qualityLevel(q.level),
    },
  };
}

/** A plain Uint8Array view of a received Buffer (no copy). */
export function bytes(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function detectResultFromWire(reply: pb.DetectReply): DetectResult {
  if (!reply.image) throw badReply('image');
  const { width, height, format } = reply.image;
  return { image: { width, height, format }, faces: reply.faces.map(faceFromWire), ...engineTimingFromWire(reply) };
}

export function alignedFacesFromWire(reply: pb.DetectReply): { image: ImageInfo; faces: AlignedFace[] } & EngineTiming {
  const { faces, ...rest } = detectResultFromWire(reply);
  return {
    ...rest,
    faces: faces.map((face, i) => {
      const crop = reply.faces[i].crop;
      if (!crop || crop.byteLength === 0) throw badReply(`crop of face ${i}`);
      return { ...face, crop: bytes(crop) };
    }),
  };
}

export function embeddingsToWire(
  vectors: Float32Array[],
  modelId: string,
  dim: number,
  engineMs?: number,
): pb.EmbedReply {
  return {
    embeddings: vectors.map((v) => ({ values: Array.from(v) })),
    model_id: modelId,
    dim,
    ...engineTimingToWire(engineMs),
  };
}

/** The vectors of a reply, which must hold `count` of the reply's dimension (a retryable engine_bad_reply if not). */
export function embeddingsFromWire(
  reply: { embeddings: pb.Embedding[]; dim: number },
  count: number,
  sender: string,
  inputs: string,
): Float32Array[] {
  const vectors = reply.embeddings.map((e) => Float32Array.from(e.values));
  if (vectors.length !== count || vectors.some((v) => v.length !== reply.dim)) {
    throw new FaceSearchError(
      'engine_bad_reply',
      `${sender} sent ${vectors.length} vectors for ${count} ${inputs} (dim ${reply.dim})`,
      502,
      true,
    );
  }
  return vectors;
}
