/**
 * The face library's records and the ports that store them. Field names are snake_case because they are
 * what the HTTP API returns. Timestamps are ISO-8601 strings.
 */
import type { Box, FaceQuality, Landmarks, QualityLevel } from './faces';

/** Ids of apps, groups, users, faces, imports: letters, digits, `_` and `-`, 1 to 128 characters. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

export interface PageRequest {
  /** 1..1000 */
  limit: number;
  /** Opaque; the `next_cursor` of the previous page. */
  cursor?: string | null;
}

export interface Page<T> {
  items: T[];
  /** null on the last page. */
  next_cursor: string | null;
}

export interface AppRecord {
  app_id: string;
  name: string;
  created_at: string;
}

export interface ApiKeyRecord {
  key_id: string;
  app_id: string;
  /** sha256 hex of the secret key; the key itself is never stored. */
  key_hash: string;
  /** First characters of the key, for people to recognise it in listings. */
  prefix: string;
  created_at: string;
  revoked_at: string | null;
}

export interface GroupRecord {
  app_id: string;
  group_id: string;
  created_at: string;
}

export interface UserRecord {
  app_id: string;
  group_id: string;
  user_id: string;
  user_info: string | null;
  created_at: string;
  updated_at: string;
}

export interface FaceRecord {
  app_id: string;
  group_id: string;
  user_id: string;
  face_id: string;
  /** Key of the source image in the blob store. */
  image_key: string;
  box: Box;
  landmarks: Landmarks;
  quality: FaceQuality;
  /** Id of the embedding model whose vector is stored for this face. */
  model_id: string;
  created_at: string;
}

export type ImportStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
export type ImportItemStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface ImportOptions {
  quality_control: 'NONE' | QualityLevel;
}

export interface ImportRecord {
  import_id: string;
  app_id: string;
  group_id: string;
  status: ImportStatus;
  total: number;
  succeeded: number;
  failed: number;
  options: ImportOptions;
  created_at: string;
  updated_at: string;
}

export interface ImportItemRecord {
  import_id: string;
  /** 0-based position in the request. */
  index: number;
  user_id: string;
  /** Key of the item's image in the blob store. */
  image_key: string;
  /** Client-side name of the item (file name), for reports. */
  name: string | null;
  status: ImportItemStatus;
  attempts: number;
  face_id: string | null;
  error: { code: string; message: string } | null;
  updated_at: string;
}

/**
 * Apps, keys, groups, users, faces and imports. One implementation per deployment mode
 * (SQLite embedded, Redis distributed); both pass the same contract suite.
 * Methods that look a record up return null when it does not exist; create methods throw
 * FaceSearchError `conflict` (409) when it already exists.
 */
/** How an import item ended: what `finishImportItem` records. */
export interface ImportItemOutcome {
  status: 'succeeded' | 'failed' | 'cancelled';
  face_id?: string | null;
  error?: { code: string; message: string } | null;
  attempts: number;
}

export interface LibraryRepository {
  createApp(app: AppRecord): Promise<void>;
  getApp(appId: string): Promise<AppRecord | null>;
  listApps(page: PageRequest): Promise<Page<AppRecord>>;

  createKey(key: ApiKeyRecord): Promise<void>;
  findKeyByHash(keyHash: string): Promise<ApiKeyRecord | null>;
  listKeys(appId: string): Promise<ApiKeyRecord[]>;
  /** Returns false when the key does not exist in that app. */
  revokeKey(appId: string, keyId: string, revokedAt: string): Promise<boolean>;

  createGroup(group: GroupRecord): Promise<void>;
  getGroup(appId: string, groupId: string): Promise<GroupRecord | null>;
  listGroups(appId: string, page: PageRequest): Promise<Page<GroupRecord>>;
  /** Deletes the group with its users and face records; returns the ids of the faces removed. */
  deleteGroup(appId: string, groupId: string): Promise<string[]>;

  /** Creates the user, or updates `user_info` (when not undefined) and `updated_at` if it exists. */
  upsertUser(user: UserRecord): Promise<UserRecord>;
  getUser(appId: string, groupId: string, userId: string): Promise<UserRecord | null>;
  listUsers(appId: string, groupId: string, page: PageRequest): Promise<Page<UserRecord>>;
  /** Deletes the user and its face records; returns the ids of the faces removed. */
  deleteUser(appId: string, groupId: string, userId: string): Promise<string[]>;

  /**
   * Adds a face record; conflict (409) when it exists. With `maxFacesPerUser`, too_many_faces (409) when its user
   * already holds that many faces in the group, checked and added in one step (concurrent adds keep the limit).
   */
  addFace(face: FaceRecord, options?: { maxFacesPerUser?: number }): Promise<void>;
  getFace(appId: string, faceId: string): Promise<FaceRecord | null>;
  listFaces(appId: string, groupId: string, userId: string): Promise<FaceRecord[]>;
  deleteFace(appId: string, faceId: string): Promise<boolean>;
  /**
   * Rewrites an existing face's box, landmarks, quality and model_id (its ids, image and creation time stay):
   * re-embedding with another model. Returns false, writing nothing, when the face does not exist.
   */
  updateFace(face: FaceRecord): Promise<boolean>;

  createImport(job: ImportRecord, items: ImportItemRecord[]): Promise<void>;
  getImport(appId: string, importId: string): Promise<ImportRecord | null>;
  /** Imports in `queued` or `running` state, of every app: resumed after a restart. */
  listUnfinishedImports(): Promise<ImportRecord[]>;
  setImportStatus(importId: string, status: ImportStatus, updatedAt: string): Promise<void>;
  getImportItem(importId: string, index: number): Promise<ImportItemRecord | null>;
  listImportItems(
    importId: string,
    filter: { status?: ImportItemStatus },
    page: PageRequest,
  ): Promise<Page<ImportItemRecord>>;
  /**
   * Records an item's new state and adjusts the import's succeeded/failed counters atomically.
   * Moving an item that is already succeeded, failed or cancelled is a no-op returning false, so a job
   * delivered twice cannot count twice.
   */
  finishImportItem(importId: string, index: number, result: ImportItemOutcome, updatedAt: string): Promise<boolean>;

  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Images and other bytes, by key. */
export interface BlobStore {
  put(key: string, data: Uint8Array, contentType?: string): Promise<void>;
  /** Throws FaceSearchError `blob_not_found` (404) when absent. */
  get(key: string): Promise<Buffer>;
  exists(key: string): Promise<boolean>;
  /**
   * Copies `fromKey`'s bytes to `toKey` (replacing it), server-side where the store can, so the bytes need not
   * travel through this process. Throws FaceSearchError `blob_not_found` (404) when `fromKey` is absent, like get.
   */
  copy(fromKey: string, toKey: string): Promise<void>;
  delete(key: string): Promise<void>;
  /**
   * Deletes every object under `prefix`, a batch at a time. `stillWanted`, when given, is asked before each batch,
   * after the batch was listed, and false stops the deletion: an object written after a false answer was never
   * listed, so the owner of a prefix used again (a group deleted, then made anew) keeps what it writes.
   */
  deletePrefix(prefix: string, options?: { stillWanted?: () => Promise<boolean> }): Promise<void>;
  /**
   * A URL a client can PUT the object's bytes to, valid for `expiresSeconds`, scoped to this one key.
   * Null when the store has no such URLs (the embedded store: the gateway takes the upload itself).
   */
  presignPut(key: string, expiresSeconds: number): Promise<string | null>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface VectorPayload {
  app_id: string;
  group_id: string;
  user_id: string;
  face_id: string;
  model_id: string;
}

export interface VectorPoint {
  /** The face id; writing the same id twice keeps one point. */
  id: string;
  vector: Float32Array;
  payload: VectorPayload;
}

export interface VectorQuery {
  app_id: string;
  group_ids: string[];
  model_id: string;
  limit: number;
}

export interface VectorHit extends VectorPayload {
  /** Cosine similarity, -1..1. */
  similarity: number;
}

/** Face vectors. Embedded: sqlite-vec; distributed: Qdrant. */
export interface VectorStore {
  /** Creates the collection/table for vectors of this dimension if needed. */
  init(dim: number): Promise<void>;
  upsert(points: VectorPoint[]): Promise<void>;
  search(vector: Float32Array, query: VectorQuery): Promise<VectorHit[]>;
  /** The stored vectors of these faces in this app (missing ones are left out). */
  retrieve(appId: string, faceIds: string[]): Promise<Array<VectorPayload & { vector: Float32Array }>>;
  deleteFaces(appId: string, faceIds: string[]): Promise<void>;
  deleteWhere(filter: { app_id: string; group_id: string; user_id?: string }): Promise<void>;
  count(filter: { app_id?: string; group_id?: string }): Promise<number>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A job that failed. `retryable: false` means retrying cannot help (bad input): it fails at once.
 */
export interface JobFailure {
  code: string;
  message: string;
  retryable: boolean;
}

export interface QueueJob<T> {
  /** Unique id; adding a job whose id is already queued or running does nothing. */
  id: string;
  data: T;
}

export interface JobContext {
  /** 1 on the first try. */
  attempt: number;
  maxAttempts: number;
}

export interface QueueCounts {
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  completed: number;
}

/**
 * A work queue with retries. Embedded: in process; distributed: BullMQ on Redis.
 * The handler throws to fail an attempt; a FaceSearchError whose `retryable` is false is not retried.
 * `onFailed` runs once, after the last attempt has failed.
 */
export interface JobQueue<T> {
  readonly name: string;
  add(jobs: QueueJob<T>[]): Promise<void>;
  /** Removes jobs that have not started; returns how many were removed. */
  remove(ids: string[]): Promise<number>;
  process(
    handler: (data: T, ctx: JobContext) => Promise<void>,
    options: { concurrency: number; onFailed?: (data: T, error: unknown) => Promise<void> },
  ): void;
  counts(): Promise<QueueCounts>;
  close(): Promise<void>;
}
