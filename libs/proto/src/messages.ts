/**
 * The messages of facesearch.proto as proto-loader hands them over (keepCase, longs as Number, enums as
 * strings, defaults on). Unset message fields arrive as null, unset `optional` scalars as undefined;
 * bytes arrive as Buffer and may be sent as any Uint8Array.
 */
export type QualityLevel =
  | 'QUALITY_LEVEL_UNSPECIFIED'
  | 'QUALITY_LEVEL_LOW'
  | 'QUALITY_LEVEL_NORMAL'
  | 'QUALITY_LEVEL_HIGH';

export interface DetectRequest {
  image: Uint8Array;
  max_faces?: number;
  min_face_size?: number;
  score_threshold?: number;
  with_crops: boolean;
}

export interface ImageInfo {
  width: number;
  height: number;
  format: string;
}

export interface Point {
  x: number;
  y: number;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Landmarks {
  left_eye: Point | null;
  right_eye: Point | null;
  nose: Point | null;
  mouth: Point | null;
  mouth_left?: Point | null;
  mouth_right?: Point | null;
}

export interface FaceQuality {
  size: number;
  blur: number;
  yaw: number;
  pitch: number;
  roll: number;
  score: number;
  level: QualityLevel;
}

export interface Face {
  box: Box | null;
  landmarks: Landmarks | null;
  score: number;
  quality: FaceQuality | null;
  /** Empty unless the request asked for crops. */
  crop: Uint8Array;
}

export interface DetectReply {
  image: ImageInfo | null;
  faces: Face[];
  engine_ms?: number | null;
}

export interface AnalyzeReply {
  /** Null when the request's image was empty (a model info call). */
  image: ImageInfo | null;
  faces: Face[];
  embeddings: Embedding[];
  model_id: string;
  dim: number;
  engine_ms?: number | null;
}

export interface EmbedRequest {
  crops: Uint8Array[];
}

export interface Embedding {
  values: number[];
}

export interface EmbedReply {
  embeddings: Embedding[];
  model_id: string;
  dim: number;
  engine_ms?: number | null;
}

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

export interface HealthCheckRequest {
  service: string;
}

export interface HealthCheckResponse {
  status: ServingStatus;
}
