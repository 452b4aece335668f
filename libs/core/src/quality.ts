import type { QualityLevel } from '@facesearch/common';
import { errors } from './errors';

export type QualityControl = 'NONE' | QualityLevel;
export const QUALITY_CONTROLS: readonly QualityControl[] = ['NONE', 'LOW', 'NORMAL', 'HIGH'];

const RANK: Record<QualityLevel, number> = { LOW: 0, NORMAL: 1, HIGH: 2 };

/** The enrolment gate, like Baidu's quality_control: NONE and LOW accept every face the engine keeps. */
export function assertQuality(level: QualityLevel, required: QualityControl): void {
  if (required !== 'NONE' && RANK[level] < RANK[required]) throw errors.qualityTooLow(level, required);
}
