import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { ApiKeyRecord, AppRecord, LibraryRepository, Page, PageRequest } from '@facesearch/common';
import { checkId, errors, isConflict, nowIso } from './errors';

export type Principal = { kind: 'admin' } | { kind: 'app'; appId: string; keyId: string };

export interface AuthOptions {
  adminApiKey: string | null;
  defaultAppApiKey: string | null;
  /**
   * How long a valid key is trusted without asking the library again (0: every request asks). A key revoked through
   * this process stops at once; through another gateway, within this time.
   */
  keyCacheMs?: number;
}

/** Keys remembered at most; past it the cache starts over (a bound on memory, not an eviction policy). */
const KEY_CACHE_ENTRIES = 10_000;

/** A key shown once, at creation; only its hash is stored. */
export interface IssuedKey {
  key_id: string;
  app_id: string;
  key: string;
  prefix: string;
  created_at: string;
}

export type PublicKey = Omit<ApiKeyRecord, 'key_hash'>;

export const DEFAULT_APP_ID = 'default';
const KEY_PREFIX = 'fsk_';

export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(24).toString('base64url');
}

/** Compares digests, so neither the length nor the content of the secret leaks through timing. */
function sameSecret(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

/** API keys and apps: who is calling, and the admin operations on apps and keys. */
export class AuthService {
  private readonly knownKeys = new Map<string, { principal: Principal & { kind: 'app' }; until: number }>();

  constructor(
    private readonly repo: LibraryRepository,
    private readonly options: AuthOptions,
  ) {}

  /** On first start (no apps), creates app `default`, with DEFAULT_APP_API_KEY as its key when set. */
  /**
   * Creates the app `default` when there is no app. Its key is DEFAULT_APP_API_KEY when configured; otherwise a
   * key is generated once, at that first start, and returned so the caller can show it (a newcomer needs one).
   */
  async bootstrap(): Promise<{ generatedKey: IssuedKey | null }> {
    let created = false;
    const apps = await this.repo.listApps({ limit: 1 });
    if (apps.items.length === 0) {
      try {
        await this.repo.createApp({ app_id: DEFAULT_APP_ID, name: 'Default app', created_at: nowIso() });
        created = true;
      } catch (err) {
        if (!isConflict(err)) throw err; // another gateway bootstrapped at the same moment
      }
    }
    const key = this.options.defaultAppApiKey;
    if (!key) return { generatedKey: created ? await this.createKey(DEFAULT_APP_ID) : null };
    // The configured key is (re)registered while the default app exists, unless it was revoked.
    if ((await this.repo.getApp(DEFAULT_APP_ID)) && !(await this.repo.findKeyByHash(hashKey(key)))) {
      try {
        await this.repo.createKey(this.keyRecord(DEFAULT_APP_ID, key));
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
    return { generatedKey: null };
  }

  async authenticate(key: string | undefined | null): Promise<Principal> {
    if (!key) throw errors.unauthorized();
    const admin = this.options.adminApiKey;
    if (admin && sameSecret(key, admin)) return { kind: 'admin' };
    // Lookup by sha256: the store never sees the key, and timing depends on the hash, not the secret.
    const hash = hashKey(key);
    const now = Date.now();
    const known = this.knownKeys.get(hash);
    if (known && known.until > now) return known.principal;
    const record = await this.repo.findKeyByHash(hash);
    if (!record || record.revoked_at) {
      this.knownKeys.delete(hash);
      throw errors.unauthorized('The API key is unknown or revoked.');
    }
    const principal = { kind: 'app' as const, appId: record.app_id, keyId: record.key_id };
    const ttl = this.options.keyCacheMs ?? 0;
    if (ttl > 0) {
      if (this.knownKeys.size >= KEY_CACHE_ENTRIES) this.knownKeys.clear();
      this.knownKeys.set(hash, { principal, until: now + ttl });
    }
    return principal;
  }

  async createApp(input: { app_id: string; name?: string }): Promise<{ app: AppRecord; key: IssuedKey }> {
    const appId = checkId('app_id', input.app_id);
    const app: AppRecord = { app_id: appId, name: input.name ?? appId, created_at: nowIso() };
    try {
      await this.repo.createApp(app);
    } catch (err) {
      if (isConflict(err)) throw errors.appExists(appId);
      throw err;
    }
    const key = await this.createKey(appId);
    return { app, key };
  }

  listApps(page: PageRequest): Promise<Page<AppRecord>> {
    return this.repo.listApps(page);
  }

  async getApp(appId: string): Promise<AppRecord> {
    const app = await this.repo.getApp(checkId('app_id', appId));
    if (!app) throw errors.appNotFound(appId);
    return app;
  }

  async createKey(appId: string): Promise<IssuedKey> {
    await this.getApp(appId);
    const key = generateApiKey();
    const record = this.keyRecord(appId, key);
    await this.repo.createKey(record);
    return { key_id: record.key_id, app_id: appId, key, prefix: record.prefix, created_at: record.created_at };
  }

  async listKeys(appId: string): Promise<PublicKey[]> {
    await this.getApp(appId);
    const keys = await this.repo.listKeys(appId);
    return keys.map(({ key_hash: _hash, ...rest }) => rest);
  }

  async revokeKey(appId: string, keyId: string): Promise<void> {
    await this.getApp(appId);
    const ok = await this.repo.revokeKey(appId, checkId('key_id', keyId), nowIso());
    if (!ok) throw errors.keyNotFound(keyId);
    for (const [hash, { principal }] of this.knownKeys) {
      if (principal.keyId === keyId) this.knownKeys.delete(hash);
    }
  }

  private keyRecord(appId: string, key: string): ApiKeyRecord {
    return {
      key_id: randomUUID(),
      app_id: appId,
      key_hash: hashKey(key),
      prefix: key.slice(0, 8),
      created_at: nowIso(),
      revoked_at: null,
    };
  }
}
