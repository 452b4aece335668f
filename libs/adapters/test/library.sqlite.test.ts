import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LIBRARY_SCHEMA_VERSION, SqliteLibraryRepository } from '@facesearch/adapters';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeLibraryRepositoryContract } from './library.contract';

let dir: string;
let counter = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fs-library-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const newFile = () => join(dir, `library-${++counter}.db`);

describeLibraryRepositoryContract('SqliteLibraryRepository', async () => {
  const file = newFile();
  const opened: SqliteLibraryRepository[] = [];
  const open = () => {
    const repo = new SqliteLibraryRepository(file);
    opened.push(repo);
    return repo;
  };
  return {
    repo: open(),
    openAnother: async () => open(),
    cleanup: async () => {
      for (const repo of opened) await repo.close();
      rmSync(file, { force: true });
      rmSync(`${file}-wal`, { force: true });
      rmSync(`${file}-shm`, { force: true });
    },
  };
});

describe('SqliteLibraryRepository specifics', () => {
  it('opens the file in WAL mode and records the schema version once', async () => {
    const file = newFile();
    const repo = new SqliteLibraryRepository(file);
    expect(repo.db.pragma('journal_mode', { simple: true })).toBe('wal');
    await repo.createApp({ app_id: 'a', name: 'A', created_at: 'now' });
    await repo.close();
    const again = new SqliteLibraryRepository(file);
    const versions = again.db.prepare('SELECT version FROM lib_schema_version').all();
    expect(versions).toEqual([{ version: LIBRARY_SCHEMA_VERSION }]);
    expect(await again.getApp('a')).toEqual({ app_id: 'a', name: 'A', created_at: 'now' });
    await again.close();
    expect(again.db.open).toBe(false);
  });

  it('refuses a database written by a newer schema', () => {
    const file = newFile();
    const db = new Database(file);
    db.exec('CREATE TABLE lib_schema_version (version INTEGER NOT NULL); INSERT INTO lib_schema_version VALUES (999);');
    expect(() => new SqliteLibraryRepository(db)).toThrow(expect.objectContaining({ code: 'library_schema_too_new' }));
    db.close();
  });

  it('shares a connection with other adapters and leaves it open on close', async () => {
    const db = new Database(newFile());
    db.exec('CREATE TABLE other_adapter (x INTEGER)');
    const repo = new SqliteLibraryRepository(db);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    await repo.createGroup({ app_id: 'a', group_id: 'g', created_at: 'now' });
    // Both see one database: a transaction of the other adapter can include library rows.
    db.transaction(() => {
      db.prepare('INSERT INTO other_adapter VALUES (1)').run();
      db.prepare("INSERT INTO lib_groups VALUES ('a', 'g2', 'now')").run();
    })();
    expect((await repo.listGroups('a', { limit: 10 })).items.map((g) => g.group_id)).toEqual(['g', 'g2']);
    await repo.close();
    expect(db.open).toBe(true);
    expect(db.prepare('SELECT count(*) AS n FROM lib_groups').get()).toEqual({ n: 2 });
    // A second repository on the same connection finds the schema in place.
    const second = new SqliteLibraryRepository(db);
    expect(await second.getGroup('a', 'g')).not.toBeNull();
    db.close();
  });
});
