/**
 * Request schemas (zod), used both to validate and to document (OpenAPI via z.toJSONSchema).
 * Multipart fields arrive as strings, so numbers are coerced and lists accept JSON or comma-separated text.
 */
import { ID_PATTERN } from '@facesearch/common';
import { z } from 'zod';

const idMessage = "must be 1-128 letters, digits, '_' or '-'";
export const Id = z.string().regex(ID_PATTERN, idMessage);
const QualityControl = z.enum(['NONE', 'LOW', 'NORMAL', 'HIGH']);

/** Half of a UTF-16 pair without its other half: JSON.stringify escapes it, and Redis's Lua JSON refuses it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** Free text that is stored (user info, names): at most `max` characters of well-formed Unicode. */
const storedText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !LONE_SURROGATE.test(s), 'must be well-formed Unicode (a lone UTF-16 surrogate is not)');
/**
 * Multipart fields and query parameters are text: a decimal string is read as its number, nothing else is (no
 * `true`, `[3]`, `0x10`, `1e1` or empty string taken for a number, as plain coercion would).
 */
const fromDecimalText = (v: unknown) => (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v);
const intIn = (min: number, max: number) => z.preprocess(fromDecimalText, z.number().int().min(min).max(max));
const score = z.preprocess(fromDecimalText, z.number().min(0).max(100));

/** A JSON value sent as a multipart text field (other values as they are). */
function parseJsonText(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

/** A list given as a JSON array, a JSON string of one, or comma-separated text. */
function parseListText(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const s = v.trim();
  if (s.startsWith('[')) return parseJsonText(s);
  return s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}

/**
 * A list of min-max items whose length is checked before its items: zod checks every item first, so a list of
 * millions (a 20 MB JSON array, or a sparse one from a 30-byte multipart field named `group_ids[10000000]`) would
 * cost seconds of the event loop and gigabytes of error objects before the length was looked at.
 */
const boundedList = <S extends z.ZodType>(item: S, min: number, max: number, parse: (v: unknown) => unknown) =>
  z.preprocess((v, ctx) => {
    const value = parse(v);
    if (Array.isArray(value) && value.length > max) {
      ctx.issues.push({
        code: 'too_big',
        origin: 'array',
        maximum: max,
        inclusive: true,
        input: value.length,
        message: `Too big: expected array to have <=${max} items`,
      });
      return z.NEVER;
    }
    return value;
  }, z.array(item).min(min).max(max));

const idList = boundedList(Id, 1, 100, parseListText);

export const PageQuery = z.object({
  limit: intIn(1, 1000).default(100),
  cursor: z.string().max(1024).optional(),
});

export const CreateAppBody = z.object({ app_id: Id, name: storedText(200).min(1).optional() });
export const CreateGroupBody = z.object({ group_id: Id });
export const UpdateUserBody = z.object({ user_info: storedText(4096).nullable() });
export const CopyUserBody = z.object({ to_group_id: Id });

export const EnrolBody = z.object({
  image_base64: z.string().optional().describe('The image as base64, when not sent as the multipart file `image`.'),
  user_info: storedText(4096).optional(),
  quality_control: QualityControl.default('NONE'),
  mode: z.enum(['APPEND', 'REPLACE']).default('APPEND'),
});

export const DetectBody = z.object({
  image_base64: z.string().optional(),
  max_faces: intIn(1, 100).default(10),
});

export const CompareBody = z.object({
  image_a_base64: z.string().optional(),
  image_b_base64: z.string().optional(),
  face_id_b: Id.optional().describe('Compare image_a with this enrolled face instead of image_b.'),
  match_threshold: score.optional().describe('Score 0-100 at or above which `match` is true; default 80.'),
});

export const SearchBody = z.object({
  image_base64: z.string().optional(),
  group_ids: idList.describe('Groups to search (array, or comma-separated in multipart).'),
  top_k: intIn(1, 100).default(5),
  match_threshold: score.optional().describe('Minimum score 0-100 of a match; default 80.'),
  max_faces: intIn(1, 10).default(1).describe('Faces of the probe to search (largest first); 1 = 1:N, more = M:N.'),
});

export const ImportItem = z
  .object({
    user_id: Id,
    name: storedText(1024).optional(),
    image_base64: z.string().optional(),
    object_key: z.string().max(1024).optional().describe('Key returned by POST /v1/uploads.'),
    file: z.string().max(1024).optional().describe('Name of a file of the same multipart request.'),
  })
  .refine((i) => [i.image_base64, i.object_key, i.file].filter((x) => x !== undefined).length === 1, {
    message: 'each item needs exactly one of image_base64, object_key or file',
  });

export const CreateImportBody = z.object({
  group_id: Id,
  quality_control: QualityControl.default('NONE'),
  items: boundedList(ImportItem, 1, 10_000, parseJsonText),
});

export const ImportItemsQuery = PageQuery.extend({
  status: z.enum(['pending', 'running', 'succeeded', 'failed', 'cancelled']).optional(),
});

export type PageQueryT = z.output<typeof PageQuery>;

/** JSON schema of a request body for @ApiBody; `files` adds binary multipart fields. */
export function openApiBody(
  schema: z.ZodType,
  files: string[] = [],
  multipleFiles: string[] = [],
): Record<string, unknown> {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete json.$schema;
  const properties = { ...((json.properties as Record<string, unknown>) ?? {}) };
  for (const f of files) properties[f] = { type: 'string', format: 'binary' };
  for (const f of multipleFiles) properties[f] = { type: 'array', items: { type: 'string', format: 'binary' } };
  return { ...json, properties };
}

export function openApiQuery(
  schema: z.ZodObject,
): Array<{ name: string; in: 'query'; required: boolean; schema: object }> {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as {
    properties?: Record<string, object>;
    required?: string[];
  };
  return Object.entries(json.properties ?? {}).map(([name, s]) => ({
    name,
    in: 'query' as const,
    required: json.required?.includes(name) ?? false,
    schema: s,
  }));
}

export const ReindexBody = z.object({
  all: z.boolean().default(false).describe('Re-embed every face, not only those stored with another model.'),
});
