import { meetsQuality, type QualityControl, type QualityLevel } from '@facesearch/common';
import { errors } from './errors';

export { QUALITY_CONTROLS, type QualityControl } from '@facesearch/common';

/** The enrolment gate: throws `quality_too_low` when the face is below the required level. */
export function assertQuality(level: QualityLevel, required: QualityControl): void {
  if (!meetsQuality(level, required)) throw errors.qualityTooLow(level, required);
}
