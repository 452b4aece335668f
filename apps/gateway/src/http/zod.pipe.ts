import { FaceSearchError } from '@facesearch/common';
import type { PipeTransform } from '@nestjs/common';
import { z } from 'zod';

/** Validates a body or query with a zod schema; the first problems are named field by field. */
export class ZodPipe<S extends z.ZodType> implements PipeTransform<unknown, z.output<S>> {
  constructor(private readonly schema: S) {}

  transform(value: unknown): z.output<S> {
    const result = this.schema.safeParse(value ?? {});
    if (result.success) return result.data;
    throw validationError(result.error);
  }
}

export function validationError(error: z.ZodError): FaceSearchError {
  const parts = error.issues.slice(0, 5).map((issue) => {
    const path = issue.path.length
      ? issue.path
          .map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))
          .join('.')
          .replace(/\.\[/g, '[')
      : 'body';
    return `${path}: ${issue.message}`;
  });
  return new FaceSearchError('invalid_request', parts.join('; '), 400);
}
