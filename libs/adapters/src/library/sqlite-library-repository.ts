/**
 * LibraryRepository on one SQLite file (embedded mode). better-sqlite3 is synchronous; the async port just wraps it.
 * The database may be shared with the sqlite-vec vector store: pass the same `Database` instance, and this class
 * leaves it open on close(). Tables are prefixed `lib_` so they cannot collide with the vector store's.
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
} from '@facesearch/common';
import Database from 'better-sqlite3';
import {
  checkId,
  checkItemIndex,
  checkKeyHash,
  checkLimit,
  conflict,
  decodeIdCursor,
  decodeIndexCursor,
  toPage,
} from './pagination';

type Db = Database.Database;

/**
 * Schema migrations, in order; version N is MIGRATIONS[N - 1]. Never edit a released entry: append a new one.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE lib_apps (
    app_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE lib_api_keys (
    app_id TEXT NOT NULL, key_id TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
    created_at TEXT NOT NULL, revoked_at TEXT,
    PRIMARY KEY (app_id, key_id)
  ) WITHOUT ROWID;
  CREATE TABLE lib_groups (
    app_id TEXT NOT NULL, group_id TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (app_id, group_id)
  ) WITHOUT ROWID;
  CREATE TABLE lib_users (
    app_id TEXT NOT NULL, group_id TEXT NOT NULL, user_id TEXT NOT NULL, user_info TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (app_id, group_id, user_id)
  ) WITHOUT ROWID;
  CREATE TABLE lib_faces (
    app_id TEXT NOT NULL, face_id TEXT NOT NULL, group_id TEXT NOT NULL, user_id TEXT NOT NULL,
    image_key TEXT NOT NULL, box TEXT NOT NULL, landmarks TEXT NOT NULL, quality TEXT NOT NULL,
    model_id TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (app_id, face_id)
  ) WITHOUT ROWID;
  CREATE INDEX lib_faces_by_user ON lib_faces (app_id, group_id, user_id, face_id);
  CREATE TABLE lib_imports (
    import_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, group_id TEXT NOT NULL, status TEXT NOT NULL,
    total INTEGER NOT NULL, succeeded INTEGER NOT NULL, failed INTEGER NOT NULL, options TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX lib_imports_by_status ON lib_imports (status, import_id);
  CREATE TABLE lib_import_items (
    import_id TEXT NOT NULL, item_index INTEGER NOT NULL, user_id TEXT NOT NULL, image_key TEXT NOT NULL,
    name TEXT, status TEXT NOT NULL, attempts INTEGER NOT NULL, face_id TEXT, error TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (import_id, item_index)
  ) WITHOUT ROWID;
  CREATE INDEX lib_import_items_by_status ON lib_import_items (import_id, status, item_index);
  `,
];

export const LIBRARY_SCHEMA_VERSION = MIGRATIONS.length;

interface FaceRow {
  app_id: string;
  face_id: string;
  group_id: string;
  user_id: string;
  image_key: string;
  box: string;
  landmarks: string;
  quality: string;
  model_id: string;
  created_at: string;
}

interface ImportRow extends Omit<ImportRecord, 'options'> {
  options: string;
}

interface ImportItemRow {
  import_id: string;
  item_index: number;
  user_id: string;
  image_key: string;
  name: string | null;
  status: ImportItemStatus;
  attempts: number;
  face_id: string | null;
  error: string | null;
  updated_at: string;
}

const faceFromRow = (r: FaceRow): FaceRecord => ({
  app_id: r.app_id,
  group_id: r.group_id,
  user_id: r.user_id,
  face_id: r.face_id,
  image_key: r.image_key,
  box: JSON.parse(r.box),
  landmarks: JSON.parse(r.landmarks),
  quality: JSON.parse(r.quality),
  model_id: r.model_id,
  created_at: r.created_at,
});

const importFromRow = (r: ImportRow): ImportRecord => ({ ...r, options: JSON.parse(r.options) });

const itemFromRow = (r: ImportItemRow): ImportItemRecord => ({
  import_id: r.import_id,
  index: r.item_index,
  user_id: r.user_id,
  image_key: r.image_key,
  name: r.name,
  status: r.status,
  attempts: r.attempts,
  face_id: r.face_id,
  error: r.error === null ? null : JSON.parse(r.error),
  updated_at: r.updated_at,
});

/** Creates or migrates the library tables; refuses a file written by a newer version of the service. */
function migrate(db: Db): void {
  db.exec('CREATE TABLE IF NOT EXISTS lib_schema_version (version INTEGER NOT NULL)');
  const apply = db.transaction(() => {
    const row = db.prepare<[], { version: number }>('SELECT version FROM lib_schema_version').get();
    const current = row?.version ?? 0;
    if (current > MIGRATIONS.length) {
      throw new FaceSearchError(
        'library_schema_too_new',
        `The library database has schema version ${current}; this build knows up to ${MIGRATIONS.length}.`,
        500,
      );
    }
    for (let v = current; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v] as string);
    if (!row) db.prepare('INSERT INTO lib_schema_version (version) VALUES (?)').run(MIGRATIONS.length);
    else if (current < MIGRATIONS.length)
      db.prepare('UPDATE lib_schema_version SET version = ?').run(MIGRATIONS.length);
  });
  // IMMEDIATE: two processes opening a fresh file at once must not both create the tables.
  apply.immediate();
}

function prepareStatements(db: Db) {
  return {
    insertApp: db.prepare<[AppRecord], never>(
      'INSERT OR IGNORE INTO lib_apps (app_id, name, created_at) VALUES (@app_id, @name, @created_at)',
    ),
    getApp: db.prepare<[string], AppRecord>('SELECT app_id, name, created_at FROM lib_apps WHERE app_id = ?'),
    listApps: db.prepare<[string, number], AppRecord>(
      'SELECT app_id, name, created_at FROM lib_apps WHERE app_id > ? ORDER BY app_id LIMIT ?',
    ),

    insertKey: db.prepare<[ApiKeyRecord], never>(
      `INSERT OR IGNORE INTO lib_api_keys (app_id, key_id, key_hash, prefix, created_at, revoked_at)
       VALUES (@app_id, @key_id, @key_hash, @prefix, @created_at, @revoked_at)`,
    ),
    findKeyByHash: db.prepare<[string], ApiKeyRecord>(
      'SELECT key_id, app_id, key_hash, prefix, created_at, revoked_at FROM lib_api_keys WHERE key_hash = ?',
    ),
    listKeys: db.prepare<[string], ApiKeyRecord>(
      `SELECT key_id, app_id, key_hash, prefix, created_at, revoked_at FROM lib_api_keys
       WHERE app_id = ? ORDER BY key_id`,
    ),
    // COALESCE: revoking twice keeps the first revocation time.
    revokeKey: db.prepare<[string, string, string], never>(
      'UPDATE lib_api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE app_id = ? AND key_id = ?',
    ),

    insertGroup: db.prepare<[GroupRecord], never>(
      'INSERT OR IGNORE INTO lib_groups (app_id, group_id, created_at) VALUES (@app_id, @group_id, @created_at)',
    ),
    getGroup: db.prepare<[string, string], GroupRecord>(
      'SELECT app_id, group_id, created_at FROM lib_groups WHERE app_id = ? AND group_id = ?',
    ),
    listGroups: db.prepare<[string, string, number], GroupRecord>(
      `SELECT app_id, group_id, created_at FROM lib_groups
       WHERE app_id = ? AND group_id > ? ORDER BY group_id LIMIT ?`,
    ),
    groupFaceIds: db.prepare<[string, string], { face_id: string }>(
      'SELECT face_id FROM lib_faces WHERE app_id = ? AND group_id = ? ORDER BY face_id',
    ),
    deleteGroupFaces: db.prepare<[string, string], never>('DELETE FROM lib_faces WHERE app_id = ? AND group_id = ?'),
    deleteGroupUsers: db.prepare<[string, string], never>('DELETE FROM lib_users WHERE app_id = ? AND group_id = ?'),
    deleteGroup: db.prepare<[string, string], never>('DELETE FROM lib_groups WHERE app_id = ? AND group_id = ?'),

    // keep_info = 0: an update that leaves user_info as it is.
    upsertUser: db.prepare<[UserRecord & { keep_info: number }], UserRecord>(
      `INSERT INTO lib_users (app_id, group_id, user_id, user_info, created_at, updated_at)
       VALUES (@app_id, @group_id, @user_id, @user_info, @created_at, @updated_at)
       ON CONFLICT (app_id, group_id, user_id) DO UPDATE SET
         user_info = CASE WHEN @keep_info = 1 THEN lib_users.user_info ELSE excluded.user_info END,
         updated_at = excluded.updated_at
       RETURNING app_id, group_id, user_id, user_info, created_at, updated_at`,
    ),
    getUser: db.prepare<[string, string, string], UserRecord>(
      `SELECT app_id, group_id, user_id, user_info, created_at, updated_at FROM lib_users
       WHERE app_id = ? AND group_id = ? AND user_id = ?`,
    ),
    listUsers: db.prepare<[string, string, string, number], UserRecord>(
      `SELECT app_id, group_id, user_id, user_info, created_at, updated_at FROM lib_users
       WHERE app_id = ? AND group_id = ? AND user_id > ? ORDER BY user_id LIMIT ?`,
    ),
    userFaceIds: db.prepare<[string, string, string], { face_id: string }>(
      'SELECT face_id FROM lib_faces WHERE app_id = ? AND group_id = ? AND user_id = ? ORDER BY face_id',
    ),
    deleteUserFaces: db.prepare<[string, string, string], never>(
      'DELETE FROM lib_faces WHERE app_id = ? AND group_id = ? AND user_id = ?',
    ),
    deleteUser: db.prepare<[string, string, string], never>(
      'DELETE FROM lib_users WHERE app_id = ? AND group_id = ? AND user_id = ?',
    ),

    insertFace: db.prepare<[FaceRow], never>(
      `INSERT OR IGNORE INTO lib_faces
         (app_id, face_id, group_id, user_id, image_key, box, landmarks, quality, model_id, created_at)
       VALUES (@app_id, @face_id, @group_id, @user_id, @image_key, @box, @landmarks, @quality, @model_id, @created_at)`,
    ),
    getFace: db.prepare<[string, string], FaceRow>('SELECT * FROM lib_faces WHERE app_id = ? AND face_id = ?'),
    countUserFaces: db.prepare<[string, string, string], { n: number }>(
      'SELECT COUNT(*) AS n FROM lib_faces WHERE app_id = ? AND group_id = ? AND user_id = ?',
    ),
    listFaces: db.prepare<[string, string, string], FaceRow>(
      'SELECT * FROM lib_faces WHERE app_id = ? AND group_id = ? AND user_id = ? ORDER BY face_id',
    ),
    deleteFace: db.prepare<[string, string], never>('DELETE FROM lib_faces WHERE app_id = ? AND face_id = ?'),
    updateFace: db.prepare<[Pick<FaceRow, 'app_id' | 'face_id' | 'box' | 'landmarks' | 'quality' | 'model_id'>], never>(
      `UPDATE lib_faces SET box = @box, landmarks = @landmarks, quality = @quality, model_id = @model_id
       WHERE app_id = @app_id AND face_id = @face_id`,
    ),

    insertImport: db.prepare<[ImportRow], never>(
      `INSERT OR IGNORE INTO lib_imports
         (import_id, app_id, group_id, status, total, succeeded, failed, options, created_at, updated_at)
       VALUES (@import_id, @app_id, @group_id, @status, @total, @succeeded, @failed, @options, @created_at, @updated_at)`,
    ),
    insertItem: db.prepare<[ImportItemRow], never>(
      `INSERT INTO lib_import_items
         (import_id, item_index, user_id, image_key, name, status, attempts, face_id, error, updated_at)
       VALUES (@import_id, @item_index, @user_id, @image_key, @name, @status, @attempts, @face_id, @error, @updated_at)`,
    ),
    getImport: db.prepare<[string, string], ImportRow>('SELECT * FROM lib_imports WHERE app_id = ? AND import_id = ?'),
    listUnfinishedImports: db.prepare<[], ImportRow>(
      "SELECT * FROM lib_imports WHERE status IN ('queued', 'running') ORDER BY import_id",
    ),
    setImportStatus: db.prepare<[string, string, string], never>(
      'UPDATE lib_imports SET status = ?, updated_at = ? WHERE import_id = ?',
    ),
    getItem: db.prepare<[string, number], ImportItemRow>(
      'SELECT * FROM lib_import_items WHERE import_id = ? AND item_index = ?',
    ),
    listItems: db.prepare<[string, number, number], ImportItemRow>(
      'SELECT * FROM lib_import_items WHERE import_id = ? AND item_index > ? ORDER BY item_index LIMIT ?',
    ),
    listItemsByStatus: db.prepare<[string, string, number, number], ImportItemRow>(
      `SELECT * FROM lib_import_items WHERE import_id = ? AND status = ? AND item_index > ?
       ORDER BY item_index LIMIT ?`,
    ),
    // The status guard makes a second delivery of the same result a no-op (0 rows changed).
    finishItem: db.prepare<
      [
        {
          import_id: string;
          item_index: number;
          status: string;
          face_id: string | null;
          error: string | null;
          attempts: number;
          updated_at: string;
        },
      ],
      never
    >(
      `UPDATE lib_import_items
       SET status = @status, face_id = @face_id, error = @error, attempts = @attempts, updated_at = @updated_at
       WHERE import_id = @import_id AND item_index = @item_index
         AND status NOT IN ('succeeded', 'failed', 'cancelled')`,
    ),
    countFinishedItem: db.prepare<
      [{ import_id: string; succeeded: number; failed: number; updated_at: string }],
      never
    >(
      `UPDATE lib_imports SET succeeded = succeeded + @succeeded, failed = failed + @failed, updated_at = @updated_at
       WHERE import_id = @import_id`,
    ),
  };
}

export class SqliteLibraryRepository implements LibraryRepository {
  readonly db: Db;
  private readonly ownsDb: boolean;
  private readonly s: ReturnType<typeof prepareStatements>;

  /**
   * @param database a file path (opened here, closed by close()), or an open connection shared with other
   *   adapters (left open by close()).
   */
  constructor(database: string | Db) {
    this.ownsDb = typeof database === 'string';
    this.db = typeof database === 'string' ? new Database(database) : database;
    // WAL is a property of the file, wanted by every adapter sharing it; the connection settings below are left
    // to whoever opened a shared connection.
    if (!this.db.memory) this.db.pragma('journal_mode = WAL');
    if (this.ownsDb) {
      // NORMAL is durable across process crashes in WAL mode; only a power loss can lose the last commits.
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 5000');
    }
    migrate(this.db);
    this.s = prepareStatements(this.db);
  }

  async createApp(app: AppRecord): Promise<void> {
    checkId('app_id', app.app_id);
    const { changes } = this.s.insertApp.run({ app_id: app.app_id, name: app.name, created_at: app.created_at });
    if (changes === 0) throw conflict(`App ${app.app_id}`);
  }

  async getApp(appId: string): Promise<AppRecord | null> {
    return this.s.getApp.get(appId) ?? null;
  }

  async listApps(page: PageRequest): Promise<Page<AppRecord>> {
    const limit = checkLimit(page.limit);
    const after = decodeIdCursor(page.cursor) ?? '';
    return toPage(this.s.listApps.all(after, limit + 1), limit, (a) => a.app_id);
  }

  async createKey(key: ApiKeyRecord): Promise<void> {
    checkId('app_id', key.app_id);
    checkId('key_id', key.key_id);
    checkKeyHash(key.key_hash);
    const { changes } = this.s.insertKey.run({
      key_id: key.key_id,
      app_id: key.app_id,
      key_hash: key.key_hash,
      prefix: key.prefix,
      created_at: key.created_at,
      revoked_at: key.revoked_at ?? null,
    });
    if (changes === 0) throw conflict(`Key ${key.key_id}`);
  }

  async findKeyByHash(keyHash: string): Promise<ApiKeyRecord | null> {
    return this.s.findKeyByHash.get(keyHash) ?? null;
  }

  async listKeys(appId: string): Promise<ApiKeyRecord[]> {
    return this.s.listKeys.all(appId);
  }

  async revokeKey(appId: string, keyId: string, revokedAt: string): Promise<boolean> {
    return this.s.revokeKey.run(revokedAt, appId, keyId).changes > 0;
  }

  async createGroup(group: GroupRecord): Promise<void> {
    checkId('app_id', group.app_id);
    checkId('group_id', group.group_id);
    const { changes } = this.s.insertGroup.run({
      app_id: group.app_id,
      group_id: group.group_id,
      created_at: group.created_at,
    });
    if (changes === 0) throw conflict(`Group ${group.group_id}`);
  }

  async getGroup(appId: string, groupId: string): Promise<GroupRecord | null> {
    return this.s.getGroup.get(appId, groupId) ?? null;
  }

  async listGroups(appId: string, page: PageRequest): Promise<Page<GroupRecord>> {
    const limit = checkLimit(page.limit);
    const after = decodeIdCursor(page.cursor) ?? '';
    return toPage(this.s.listGroups.all(appId, after, limit + 1), limit, (g) => g.group_id);
  }

  async deleteGroup(appId: string, groupId: string): Promise<string[]> {
    return this.db
      .transaction(() => {
        const ids = this.s.groupFaceIds.all(appId, groupId).map((r) => r.face_id);
        this.s.deleteGroupFaces.run(appId, groupId);
        this.s.deleteGroupUsers.run(appId, groupId);
        this.s.deleteGroup.run(appId, groupId);
        return ids;
      })
      .immediate();
  }

  async upsertUser(user: UserRecord): Promise<UserRecord> {
    checkId('app_id', user.app_id);
    checkId('group_id', user.group_id);
    checkId('user_id', user.user_id);
    const row = this.s.upsertUser.get({
      app_id: user.app_id,
      group_id: user.group_id,
      user_id: user.user_id,
      user_info: user.user_info ?? null,
      created_at: user.created_at,
      updated_at: user.updated_at,
      keep_info: user.user_info === undefined ? 1 : 0,
    });
    if (!row) throw new Error('upsert returned no row');
    return row;
  }

  async getUser(appId: string, groupId: string, userId: string): Promise<UserRecord | null> {
    return this.s.getUser.get(appId, groupId, userId) ?? null;
  }

  async listUsers(appId: string, groupId: string, page: PageRequest): Promise<Page<UserRecord>> {
    const limit = checkLimit(page.limit);
    const after = decodeIdCursor(page.cursor) ?? '';
    return toPage(this.s.listUsers.all(appId, groupId, after, limit + 1), limit, (u) => u.user_id);
  }

  async deleteUser(appId: string, groupId: string, userId: string): Promise<string[]> {
    return this.db
      .transaction(() => {
        const ids = this.s.userFaceIds.all(appId, groupId, userId).map((r) => r.face_id);
        this.s.deleteUserFaces.run(appId, groupId, userId);
        this.s.deleteUser.run(appId, groupId, userId);
        return ids;
      })
      .immediate();
  }

  async addFace(face: FaceRecord, options: { maxFacesPerUser?: number } = {}): Promise<void> {
    checkId('app_id', face.app_id);
    checkId('group_id', face.group_id);
    checkId('user_id', face.user_id);
    checkId('face_id', face.face_id);
    const limit = options.maxFacesPerUser ?? 0;
    // Counted and inserted in one transaction (IMMEDIATE: the write lock first), so concurrent adds keep the limit.
    const changes = this.db
      .transaction(() => {
        // A face already there is a conflict (a repeated delivery), whatever the count.
        if (this.s.getFace.get(face.app_id, face.face_id)) return 0;
        if (limit > 0 && this.countUserFaces(face) >= limit) throw tooManyFacesError(face.user_id, limit);
        return this.insertFaceRow(face);
      })
      .immediate();
    if (changes === 0) throw conflict(`Face ${face.face_id}`);
  }

  private countUserFaces(face: FaceRecord): number {
    return this.s.countUserFaces.get(face.app_id, face.group_id, face.user_id)?.n ?? 0;
  }

  private insertFaceRow(face: FaceRecord): number {
    const { changes } = this.s.insertFace.run({
      app_id: face.app_id,
      face_id: face.face_id,
      group_id: face.group_id,
      user_id: face.user_id,
      image_key: face.image_key,
      box: JSON.stringify(face.box),
      landmarks: JSON.stringify(face.landmarks),
      quality: JSON.stringify(face.quality),
      model_id: face.model_id,
      created_at: face.created_at,
    });
    return changes;
  }

  async getFace(appId: string, faceId: string): Promise<FaceRecord | null> {
    const row = this.s.getFace.get(appId, faceId);
    return row ? faceFromRow(row) : null;
  }

  async listFaces(appId: string, groupId: string, userId: string): Promise<FaceRecord[]> {
    return this.s.listFaces.all(appId, groupId, userId).map(faceFromRow);
  }

  async deleteFace(appId: string, faceId: string): Promise<boolean> {
    return this.s.deleteFace.run(appId, faceId).changes > 0;
  }

  async updateFace(face: FaceRecord): Promise<boolean> {
    const { changes } = this.s.updateFace.run({
      app_id: face.app_id,
      face_id: face.face_id,
      box: JSON.stringify(face.box),
      landmarks: JSON.stringify(face.landmarks),
      quality: JSON.stringify(face.quality),
      model_id: face.model_id,
    });
    return changes > 0;
  }

  async createImport(job: ImportRecord, items: ImportItemRecord[]): Promise<void> {
    checkId('app_id', job.app_id);
    checkId('group_id', job.group_id);
    checkId('import_id', job.import_id);
    const seen = new Set<number>();
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
    }
    this.db
      .transaction(() => {
        const { changes } = this.s.insertImport.run({
          import_id: job.import_id,
          app_id: job.app_id,
          group_id: job.group_id,
          status: job.status,
          total: job.total,
          succeeded: job.succeeded,
          failed: job.failed,
          options: JSON.stringify(job.options),
          created_at: job.created_at,
          updated_at: job.updated_at,
        });
        if (changes === 0) throw conflict(`Import ${job.import_id}`);
        for (const item of items) {
          this.s.insertItem.run({
            import_id: job.import_id,
            item_index: item.index,
            user_id: item.user_id,
            image_key: item.image_key,
            name: item.name ?? null,
            status: item.status,
            attempts: item.attempts,
            face_id: item.face_id ?? null,
            error: item.error ? JSON.stringify(item.error) : null,
            updated_at: item.updated_at,
          });
        }
      })
      .immediate();
  }

  async getImport(appId: string, importId: string): Promise<ImportRecord | null> {
    const row = this.s.getImport.get(appId, importId);
    return row ? importFromRow(row) : null;
  }

  async listUnfinishedImports(): Promise<ImportRecord[]> {
    return this.s.listUnfinishedImports.all().map(importFromRow);
  }

  async setImportStatus(importId: string, status: ImportStatus, updatedAt: string): Promise<void> {
    if (this.s.setImportStatus.run(status, updatedAt, importId).changes === 0) {
      throw new FaceSearchError('import_not_found', `Import ${importId} does not exist.`, 404);
    }
  }

  async getImportItem(importId: string, index: number): Promise<ImportItemRecord | null> {
    const row = this.s.getItem.get(importId, index);
    return row ? itemFromRow(row) : null;
  }

  async listImportItems(
    importId: string,
    filter: { status?: ImportItemStatus },
    page: PageRequest,
  ): Promise<Page<ImportItemRecord>> {
    const limit = checkLimit(page.limit);
    const after = decodeIndexCursor(page.cursor);
    const rows = filter.status
      ? this.s.listItemsByStatus.all(importId, filter.status, after, limit + 1)
      : this.s.listItems.all(importId, after, limit + 1);
    return toPage(rows.map(itemFromRow), limit, (i) => i.index);
  }

  async finishImportItem(
    importId: string,
    index: number,
    result: ImportItemOutcome,
    updatedAt: string,
  ): Promise<boolean> {
    return this.db
      .transaction(() => {
        const moved = this.s.finishItem.run({
          import_id: importId,
          item_index: index,
          status: result.status,
          face_id: result.face_id ?? null,
          error: result.error ? JSON.stringify(result.error) : null,
          attempts: result.attempts,
          updated_at: updatedAt,
        }).changes;
        if (moved === 0) return false;
        this.s.countFinishedItem.run({
          import_id: importId,
          succeeded: result.status === 'succeeded' ? 1 : 0,
          failed: result.status === 'failed' ? 1 : 0,
          updated_at: updatedAt,
        });
        return true;
      })
      .immediate();
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.ownsDb && this.db.open) this.db.close();
  }
}
