/** Types shared by the engine, the workers and the gateway. Coordinates are pixels of the upright image. */
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

/** Five landmarks; BlazeFace gives a mouth centre, so both corners may be absent and `mouth` set instead. */
export interface Landmarks {
  left_eye: Point;
  right_eye: Point;
  nose: Point;
  mouth: Point;
  mouth_left?: Point;
  mouth_right?: Point;
}

export type QualityLevel = 'LOW' | 'NORMAL' | 'HIGH';

export interface FaceQuality {
  /** Shorter side of the face box, in pixels of the original image. */
  size: number;
  /** Variance of the Laplacian on the aligned grey crop; higher is sharper. */
  blur: number;
  /** Degrees, estimated from landmarks. */
  yaw: number;
  pitch: number;
  roll: number;
  score: number;
  level: QualityLevel;
}

export interface DetectedFace {
  box: Box;
  landmarks: Landmarks;
  score: number;
  quality: FaceQuality;
}

export interface ImageInfo {
  width: number;
  height: number;
  format: string;
}

export interface DetectOptions {
  /** Keep at most this many faces, largest first. */
  maxFaces?: number;
  /** Drop faces whose box is smaller than this many pixels (shorter side). */
  minFaceSize?: number;
  /** Detection score threshold, 0..1. */
  scoreThreshold?: number;
}

/** Where the face engine reports its own share of a call (for the Server-Timing header). */
export interface EngineTiming {
  /**
   * Milliseconds the face engine worked on the call, measured where it runs (its thread, or inside the detector and
   * embedder services): the rest of the call's time is hand-off and transport. Absent when the engine does not say.
   */
  engine_ms?: number;
}

export interface DetectResult extends EngineTiming {
  image: ImageInfo;
  faces: DetectedFace[];
}

/** A detected face with its ArcFace-aligned crop (112x112x3 RGB bytes, row-major). */
export interface AlignedFace extends DetectedFace {
  crop: Uint8Array;
}

export interface EmbeddedFace extends DetectedFace {
  embedding: Float32Array;
}

export interface AnalyzeResult extends EngineTiming {
  image: ImageInfo;
  faces: EmbeddedFace[];
  modelId: string;
}

export const QUALITY_LEVELS: readonly QualityLevel[] = ['LOW', 'NORMAL', 'HIGH'];

/** An enrolment quality gate, like Baidu's quality_control: NONE lets every face through. */
export type QualityControl = 'NONE' | QualityLevel;
export const QUALITY_CONTROLS: readonly QualityControl[] = ['NONE', 'LOW', 'NORMAL', 'HIGH'];

/** Whether a face of quality `level` passes the gate `required`. */
export function meetsQuality(level: QualityLevel, required: QualityControl): boolean {
  return required === 'NONE' || QUALITY_LEVELS.indexOf(level) >= QUALITY_LEVELS.indexOf(required);
}
