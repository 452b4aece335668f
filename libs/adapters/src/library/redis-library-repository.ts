/**
 * LibraryRepository on Redis (distributed mode). Records are JSON strings; listings are sorted sets:
 * ids as members of score-0 sets read with ZRANGEBYLEX (stable, O(log n) cursor pagination), import items by
 * index as the score. Multi-key writes run as Lua scripts (see redis-scripts.ts), so they are atomic.
 *
 * Key layout, all under the prefix P (default `fs:`); ids never contain ':':
 *   P app:{app}                  app json            P apps                    zset of app ids
 *   P key:{sha256}               key json            P keys:{app}              hash key_id -> sha256
 *   P group:{app}:{group}        group json          P groups:{app}            zset of group ids
 *   P user:{app}:{group}:{user}  user json           P users:{app}:{group}     zset of user ids
 *   P face:{app}:{face}          face json           P faces:{app}:{group}     zset of 'user:face'
 *   P import:{import}            import json         P imports:unfinished      zset of queued/running import ids
 *   P item:{import}:{index}      item json           P items:{import}[:status] zsets of indexes (score = index)
 */
import {
  type ApiKeyRecord,
  type AppRecord,
  FaceSearchError,
  type FaceRecord,
  type GroupRecord,
  type ImportItemOutcome,
  type ImportItemRecord,
  type ImportItemStatus,
  type ImportRecord,
  type ImportStatus,
  type LibraryRepository,
  type Page,
  type PageRequest,
  tooManyFacesError,
  type UserRecord,
  isFaceSearchError,
} from '@facesearch/common';
import { Redis } from 'ioredis';
import {
  checkId,
  checkItemIndex,
  checkKeyHash,
  checkLimit,
  conflict,
  decodeIdCursor,
  decodeIndexCursor,
  encodeCursor,
} from './pagination';
import * as scripts from './redis-scripts';

export interface RedisLibraryOptions {
  /** Prefix of every key this repository writes; default `fs:`. */
  keyPrefix?: string;
  /**
   * A call Redis has not answered in this time fails with 503 library_unavailable (a stalled Redis otherwise held
   * every request for as long as it stalled). Default 30 s, as the S3 and Qdrant adapters. Only for a URL.
   */
  commandTimeoutMs?: number;
}

export const DEFAULT_LIBRARY_KEY_PREFIX = 'fs:';

/** Import items written per Lua call (about 20 ms of Redis time each). */
const IMPORT_CHUNK = 1000;

export class RedisLibraryRepository implements LibraryRepository {
  readonly redis: Redis;
  readonly keyPrefix: string;
  private readonly ownsClient: boolean;

  /**
   * @param redis a redis:// URL (connected here, closed by close()) or a client shared with other adapters (left
   *   open by close()). A shared client must not set ioredis' own `keyPrefix`: the Lua scripts build key names.
   */
  constructor(redis: string | Redis, options: RedisLibraryOptions = {}) {
    this.keyPrefix = options.keyPrefix ?? DEFAULT_LIBRARY_KEY_PREFIX;
    this.ownsClient = typeof redis === 'string';
    if (typeof redis === 'string') {
      // Auto-pipelining: calls made together (an index batch's records) share one socket write.
      this.redis = new Redis(redis, {
        maxRetriesPerRequest: 2,
        enableAutoPipelining: true,
        commandTimeout: options.commandTimeoutMs ?? 30_000,
      });
      // Connection errors surface on the calls that need Redis; without a listener ioredis prints each one.
      this.redis.on('error', () => {});
    } else {
      this.redis = redis;
    }
  }

  // ---- keys ----------------------------------------------------------------------------------------------------

  private k = {
    app: (app: string) => `${this.keyPrefix}app:${app}`,
    apps: () => `${this.keyPrefix}apps`,
    key: (hash: string) => `${this.keyPrefix}key:${hash}`,
    keys: (app: string) => `${this.keyPrefix}keys:${app}`,
    group: (app: string, group: string) => `${this.keyPrefix}group:${app}:${group}`,
    groups: (app: string) => `${this.keyPrefix}groups:${app}`,
    user: (app: string, group: string, user: string) => `${this.keyPrefix}user:${app}:${group}:${user}`,
    users: (app: string, group: string) => `${this.keyPrefix}users:${app}:${group}`,
    face: (app: string, face: string) => `${this.keyPrefix}face:${app}:${face}`,
    faces: (app: string, group: string) => `${this.keyPrefix}faces:${app}:${group}`,
    import: (id: string) => `${this.keyPrefix}import:${id}`,
    unfinished: () => `${this.keyPrefix}imports:unfinished`,
    item: (id: string, index: number | string) => `${this.keyPrefix}item:${id}:${index}`,
    items: (id: string, status?: ImportItemStatus) =>
      status ? `${this.keyPrefix}items:${id}:${status}` : `${this.keyPrefix}items:${id}`,
  };

  // ---- helpers -------------------------------------------------------------------------------------------------

  /** Redis failures become a retryable 503; our own FaceSearchErrors pass through. */
  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (isFaceSearchError(err)) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new FaceSearchError('library_unavailable', `The library store (Redis) failed: ${message}`, 503, true);
    }
  }

  private async getJson<T>(key: string): Promise<T | null> {
    const raw = await this.redis.get(key);
    return raw === null ? null : (JSON.parse(raw) as T);
  }

  /** Records of these keys in order; keys deleted meanwhile are left out. */
  private async getJsonMany<T>(keys: string[]): Promise<T[]> {
    if (keys.length === 0) return [];
    const raws = await this.redis.mget(keys);
    return raws.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as T);
  }

  private async pageByLex<T>(indexKey: string, recordKey: (id: string) => string, page: PageRequest): Promise<Page<T>> {
    const limit = checkLimit(page.limit);
    const after = decodeIdCursor(page.cursor);
    const ids = await this.redis.zrangebylex(indexKey, after === null ? '-' : `(${after}`, '+', 'LIMIT', 0, limit + 1);
    const pageIds = ids.slice(0, limit);
    const items = await this.getJsonMany<T>(pageIds.map(recordKey));
    const last = pageIds[pageIds.length - 1];
    return { items, next_cursor: ids.length > limit && last !== undefined ? encodeCursor(last) : null };
  }

  // ---- apps and keys -------------------------------------------------------------------------------------------

  async createApp(app: AppRecord): Promise<void> {
    checkId('app_id', app.app_id);
    const record: AppRecord = { app_id: app.app_id, name: app.name, created_at: app.created_at };
    const created = await this.guard(() =>
      scripts.createIfAbsent.run(
        this.redis,
        [this.k.app(app.app_id), this.k.apps()],
        [JSON.stringify(record), app.app_id],
      ),
    );
    if (created === 0) throw conflict(`App ${app.app_id}`);
  }

  getApp(appId: string): Promise<AppRecord | null> {
    return this.guard(() => this.getJson<AppRecord>(this.k.app(appId)));
  }

  listApps(page: PageRequest): Promise<Page<AppRecord>> {
    return this.guard(() => this.pageByLex<AppRecord>(this.k.apps(), this.k.app, page));
  }

  async createKey(key: ApiKeyRecord): Promise<void> {
    checkId('app_id', key.app_id);
    checkId('key_id', key.key_id);
    checkKeyHash(key.key_hash);
    const record: ApiKeyRecord = {
      key_id: key.key_id,
      app_id: key.app_id,
      key_hash: key.key_hash,
      prefix: key.prefix,
      created_at: key.created_at,
      revoked_at: key.revoked_at ?? null,
    };
    const created = await this.guard(() =>
      scripts.createKey.run(
        this.redis,
        [this.k.key(key.key_hash), this.k.keys(key.app_id)],
        [JSON.stringify(record), key.key_id, key.key_hash],
      ),
    );
    if (created === 0) throw conflict(`Key ${key.key_id}`);
  }

  findKeyByHash(keyHash: string): Promise<ApiKeyRecord | null> {
    return this.guard(() => this.getJson<ApiKeyRecord>(this.k.key(keyHash)));
  }

  listKeys(appId: string): Promise<ApiKeyRecord[]> {
    return this.guard(async () => {
      const byId = await this.redis.hgetall(this.k.keys(appId));
      const ids = Object.keys(byId).sort();
      return this.getJsonMany<ApiKeyRecord>(ids.map((id) => this.k.key(byId[id] as string)));
    });
  }

  async revokeKey(appId: string, keyId: string, revokedAt: string): Promise<boolean> {
    const found = await this.guard(() =>
      scripts.revokeKey.run(this.redis, [this.k.keys(appId)], [this.keyPrefix, keyId, revokedAt]),
    );
    return found === 1;
  }

  // ---- groups and users ----------------------------------------------------------------------------------------

  async createGroup(group: GroupRecord): Promise<void> {
    checkId('app_id', group.app_id);
    checkId('group_id', group.group_id);
    const record: GroupRecord = { app_id: group.app_id, group_id: group.group_id, created_at: group.created_at };
    const created = await this.guard(() =>
      scripts.createIfAbsent.run(
        this.redis,
        [this.k.group(group.app_id, group.group_id), this.k.groups(group.app_id)],
        [JSON.stringify(record), group.group_id],
      ),
    );
    if (created === 0) throw conflict(`Group ${group.group_id}`);
  }

  getGroup(appId: string, groupId: string): Promise<GroupRecord | null> {
    return this.guard(() => this.getJson<GroupRecord>(this.k.group(appId, groupId)));
  }

  listGroups(appId: string, page: PageRequest): Promise<Page<GroupRecord>> {
    return this.guard(() => this.pageByLex<GroupRecord>(this.k.groups(appId), (id) => this.k.group(appId, id), page));
  }

  deleteGroup(appId: string, groupId: string): Promise<string[]> {
    return this.guard(
      async () => (await scripts.deleteGroup.run(this.redis, [], [this.keyPrefix, appId, groupId])) as string[],
    );
  }

  async upsertUser(user: UserRecord): Promise<UserRecord> {
    checkId('app_id', user.app_id);
    checkId('group_id', user.group_id);
    checkId('user_id', user.user_id);
    const record: UserRecord = {
      app_id: user.app_id,
      group_id: user.group_id,
      user_id: user.user_id,
      user_info: user.user_info ?? null,
      created_at: user.created_at,
      updated_at: user.updated_at,
    };
    const stored = await this.guard(() =>
      scripts.upsertUser.run(
        this.redis,
        [this.k.user(user.app_id, user.group_id, user.user_id), this.k.users(user.app_id, user.group_id)],
        [JSON.stringify(record), user.user_info === undefined ? '0' : '1', user.user_id],
      ),
    );
    return JSON.parse(stored as string) as UserRecord;
  }

  getUser(appId: string, groupId: string, userId: string): Promise<UserRecord | null> {
    return this.guard(() => this.getJson<UserRecord>(this.k.user(appId, groupId, userId)));
  }

  listUsers(appId: string, groupId: string, page: PageRequest): Promise<Page<UserRecord>> {
    return this.guard(() =>
      this.pageByLex<UserRecord>(this.k.users(appId, groupId), (id) => this.k.user(appId, groupId, id), page),
    );
  }

  deleteUser(appId: string, groupId: string, userId: string): Promise<string[]> {
    return this.guard(
      async () => (await scripts.deleteUser.run(this.redis, [], [this.keyPrefix, appId, groupId, userId])) as string[],
    );
  }

  // ---- faces ---------------------------------------------------------------------------------------------------

  async addFace(face: FaceRecord, options: { maxFacesPerUser?: number } = {}): Promise<void> {
    checkId('app_id', face.app_id);
    checkId('group_id', face.group_id);
    checkId('user_id', face.user_id);
    checkId('face_id', face.face_id);
    const record: FaceRecord = {
      app_id: face.app_id,
      group_id: face.group_id,
      user_id: face.user_id,
      face_id: face.face_id,
      image_key: face.image_key,
      box: face.box,
      landmarks: face.landmarks,
      quality: face.quality,
      model_id: face.model_id,
      created_at: face.created_at,
    };
    const created = await this.guard(() =>
      scripts.addFace.run(
        this.redis,
        [this.k.face(face.app_id, face.face_id), this.k.faces(face.app_id, face.group_id)],
        [JSON.stringify(record), `${face.user_id}:${face.face_id}`, face.user_id, String(options.maxFacesPerUser ?? 0)],
      ),
    );
    if (created === 0) throw conflict(`Face ${face.face_id}`);
    if (created === -1) throw tooManyFacesError(face.user_id, options.maxFacesPerUser ?? 0);
  }

  getFace(appId: string, faceId: string): Promise<FaceRecord | null> {
    return this.guard(() => this.getJson<FaceRecord>(this.k.face(appId, faceId)));
  }

  listFaces(appId: string, groupId: string, userId: string): Promise<FaceRecord[]> {
    return this.guard(async () => {
      // Members are 'user:face'; ';' is the character after ':', so this range is exactly this user's faces.
      const members = await this.redis.zrangebylex(this.k.faces(appId, groupId), `[${userId}:`, `(${userId};`);
      const faceIds = members.map((m) => m.slice(userId.length + 1));
      return this.getJsonMany<FaceRecord>(faceIds.map((id) => this.k.face(appId, id)));
    });
  }

  async updateFace(face: FaceRecord): Promise<boolean> {
    return this.guard(async () => {
      const key = this.k.face(face.app_id, face.face_id);
      const stored = await this.getJson<FaceRecord>(key);
      if (!stored) return false;
      const updated: FaceRecord = {
        ...stored,
        box: face.box,
        landmarks: face.landmarks,
        quality: face.quality,
        model_id: face.model_id,
      };
      // XX: only if the face still exists (a delete in between wins).
      return (await this.redis.set(key, JSON.stringify(updated), 'XX')) === 'OK';
    });
  }

  async deleteFace(appId: string, faceId: string): Promise<boolean> {
    const deleted = await this.guard(() =>
      scripts.deleteFace.run(this.redis, [this.k.face(appId, faceId)], [this.keyPrefix, appId]),
    );
    return deleted === 1;
  }

  // ---- imports -------------------------------------------------------------------------------------------------

  async createImport(job: ImportRecord, items: ImportItemRecord[]): Promise<void> {
    checkId('app_id', job.app_id);
    checkId('group_id', job.group_id);
    checkId('import_id', job.import_id);
    const seen = new Set<number>();
    const triples: Array<string | number> = [];
    for (const item of items) {
      checkItemIndex(item.index);
      if (item.import_id !== job.import_id || seen.has(item.index)) {
        throw new FaceSearchError(
          'invalid_import_item',
          `Import item ${item.index} is repeated or belongs elsewhere.`,
          400,
        );
      }
      seen.add(item.index);
      const record: ImportItemRecord = {
        import_id: job.import_id,
        index: item.index,
        user_id: item.user_id,
        image_key: item.image_key,
        name: item.name ?? null,
        status: item.status,
        attempts: item.attempts,
        face_id: item.face_id ?? null,
        error: item.error ?? null,
        updated_at: item.updated_at,
      };
      triples.push(item.index, item.status, JSON.stringify(record));
    }
    const record: ImportRecord = {
      import_id: job.import_id,
      app_id: job.app_id,
      group_id: job.group_id,
      status: job.status,
      total: job.total,
      succeeded: job.succeeded,
      failed: job.failed,
      options: job.options,
      created_at: job.created_at,
      updated_at: job.updated_at,
    };
    const unfinished = job.status === 'queued' || job.status === 'running' ? '1' : '0';
    // Up to IMPORT_CHUNK items the import is written by one atomic script. Larger ones are written chunk by
    // chunk with the record last: the import becomes visible only when complete, and Redis is never blocked long.
    const chunk = IMPORT_CHUNK * 3;
    await this.guard(async () => {
      for (let start = 0; start === 0 || start < triples.length; start += chunk) {
        const last = start + chunk >= triples.length;
        const created = await scripts.createImport.run(
          this.redis,
          [],
          [
            this.keyPrefix,
            job.import_id,
            last ? JSON.stringify(record) : '',
            unfinished,
            ...triples.slice(start, start + chunk),
          ],
        );
        if (created === 0) throw conflict(`Import ${job.import_id}`);
      }
    });
  }

  getImport(appId: string, importId: string): Promise<ImportRecord | null> {
    return this.guard(async () => {
      const job = await this.getJson<ImportRecord>(this.k.import(importId));
      // Another app's import is as absent as a missing one.
      return job && job.app_id === appId ? job : null;
    });
  }

  listUnfinishedImports(): Promise<ImportRecord[]> {
    return this.guard(async () => {
      const ids = await this.redis.zrange(this.k.unfinished(), 0, -1);
      return this.getJsonMany<ImportRecord>(ids.map(this.k.import));
    });
  }

  async setImportStatus(importId: string, status: ImportStatus, updatedAt: string): Promise<void> {
    const found = await this.guard(() =>
      scripts.setImportStatus.run(
        this.redis,
        [this.k.import(importId), this.k.unfinished()],
        [status, updatedAt, importId],
      ),
    );
    if (found === 0) throw new FaceSearchError('import_not_found', `Import ${importId} does not exist.`, 404);
  }

  getImportItem(importId: string, index: number): Promise<ImportItemRecord | null> {
    return this.guard(() => this.getJson<ImportItemRecord>(this.k.item(importId, index)));
  }

  async listImportItems(
    importId: string,
    filter: { status?: ImportItemStatus },
    page: PageRequest,
  ): Promise<Page<ImportItemRecord>> {
    const limit = checkLimit(page.limit);
    const after = decodeIndexCursor(page.cursor);
    return this.guard(async () => {
      const indexes = await this.redis.zrangebyscore(
        this.k.items(importId, filter.status),
        `(${after}`,
        '+inf',
        'LIMIT',
        0,
        limit + 1,
      );
      const pageIndexes = indexes.slice(0, limit);
      const items = await this.getJsonMany<ImportItemRecord>(pageIndexes.map((i) => this.k.item(importId, i)));
      const last = pageIndexes[pageIndexes.length - 1];
      return { items, next_cursor: indexes.length > limit && last !== undefined ? encodeCursor(last) : null };
    });
  }

  async finishImportItem(
    importId: string,
    index: number,
    result: ImportItemOutcome,
    updatedAt: string,
  ): Promise<boolean> {
    checkItemIndex(index);
    const moved = await this.guard(() =>
      scripts.finishImportItem.run(
        this.redis,
        [],
        [
          this.keyPrefix,
          importId,
          index,
          JSON.stringify({
            status: result.status,
            face_id: result.face_id ?? null,
            error: result.error ?? null,
            attempts: result.attempts,
            updated_at: updatedAt,
          }),
        ],
      ),
    );
    return moved === 1;
  }

  async ping(): Promise<void> {
    await this.guard(() => this.redis.ping());
  }

  async close(): Promise<void> {
    if (!this.ownsClient) return;
    try {
      await this.redis.quit();
    } catch {
      // Already closed or never connected: nothing left to release.
      this.redis.disconnect();
    }
  }
}
