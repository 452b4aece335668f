/**
 * Pagination and input checks shared by both LibraryRepository implementations, so the two cannot drift apart.
 * Cursors are opaque to clients: base64url of the last id (or item index) of the previous page.
 */
import { FaceSearchError, ID_PATTERN, type Page } from '@facesearch/common';

export const MAX_PAGE_LIMIT = 1000;

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function checkLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_LIMIT) {
    throw new FaceSearchError('invalid_limit', `limit must be an integer from 1 to ${MAX_PAGE_LIMIT}.`, 400);
  }
  return limit;
}

export function encodeCursor(lastId: string | number): string {
  return Buffer.from(String(lastId), 'utf8').toString('base64url');
}

function invalidCursor(): FaceSearchError {
  return new FaceSearchError('invalid_cursor', 'The cursor is not one this listing returned.', 400);
}

function decodeRaw(cursor: string): string {
  const raw = Buffer.from(cursor, 'base64url').toString('utf8');
  // Buffer decoding never fails, so re-encode to reject strings that are not our cursors.
  if (encodeCursor(raw) !== cursor) throw invalidCursor();
  return raw;
}

/** The id after which the page starts, or null for the first page. */
export function decodeIdCursor(cursor: string | null | undefined): string | null {
  if (cursor === undefined || cursor === null || cursor === '') return null;
  const id = decodeRaw(cursor);
  if (!ID_PATTERN.test(id)) throw invalidCursor();
  return id;
}

/** The item index after which the page starts, or -1 for the first page. */
export function decodeIndexCursor(cursor: string | null | undefined): number {
  if (cursor === undefined || cursor === null || cursor === '') return -1;
  const raw = decodeRaw(cursor);
  if (!/^(0|[1-9][0-9]{0,14})$/.test(raw)) throw invalidCursor();
  return Number(raw);
}

/**
 * Builds a page from up to `limit + 1` rows fetched in order: the extra row only tells that a next page exists.
 * `lastKey` is the sort key of the last row kept (rows that vanished between two reads are already filtered out
 * by the caller, so the key is passed separately).
 */
export function toPage<T>(rows: T[], limit: number, keyOf: (row: T) => string | number): Page<T> {
  if (rows.length <= limit) return { items: rows, next_cursor: null };
  const items = rows.slice(0, limit);
  return { items, next_cursor: encodeCursor(keyOf(items[items.length - 1] as T)) };
}

export function checkId(kind: string, id: string): void {
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
    throw new FaceSearchError('invalid_id', `${kind} must be 1 to 128 letters, digits, '_' or '-'.`, 400);
  }
}

export function checkKeyHash(keyHash: string): void {
  if (typeof keyHash !== 'string' || !SHA256_HEX.test(keyHash)) {
    throw new FaceSearchError('invalid_key_hash', 'key_hash must be a lowercase sha256 hex digest.', 400);
  }
}

export function checkItemIndex(index: number): void {
  if (!Number.isSafeInteger(index) || index < 0) {
    throw new FaceSearchError('invalid_import_item', 'Import item indexes are integers from 0.', 400);
  }
}

export function conflict(what: string): FaceSearchError {
  return new FaceSearchError('conflict', `${what} already exists.`, 409);
}

export const FINISHED_ITEM_STATUSES = ['succeeded', 'failed', 'cancelled'] as const;
export const UNFINISHED_IMPORT_STATUSES = ['queued', 'running'] as const;
