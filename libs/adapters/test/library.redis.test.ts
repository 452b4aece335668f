import { randomUUID } from 'node:crypto';
import { DEFAULT_LIBRARY_KEY_PREFIX, RedisLibraryRepository } from '@facesearch/adapters';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { describeLibraryRepositoryContract } from './library.contract';
import { startSilentServer } from './silent-server';

const REDIS_URL = process.env.REDIS_URL;

/** Deletes every key under the prefix (SCAN, not KEYS, so a shared Redis is not blocked). */
async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

if (!REDIS_URL) {
  describe.skip('RedisLibraryRepository: skipped because REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379)', () => {
    it('needs a real Redis server', () => {});
  });
} else {
  const url = REDIS_URL;

  describeLibraryRepositoryContract('RedisLibraryRepository', async () => {
    const keyPrefix = `fs-test:${randomUUID()}:`;
    const admin = new Redis(url);
    const opened: RedisLibraryRepository[] = [];
    const open = () => {
      const repo = new RedisLibraryRepository(url, { keyPrefix });
      opened.push(repo);
      return repo;
    };
    return {
      repo: open(),
      openAnother: async () => open(),
      cleanup: async () => {
        for (const repo of opened) await repo.close();
        await deletePrefix(admin, keyPrefix);
        await admin.quit();
      },
    };
  });

  describe('RedisLibraryRepository specifics', () => {
    it('defaults the key prefix to fs:', async () => {
      const repo = new RedisLibraryRepository(url);
      expect(repo.keyPrefix).toBe(DEFAULT_LIBRARY_KEY_PREFIX);
      expect(DEFAULT_LIBRARY_KEY_PREFIX).toBe('fs:');
      await repo.close();
    });

    it('writes only under its prefix, uses a shared client without closing it, and reloads evicted scripts', async () => {
      const keyPrefix = `fs-test:${randomUUID()}:`;
      const client = new Redis(url);
      const repo = new RedisLibraryRepository(client, { keyPrefix });
      try {
        await repo.createApp({ app_id: 'a', name: 'A', created_at: 'now' });
        await repo.upsertUser({
          app_id: 'a',
          group_id: 'g',
          user_id: 'u',
          user_info: null,
          created_at: 'now',
          updated_at: 'now',
        });
        await client.script('FLUSH');
        await repo.createGroup({ app_id: 'a', group_id: 'g', created_at: 'now' });
        const keys: string[] = [];
        let cursor = '0';
        do {
          const [next, batch] = await client.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 500);
          keys.push(...batch);
          cursor = next;
        } while (cursor !== '0');
        expect(keys.sort()).toEqual(
          ['app:a', 'apps', 'group:a:g', 'groups:a', 'user:a:g:u', 'users:a:g'].map((k) => keyPrefix + k),
        );
        await repo.close();
        expect(await client.ping()).toBe('PONG');
      } finally {
        await deletePrefix(client, keyPrefix);
        await client.quit();
      }
    });

    it('turns an unreachable server into a retryable 503', async () => {
      const repo = new RedisLibraryRepository('redis://127.0.0.1:1', { keyPrefix: 'unused:' });
      await expect(repo.getApp('a')).rejects.toMatchObject({
        code: 'library_unavailable',
        status: 503,
        retryable: true,
      });
      await repo.close();
    });
  });
}

describe('RedisLibraryRepository against a server that never answers', () => {
  it('fails each call with 503 library_unavailable after commandTimeoutMs instead of hanging', async () => {
    // A stalled Redis, e.g. SIGSTOP or a full disk.
    const { port, close } = await startSilentServer();
    const repo = new RedisLibraryRepository(`redis://127.0.0.1:${port}`, { commandTimeoutMs: 300 });
    try {
      for (const call of [
        () => repo.getGroup('a', 'g'),
        () => repo.listGroups('a', { limit: 10 }),
        () => repo.deleteGroup('a', 'g'),
      ]) {
        const started = Date.now();
        await expect(call()).rejects.toMatchObject({ code: 'library_unavailable', status: 503, retryable: true });
        expect(Date.now() - started).toBeLessThan(5000);
      }
    } finally {
      await repo.close().catch(() => undefined);
      await close();
    }
  });
});
