/**
 * The one contract every LibraryRepository must pass (SQLite embedded, Redis distributed).
 * Each test gets a fresh, empty repository from the factory.
 */
import { createHash } from 'node:crypto';
import type {
  ApiKeyRecord,
  FaceRecord,
  ImportItemRecord,
  ImportRecord,
  LibraryRepository,
  Page,
  PageRequest,
} from '@facesearch/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

export interface LibraryRepositoryHarness {
  repo: LibraryRepository;
  /** Another, independent connection to the same storage: a second worker, or the service after a restart. */
  openAnother(): Promise<LibraryRepository>;
  /** Closes everything opened and removes what the test stored. */
  cleanup(): Promise<void>;
}

const T0 = '2025-01-01T00:00:00.000Z';
const T1 = '2025-01-02T00:00:00.000Z';
const T2 = '2025-01-03T00:00:00.000Z';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

const keyRecord = (appId: string, keyId: string, secret = `secret-${appId}-${keyId}`): ApiKeyRecord => ({
  key_id: keyId,
  app_id: appId,
  key_hash: sha256(secret),
  prefix: secret.slice(0, 6),
  created_at: T0,
  revoked_at: null,
});

const faceRecord = (appId: string, groupId: string, userId: string, faceId: string): FaceRecord => ({
  app_id: appId,
  group_id: groupId,
  user_id: userId,
  face_id: faceId,
  image_key: `images/${appId}/${faceId}.jpg`,
  box: { x: 10.25, y: 20.5, width: 100.125, height: 120.0625 },
  landmarks: {
    left_eye: { x: 40.1, y: 60.2 },
    right_eye: { x: 80.3, y: 60.4 },
    nose: { x: 60.123456789, y: 80.987654321 },
    mouth: { x: 60, y: 100 },
    mouth_left: { x: 45.5, y: 100.5 },
    mouth_right: { x: 75.5, y: 100.5 },
  },
  quality: {
    size: 100.125,
    blur: 312.9876543210987,
    yaw: -3.5,
    pitch: 1.25,
    roll: 0.1,
    score: 0.998877,
    level: 'HIGH',
  },
  model_id: 'arcface-r100@1',
  created_at: T0,
});

const importRecord = (appId: string, importId: string, total: number): ImportRecord => ({
  import_id: importId,
  app_id: appId,
  group_id: 'g1',
  status: 'queued',
  total,
  succeeded: 0,
  failed: 0,
  options: { quality_control: 'NORMAL' },
  created_at: T0,
  updated_at: T0,
});

const itemRecords = (importId: string, count: number): ImportItemRecord[] =>
  Array.from({ length: count }, (_, index) => ({
    import_id: importId,
    index,
    user_id: `u${index % 3}`,
    image_key: `uploads/${importId}/${index}.jpg`,
    name: index % 2 === 0 ? `photo ${index}.jpg` : null,
    status: 'pending',
    attempts: 0,
    face_id: null,
    error: null,
    updated_at: T0,
  }));

/** Reads every page of a listing, checking that pages are full until the last one. */
async function readAllPages<T>(list: (page: PageRequest) => Promise<Page<T>>, limit: number): Promise<T[][]> {
  const pages: T[][] = [];
  let cursor: string | null = null;
  do {
    const page: Page<T> = await list({ limit, cursor });
    pages.push(page.items);
    if (page.next_cursor !== null) expect(page.items).toHaveLength(limit);
    cursor = page.next_cursor;
    expect(pages.length).toBeLessThan(100);
  } while (cursor !== null);
  return pages;
}

async function expectError(promise: Promise<unknown>, code: string, status: number): Promise<void> {
  await expect(promise).rejects.toMatchObject({ name: 'FaceSearchError', code, status });
}

export function describeLibraryRepositoryContract(
  name: string,
  factory: () => Promise<LibraryRepositoryHarness>,
): void {
  describe(`LibraryRepository contract: ${name}`, () => {
    let harness: LibraryRepositoryHarness;
    let repo: LibraryRepository;

    beforeEach(async () => {
      harness = await factory();
      repo = harness.repo;
    });

    afterEach(async () => {
      await harness.cleanup();
    });

    it('answers ping', async () => {
      await expect(repo.ping()).resolves.toBeUndefined();
    });

    describe('apps', () => {
      it('creates, gets and rejects a second app with the same id', async () => {
        const app = { app_id: 'acme', name: 'Acme Corp', created_at: T0 };
        await repo.createApp(app);
        expect(await repo.getApp('acme')).toEqual(app);
        expect(await repo.getApp('other')).toBeNull();
        await expectError(repo.createApp({ ...app, name: 'Impostor' }), 'conflict', 409);
        expect(await repo.getApp('acme')).toEqual(app);
      });

      it('lists apps by id across several pages', async () => {
        const ids = ['m', 'a', 'Z', 'b-1', 'b_1', '0', 'zz', 'c'];
        for (const id of ids) await repo.createApp({ app_id: id, name: `app ${id}`, created_at: T0 });
        const pages = await readAllPages((p) => repo.listApps(p), 3);
        expect(pages.map((p) => p.length)).toEqual([3, 3, 2]);
        // Byte order: digits < upper case < '-' ... the same in SQLite (BINARY) and Redis (ZRANGEBYLEX).
        expect(pages.flat().map((a) => a.app_id)).toEqual([...ids].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
      });

      it('ends with next_cursor null when the last page is exactly full', async () => {
        for (const id of ['a', 'b', 'c', 'd']) await repo.createApp({ app_id: id, name: id, created_at: T0 });
        const first = await repo.listApps({ limit: 2 });
        expect(first.next_cursor).not.toBeNull();
        const second = await repo.listApps({ limit: 2, cursor: first.next_cursor });
        expect(second.items.map((a) => a.app_id)).toEqual(['c', 'd']);
        expect(second.next_cursor).toBeNull();
        const all = await repo.listApps({ limit: 1000 });
        expect(all).toEqual({ items: expect.any(Array), next_cursor: null });
        expect(all.items).toHaveLength(4);
      });

      it('returns an empty last page for an empty listing', async () => {
        expect(await repo.listApps({ limit: 10 })).toEqual({ items: [], next_cursor: null });
      });

      it('keeps pagination stable when records are added before the cursor', async () => {
        for (const id of ['b', 'd', 'f']) await repo.createApp({ app_id: id, name: id, created_at: T0 });
        const first = await repo.listApps({ limit: 2 });
        expect(first.items.map((a) => a.app_id)).toEqual(['b', 'd']);
        await repo.createApp({ app_id: 'a', name: 'a', created_at: T0 });
        await repo.createApp({ app_id: 'e', name: 'e', created_at: T0 });
        const second = await repo.listApps({ limit: 2, cursor: first.next_cursor });
        expect(second.items.map((a) => a.app_id)).toEqual(['e', 'f']);
      });

      it('rejects a bad limit or cursor', async () => {
        for (const limit of [0, -1, 1001, 1.5, Number.NaN]) {
          await expectError(repo.listApps({ limit }), 'invalid_limit', 400);
        }
        await expectError(repo.listApps({ limit: 10, cursor: 'not a cursor!' }), 'invalid_cursor', 400);
        await expectError(
          repo.listApps({ limit: 10, cursor: Buffer.from('a:b').toString('base64url') }),
          'invalid_cursor',
          400,
        );
        await expectError(repo.listImportItems('imp', {}, { limit: 10, cursor: 'eA' }), 'invalid_cursor', 400);
      });

      it('rejects ids outside the id alphabet', async () => {
        await expectError(repo.createApp({ app_id: 'a:b', name: 'x', created_at: T0 }), 'invalid_id', 400);
        await expectError(repo.createApp({ app_id: '', name: 'x', created_at: T0 }), 'invalid_id', 400);
        await expectError(repo.createApp({ app_id: 'x'.repeat(129), name: 'x', created_at: T0 }), 'invalid_id', 400);
        await expectError(repo.createGroup({ app_id: 'a', group_id: 'g/1', created_at: T0 }), 'invalid_id', 400);
      });
    });

    describe('api keys', () => {
      it('creates keys, finds them by hash and lists them per app by key id', async () => {
        const k2 = keyRecord('app1', 'k2');
        const k1 = keyRecord('app1', 'k1');
        const other = keyRecord('app2', 'k1');
        await repo.createKey(k2);
        await repo.createKey(k1);
        await repo.createKey(other);
        expect(await repo.findKeyByHash(k1.key_hash)).toEqual(k1);
        expect(await repo.findKeyByHash(other.key_hash)).toEqual(other);
        expect(await repo.findKeyByHash(sha256('unknown'))).toBeNull();
        expect(await repo.listKeys('app1')).toEqual([k1, k2]);
        expect(await repo.listKeys('app2')).toEqual([other]);
        expect(await repo.listKeys('none')).toEqual([]);
      });

      it('rejects a second key with the same hash or the same key id in an app', async () => {
        const k1 = keyRecord('app1', 'k1', 'the-secret');
        await repo.createKey(k1);
        await expectError(repo.createKey({ ...keyRecord('app2', 'k9', 'the-secret') }), 'conflict', 409);
        await expectError(repo.createKey(keyRecord('app1', 'k1', 'another-secret')), 'conflict', 409);
        await expectError(repo.createKey({ ...k1, key_id: 'k2', key_hash: 'not-hex' }), 'invalid_key_hash', 400);
        expect(await repo.listKeys('app1')).toEqual([k1]);
      });

      it('revokes a key of its own app only, keeping the first revocation time', async () => {
        const k1 = keyRecord('app1', 'k1');
        await repo.createKey(k1);
        expect(await repo.revokeKey('app2', 'k1', T1)).toBe(false);
        expect(await repo.revokeKey('app1', 'missing', T1)).toBe(false);
        expect((await repo.findKeyByHash(k1.key_hash))?.revoked_at).toBeNull();
        expect(await repo.revokeKey('app1', 'k1', T1)).toBe(true);
        expect(await repo.findKeyByHash(k1.key_hash)).toEqual({ ...k1, revoked_at: T1 });
        expect(await repo.revokeKey('app1', 'k1', T2)).toBe(true);
        expect((await repo.listKeys('app1'))[0]?.revoked_at).toBe(T1);
      });
    });

    describe('groups', () => {
      it('creates, gets, rejects duplicates and keeps apps apart', async () => {
        const g = { app_id: 'appA', group_id: 'staff', created_at: T0 };
        await repo.createGroup(g);
        expect(await repo.getGroup('appA', 'staff')).toEqual(g);
        await expectError(repo.createGroup({ ...g, created_at: T1 }), 'conflict', 409);
        // Same group id in app B: its own group; A's is invisible to B.
        expect(await repo.getGroup('appB', 'staff')).toBeNull();
        expect((await repo.listGroups('appB', { limit: 10 })).items).toEqual([]);
        await repo.createGroup({ app_id: 'appB', group_id: 'staff', created_at: T1 });
        expect(await repo.getGroup('appB', 'staff')).toEqual({ app_id: 'appB', group_id: 'staff', created_at: T1 });
        expect(await repo.getGroup('appA', 'staff')).toEqual(g);
      });

      it('lists groups by id across several pages, per app', async () => {
        const ids = Array.from({ length: 11 }, (_, i) => `g${String(10 - i).padStart(2, '0')}`);
        for (const id of ids) await repo.createGroup({ app_id: 'appA', group_id: id, created_at: T0 });
        await repo.createGroup({ app_id: 'appB', group_id: 'g00x', created_at: T0 });
        const pages = await readAllPages((p) => repo.listGroups('appA', p), 4);
        expect(pages.map((p) => p.length)).toEqual([4, 4, 3]);
        expect(pages.flat().map((g) => g.group_id)).toEqual([...ids].sort());
        expect(pages.flat().every((g) => g.app_id === 'appA')).toBe(true);
      });

      it('deleteGroup removes its users and faces, returns the face ids, and leaves other groups and apps', async () => {
        for (const app of ['appA', 'appB']) {
          for (const group of ['g1', 'g2']) {
            await repo.createGroup({ app_id: app, group_id: group, created_at: T0 });
            for (const user of ['u1', 'u2']) {
              await repo.upsertUser({
                app_id: app,
                group_id: group,
                user_id: user,
                user_info: null,
                created_at: T0,
                updated_at: T0,
              });
              for (const n of [1, 2]) await repo.addFace(faceRecord(app, group, user, `${app}-${group}-${user}-f${n}`));
            }
          }
        }
        const removed = await repo.deleteGroup('appA', 'g1');
        expect([...removed].sort()).toEqual(['appA-g1-u1-f1', 'appA-g1-u1-f2', 'appA-g1-u2-f1', 'appA-g1-u2-f2']);
        expect(await repo.getGroup('appA', 'g1')).toBeNull();
        expect(await repo.getUser('appA', 'g1', 'u1')).toBeNull();
        expect((await repo.listUsers('appA', 'g1', { limit: 10 })).items).toEqual([]);
        expect(await repo.listFaces('appA', 'g1', 'u1')).toEqual([]);
        expect(await repo.getFace('appA', 'appA-g1-u1-f1')).toBeNull();
        // Untouched: the other group of the app, and the same group id in the other app.
        expect(await repo.getGroup('appA', 'g2')).not.toBeNull();
        expect(await repo.listFaces('appA', 'g2', 'u1')).toHaveLength(2);
        expect(await repo.getGroup('appB', 'g1')).not.toBeNull();
        expect((await repo.listUsers('appB', 'g1', { limit: 10 })).items).toHaveLength(2);
        expect(await repo.listFaces('appB', 'g1', 'u2')).toHaveLength(2);
        expect((await repo.listGroups('appA', { limit: 10 })).items.map((g) => g.group_id)).toEqual(['g2']);
        // A group can be created again after deletion, empty.
        await repo.createGroup({ app_id: 'appA', group_id: 'g1', created_at: T1 });
        expect((await repo.listUsers('appA', 'g1', { limit: 10 })).items).toEqual([]);
        expect(await repo.deleteGroup('appA', 'missing')).toEqual([]);
      });
    });

    describe('users', () => {
      it('creates on first upsert and updates user_info and updated_at later, keeping created_at', async () => {
        const created = await repo.upsertUser({
          app_id: 'a',
          group_id: 'g',
          user_id: 'alice',
          user_info: 'first',
          created_at: T0,
          updated_at: T0,
        });
        expect(created).toEqual({
          app_id: 'a',
          group_id: 'g',
          user_id: 'alice',
          user_info: 'first',
          created_at: T0,
          updated_at: T0,
        });
        const updated = await repo.upsertUser({
          app_id: 'a',
          group_id: 'g',
          user_id: 'alice',
          user_info: 'ünïcødé "quoted" / {json}',
          created_at: T1,
          updated_at: T1,
        });
        expect(updated).toEqual({ ...created, user_info: 'ünïcødé "quoted" / {json}', updated_at: T1 });
        expect(await repo.getUser('a', 'g', 'alice')).toEqual(updated);
        const cleared = await repo.upsertUser({ ...updated, user_info: null, updated_at: T2 });
        expect(cleared.user_info).toBeNull();
        expect(cleared.created_at).toBe(T0);
      });

      it('leaves user_info as it is when the upsert passes undefined', async () => {
        await repo.upsertUser({
          app_id: 'a',
          group_id: 'g',
          user_id: 'bob',
          user_info: 'keep me',
          created_at: T0,
          updated_at: T0,
        });
        const user = {
          app_id: 'a',
          group_id: 'g',
          user_id: 'bob',
          created_at: T1,
          updated_at: T1,
        } as unknown as Parameters<LibraryRepository['upsertUser']>[0];
        const result = await repo.upsertUser(user);
        expect(result).toEqual({
          app_id: 'a',
          group_id: 'g',
          user_id: 'bob',
          user_info: 'keep me',
          created_at: T0,
          updated_at: T1,
        });
        const fresh = await repo.upsertUser({ ...user, user_id: 'carol' });
        expect(fresh.user_info).toBeNull();
      });

      it('lists users by id across several pages, per app and group', async () => {
        const ids = Array.from({ length: 7 }, (_, i) => `user-${7 - i}`);
        for (const id of ids) {
          await repo.upsertUser({
            app_id: 'a',
            group_id: 'g',
            user_id: id,
            user_info: null,
            created_at: T0,
            updated_at: T0,
          });
        }
        await repo.upsertUser({
          app_id: 'a',
          group_id: 'other',
          user_id: 'x',
          user_info: null,
          created_at: T0,
          updated_at: T0,
        });
        await repo.upsertUser({
          app_id: 'b',
          group_id: 'g',
          user_id: 'y',
          user_info: null,
          created_at: T0,
          updated_at: T0,
        });
        const pages = await readAllPages((p) => repo.listUsers('a', 'g', p), 2);
        expect(pages.map((p) => p.length)).toEqual([2, 2, 2, 1]);
        expect(pages.flat().map((u) => u.user_id)).toEqual([...ids].sort());
        expect(await repo.getUser('b', 'g', 'user-1')).toBeNull();
      });

      it('deleteUser removes the user and its faces only, returning the face ids', async () => {
        for (const user of ['u1', 'u10', 'u2']) {
          await repo.upsertUser({
            app_id: 'a',
            group_id: 'g',
            user_id: user,
            user_info: null,
            created_at: T0,
            updated_at: T0,
          });
          await repo.addFace(faceRecord('a', 'g', user, `${user}-f1`));
          await repo.addFace(faceRecord('a', 'g', user, `${user}-f2`));
        }
        // Same user id in another group and another app.
        await repo.addFace(faceRecord('a', 'g2', 'u1', 'g2-u1-f1'));
        await repo.addFace(faceRecord('b', 'g', 'u1', 'b-u1-f1'));
        const removed = await repo.deleteUser('a', 'g', 'u1');
        expect([...removed].sort()).toEqual(['u1-f1', 'u1-f2']);
        expect(await repo.getUser('a', 'g', 'u1')).toBeNull();
        expect(await repo.listFaces('a', 'g', 'u1')).toEqual([]);
        expect(await repo.getFace('a', 'u1-f1')).toBeNull();
        // 'u10' shares the prefix 'u1': it must survive.
        expect((await repo.listFaces('a', 'g', 'u10')).map((f) => f.face_id)).toEqual(['u10-f1', 'u10-f2']);
        expect(await repo.listFaces('a', 'g', 'u2')).toHaveLength(2);
        expect(await repo.listFaces('a', 'g2', 'u1')).toHaveLength(1);
        expect(await repo.listFaces('b', 'g', 'u1')).toHaveLength(1);
        expect((await repo.listUsers('a', 'g', { limit: 10 })).items.map((u) => u.user_id)).toEqual(['u10', 'u2']);
        expect(await repo.deleteUser('a', 'g', 'u1')).toEqual([]);
      });
    });

    describe('faces', () => {
      it('stores a face exactly, rejects a duplicate id, and keeps apps apart', async () => {
        const face = faceRecord('a', 'g', 'u', 'face-1');
        await repo.addFace(face);
        expect(await repo.getFace('a', 'face-1')).toEqual(face);
        expect(await repo.getFace('b', 'face-1')).toBeNull();
        await expectError(repo.addFace({ ...face, user_id: 'someone-else' }), 'conflict', 409);
        expect(await repo.listFaces('a', 'g', 'someone-else')).toEqual([]);
        // The same face id in another app is another face.
        await repo.addFace({ ...face, app_id: 'b' });
        expect(await repo.getFace('b', 'face-1')).toEqual({ ...face, app_id: 'b' });
      });

      it('keeps maxFacesPerUser when faces are added at once, per user, and answers a repeat with conflict', async () => {
        const adds = Array.from({ length: 6 }, (_, i) =>
          repo.addFace(faceRecord('a', 'g', 'u', `limit-${i}`), { maxFacesPerUser: 3 }).then(
            () => 'added',
            (err: { code?: string }) => err.code,
          ),
        );
        const outcomes = await Promise.all(adds);
        expect(outcomes.filter((o) => o === 'added')).toHaveLength(3);
        expect(outcomes.filter((o) => o === 'too_many_faces')).toHaveLength(3);
        expect(await repo.listFaces('a', 'g', 'u')).toHaveLength(3);
        // Another user of the group, and the same user elsewhere, have their own counts.
        await repo.addFace(faceRecord('a', 'g', 'u2', 'limit-other'), { maxFacesPerUser: 3 });
        await repo.addFace(faceRecord('a', 'g2', 'u', 'limit-g2'), { maxFacesPerUser: 3 });
        // A face already there is a conflict, not a count: a repeated delivery stays recognisable.
        const [kept] = await repo.listFaces('a', 'g', 'u');
        await expectError(repo.addFace(kept, { maxFacesPerUser: 3 }), 'conflict', 409);
      });

      it('keeps a face without the optional mouth corners as it is', async () => {
        const face = faceRecord('a', 'g', 'u', 'blaze');
        delete face.landmarks.mouth_left;
        delete face.landmarks.mouth_right;
        await repo.addFace(face);
        expect(await repo.getFace('a', 'blaze')).toEqual(face);
      });

      it("lists a user's faces by id and deletes one face", async () => {
        for (const id of ['f3', 'f1', 'f2']) await repo.addFace(faceRecord('a', 'g', 'u', id));
        await repo.addFace(faceRecord('a', 'g', 'u-2', 'f0'));
        expect((await repo.listFaces('a', 'g', 'u')).map((f) => f.face_id)).toEqual(['f1', 'f2', 'f3']);
        expect(await repo.deleteFace('b', 'f1')).toBe(false);
        expect(await repo.deleteFace('a', 'f1')).toBe(true);
        expect(await repo.deleteFace('a', 'f1')).toBe(false);
        expect((await repo.listFaces('a', 'g', 'u')).map((f) => f.face_id)).toEqual(['f2', 'f3']);
        // Deleted faces no longer count in cascades.
        expect([...(await repo.deleteGroup('a', 'g'))].sort()).toEqual(['f0', 'f2', 'f3']);
      });

      it('updateFace rewrites box, landmarks, quality and model id only, and not a missing face', async () => {
        const face = faceRecord('a', 'g', 'u', 'rf');
        await repo.addFace(face);
        const updated = {
          ...face,
          image_key: 'ignored',
          created_at: '2000-01-01T00:00:00.000Z',
          box: { x: 1, y: 2, width: 3, height: 4 },
          quality: { ...face.quality, level: 'LOW' as const },
          model_id: 'model-2',
        };
        expect(await repo.updateFace(updated)).toBe(true);
        expect(await repo.getFace('a', 'rf')).toEqual({
          ...face,
          box: updated.box,
          quality: updated.quality,
          model_id: 'model-2',
        });
        expect(await repo.updateFace({ ...updated, app_id: 'b' })).toBe(false);
        expect(await repo.getFace('b', 'rf')).toBeNull();
        await repo.deleteFace('a', 'rf');
        expect(await repo.updateFace(updated)).toBe(false);
        expect(await repo.getFace('a', 'rf')).toBeNull();
      });
    });

    describe('imports', () => {
      it('creates an import with its items, visible to its own app only, and rejects a duplicate id', async () => {
        const job = importRecord('appA', 'imp1', 5);
        const items = itemRecords('imp1', 5);
        await repo.createImport(job, items);
        expect(await repo.getImport('appA', 'imp1')).toEqual(job);
        expect(await repo.getImport('appB', 'imp1')).toBeNull();
        expect(await repo.getImport('appA', 'missing')).toBeNull();
        expect(await repo.getImportItem('imp1', 2)).toEqual(items[2]);
        expect(await repo.getImportItem('imp1', 3)).toEqual(items[3]);
        expect(await repo.getImportItem('imp1', 5)).toBeNull();
        await expectError(repo.createImport({ ...job, app_id: 'appB' }, []), 'conflict', 409);
        expect(await repo.getImport('appB', 'imp1')).toBeNull();
        await expectError(
          repo.createImport(importRecord('appA', 'imp2', 2), [
            items[0] as ImportItemRecord,
            items[0] as ImportItemRecord,
          ]),
          'invalid_import_item',
          400,
        );
        expect(await repo.getImport('appA', 'imp2')).toBeNull();
      });

      it('creates a large import (several write chunks) completely, and only once', async () => {
        const items = itemRecords('big', 2500);
        await repo.createImport(importRecord('a', 'big', 2500), items);
        const pages = await readAllPages((p) => repo.listImportItems('big', { status: 'pending' }, p), 1000);
        expect(pages.map((p) => p.length)).toEqual([1000, 1000, 500]);
        expect(pages.flat()[2499]).toEqual(items[2499]);
        await expectError(repo.createImport(importRecord('a', 'big', 2500), items), 'conflict', 409);
        expect(await repo.getImport('a', 'big')).toMatchObject({ total: 2500, succeeded: 0 });
      });

      it('lists items by index across pages, filtered by status', async () => {
        await repo.createImport(importRecord('a', 'imp', 25), itemRecords('imp', 25));
        const all = await readAllPages((p) => repo.listImportItems('imp', {}, p), 10);
        expect(all.map((p) => p.length)).toEqual([10, 10, 5]);
        expect(all.flat().map((i) => i.index)).toEqual(Array.from({ length: 25 }, (_, i) => i));

        for (const index of [3, 7, 11, 12, 19, 24]) {
          expect(
            await repo.finishImportItem(
              'imp',
              index,
              { status: 'failed', error: { code: 'image_corrupt', message: 'bad' }, attempts: 2 },
              T1,
            ),
          ).toBe(true);
        }
        for (const index of [0, 1, 2]) {
          expect(
            await repo.finishImportItem(
              'imp',
              index,
              { status: 'succeeded', face_id: `face-${index}`, attempts: 1 },
              T1,
            ),
          ).toBe(true);
        }
        const failed = await readAllPages((p) => repo.listImportItems('imp', { status: 'failed' }, p), 4);
        expect(failed.map((p) => p.length)).toEqual([4, 2]);
        expect(failed.flat().map((i) => i.index)).toEqual([3, 7, 11, 12, 19, 24]);
        expect(failed.flat()[0]).toEqual({
          ...itemRecords('imp', 25)[3],
          status: 'failed',
          attempts: 2,
          error: { code: 'image_corrupt', message: 'bad' },
          updated_at: T1,
        });
        const succeeded = await repo.listImportItems('imp', { status: 'succeeded' }, { limit: 3 });
        expect(succeeded.items.map((i) => [i.index, i.face_id])).toEqual([
          [0, 'face-0'],
          [1, 'face-1'],
          [2, 'face-2'],
        ]);
        expect(succeeded.next_cursor).toBeNull();
        const pending = await readAllPages((p) => repo.listImportItems('imp', { status: 'pending' }, p), 10);
        expect(pending.flat()).toHaveLength(16);
        expect(pending.flat().some((i) => [0, 3, 24].includes(i.index))).toBe(false);
        expect(await repo.listImportItems('imp', { status: 'cancelled' }, { limit: 10 })).toEqual({
          items: [],
          next_cursor: null,
        });
        expect(await repo.listImportItems('missing', {}, { limit: 10 })).toEqual({ items: [], next_cursor: null });
        const job = await repo.getImport('a', 'imp');
        expect(job).toMatchObject({ succeeded: 3, failed: 6, total: 25, updated_at: T1 });
      });

      it('finishImportItem counts an item once even when delivered twice', async () => {
        await repo.createImport(importRecord('a', 'imp', 3), itemRecords('imp', 3));
        expect(await repo.finishImportItem('imp', 0, { status: 'succeeded', face_id: 'f0', attempts: 1 }, T1)).toBe(
          true,
        );
        expect(
          await repo.finishImportItem('imp', 0, { status: 'succeeded', face_id: 'f0-again', attempts: 2 }, T2),
        ).toBe(false);
        expect(
          await repo.finishImportItem(
            'imp',
            0,
            { status: 'failed', error: { code: 'x', message: 'y' }, attempts: 3 },
            T2,
          ),
        ).toBe(false);
        expect(await repo.getImportItem('imp', 0)).toMatchObject({
          status: 'succeeded',
          face_id: 'f0',
          attempts: 1,
          error: null,
          updated_at: T1,
        });
        expect(await repo.finishImportItem('imp', 1, { status: 'cancelled', attempts: 0 }, T1)).toBe(true);
        expect(await repo.finishImportItem('imp', 1, { status: 'succeeded', face_id: 'late', attempts: 1 }, T2)).toBe(
          false,
        );
        expect(await repo.finishImportItem('imp', 99, { status: 'succeeded', attempts: 1 }, T1)).toBe(false);
        expect(await repo.finishImportItem('missing', 0, { status: 'succeeded', attempts: 1 }, T1)).toBe(false);
        expect(await repo.getImport('a', 'imp')).toMatchObject({ succeeded: 1, failed: 0 });
      });

      it('finishImportItem counts once under concurrent calls, also from another connection', async () => {
        await repo.createImport(importRecord('a', 'imp', 4), itemRecords('imp', 4));
        const other = await harness.openAnother();
        try {
          for (const index of [0, 1, 2, 3]) {
            const status = index % 2 === 0 ? 'succeeded' : 'failed';
            const results = await Promise.all(
              Array.from({ length: 8 }, (_, n) =>
                (n % 2 === 0 ? repo : other).finishImportItem(
                  'imp',
                  index,
                  { status, face_id: status === 'succeeded' ? `f${index}-${n}` : null, attempts: n + 1 },
                  T1,
                ),
              ),
            );
            expect(results.filter(Boolean)).toHaveLength(1);
          }
          expect(await repo.getImport('a', 'imp')).toMatchObject({ succeeded: 2, failed: 2 });
          expect(await other.getImport('a', 'imp')).toMatchObject({ succeeded: 2, failed: 2 });
          const page = await repo.listImportItems('imp', { status: 'pending' }, { limit: 10 });
          expect(page.items).toEqual([]);
        } finally {
          await other.close();
        }
      });

      it('lists unfinished imports of every app and follows status changes', async () => {
        await repo.createImport(importRecord('appA', 'imp-b', 1), itemRecords('imp-b', 1));
        await repo.createImport(importRecord('appB', 'imp-a', 1), itemRecords('imp-a', 1));
        await repo.createImport({ ...importRecord('appA', 'imp-c', 0), status: 'completed' }, []);
        expect((await repo.listUnfinishedImports()).map((j) => j.import_id)).toEqual(['imp-a', 'imp-b']);
        await repo.setImportStatus('imp-b', 'running', T1);
        expect(await repo.getImport('appA', 'imp-b')).toMatchObject({ status: 'running', updated_at: T1 });
        expect((await repo.listUnfinishedImports()).map((j) => [j.import_id, j.status])).toEqual([
          ['imp-a', 'queued'],
          ['imp-b', 'running'],
        ]);
        await repo.setImportStatus('imp-a', 'cancelled', T2);
        await repo.setImportStatus('imp-b', 'completed', T2);
        expect(await repo.listUnfinishedImports()).toEqual([]);
        await repo.setImportStatus('imp-c', 'queued', T2);
        expect((await repo.listUnfinishedImports()).map((j) => j.import_id)).toEqual(['imp-c']);
        await expectError(repo.setImportStatus('missing', 'running', T1), 'import_not_found', 404);
      });
    });

    it('keeps everything for another connection after close (a restart)', async () => {
      await repo.createApp({ app_id: 'a', name: 'A', created_at: T0 });
      await repo.createGroup({ app_id: 'a', group_id: 'g', created_at: T0 });
      await repo.addFace(faceRecord('a', 'g', 'u', 'f'));
      await repo.createImport(importRecord('a', 'imp', 2), itemRecords('imp', 2));
      await repo.finishImportItem('imp', 1, { status: 'succeeded', face_id: 'f', attempts: 1 }, T1);
      await repo.close();
      const reopened = await harness.openAnother();
      try {
        expect(await reopened.getApp('a')).toMatchObject({ name: 'A' });
        expect(await reopened.getFace('a', 'f')).toEqual(faceRecord('a', 'g', 'u', 'f'));
        expect(await reopened.getImport('a', 'imp')).toMatchObject({ succeeded: 1 });
        expect((await reopened.listUnfinishedImports()).map((j) => j.import_id)).toEqual(['imp']);
      } finally {
        await reopened.close();
      }
    });
  });
}
