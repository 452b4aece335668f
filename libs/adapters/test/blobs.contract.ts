import { randomBytes } from 'node:crypto';
import type { BlobStore } from '@facesearch/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

export interface BlobStoreFixture {
  store: BlobStore;
  /** Whether presignPut returns real URLs (S3) or null (the embedded store). */
  presigns: boolean;
  cleanup: () => Promise<void>;
}

const HOSTILE_KEYS = [
  '',
  '../escape.jpg',
  'app/../../escape.jpg',
  'app/group/..',
  './app/x.jpg',
  '/etc/passwd',
  'app\\group\\x.jpg',
  'app/gro\0up/x.jpg',
  'app/group/x\n.jpg',
  'app//x.jpg',
  'app/group/',
  'x'.repeat(1025),
];

const HOSTILE_PREFIXES = ['', '/', '../', 'app/../..', '/etc', 'a\\b', 'a\0', 'a//'];

async function rejectsWith(promise: Promise<unknown>, code: string, status: number): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code, status });
}

/**
 * The behaviour every BlobStore must have. The factory returns a ready store (bucket/root created). Keys are put
 * under a random namespace so suites can share a bucket; the fixture's cleanup removes what is left.
 */
export function describeBlobStoreContract(name: string, factory: () => Promise<BlobStoreFixture>, skip?: string): void {
  const suite = skip ? describe.skip : describe;
  suite(`BlobStore contract: ${name}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let fx: BlobStoreFixture;
    let store: BlobStore;
    let ns: string;
    const k = (key: string) => `${ns}/${key}`;

    beforeEach(async () => {
      fx = await factory();
      store = fx.store;
      ns = `t${randomBytes(6).toString('hex')}`;
    });
    afterEach(async () => {
      await store.deletePrefix(`${ns}/`).catch(() => undefined);
      await fx?.cleanup();
    });

    it('answers ping', async () => {
      await store.ping();
    });

    it('puts, gets and tells existence', async () => {
      const key = k('app/group/face.jpg');
      expect(await store.exists(key)).toBe(false);
      await store.put(key, Buffer.from('hello'), 'image/jpeg');
      expect(await store.exists(key)).toBe(true);
      expect((await store.get(key)).toString()).toBe('hello');
    });

    it('round-trips binary data exactly (every byte value, and 1 MiB of random bytes)', async () => {
      const allBytes = new Uint8Array(256).map((_, i) => i);
      await store.put(k('bin/all.bin'), allBytes);
      const got = await store.get(k('bin/all.bin'));
      expect(Buffer.isBuffer(got)).toBe(true);
      expect(Buffer.compare(got, Buffer.from(allBytes))).toBe(0);
      const big = randomBytes(1024 * 1024);
      // A view into a larger buffer: only the viewed bytes must be stored.
      const framed = Buffer.concat([Buffer.from('HEAD'), big, Buffer.from('TAIL')]);
      await store.put(k('bin/big.bin'), framed.subarray(4, 4 + big.length));
      expect(Buffer.compare(await store.get(k('bin/big.bin')), big)).toBe(0);
      await store.put(k('bin/empty.bin'), new Uint8Array(0));
      expect((await store.get(k('bin/empty.bin'))).length).toBe(0);
    });

    it('overwrites a key with the last bytes written', async () => {
      const key = k('app/g/over.jpg');
      await store.put(key, Buffer.from('first version, longer'));
      await store.put(key, Buffer.from('second'));
      expect((await store.get(key)).toString()).toBe('second');
      await Promise.all(['a', 'b', 'c', 'd'].map((c) => store.put(key, Buffer.alloc(4096, c))));
      const last = await store.get(key);
      expect(last.length).toBe(4096);
      expect(new Set(last.toString()).size).toBe(1);
    });

    it('accepts keys with spaces, unicode and dots in names', async () => {
      const key = k('app/group/Zoë Ångström.v2.JPG');
      await store.put(key, Buffer.from('ü'));
      expect((await store.get(key)).toString()).toBe('ü');
      expect(await store.exists(key)).toBe(true);
    });

    it('answers blob_not_found (404) for a missing key, and a "folder" is not a blob', async () => {
      await rejectsWith(store.get(k('nope/missing.jpg')), 'blob_not_found', 404);
      await store.put(k('dir/inner.jpg'), Buffer.from('x'));
      await rejectsWith(store.get(k('dir')), 'blob_not_found', 404);
      expect(await store.exists(k('dir'))).toBe(false);
    });

    it('copies a key to another: same bytes, the source stays', async () => {
      const body = randomBytes(64 * 1024);
      await store.put(k('uploads/src.jpg'), body, 'image/jpeg');
      await store.copy(k('uploads/src.jpg'), k('app/g/u/copy.jpg'));
      expect(Buffer.compare(await store.get(k('app/g/u/copy.jpg')), body)).toBe(0);
      expect(Buffer.compare(await store.get(k('uploads/src.jpg')), body)).toBe(0);
      // The copy is its own object: deleting the source leaves it.
      await store.delete(k('uploads/src.jpg'));
      expect(Buffer.compare(await store.get(k('app/g/u/copy.jpg')), body)).toBe(0);
    });

    it('copies over an existing key, replacing its bytes', async () => {
      await store.put(k('c/from.jpg'), Buffer.from('new'));
      await store.put(k('c/to.jpg'), Buffer.from('old and longer'));
      await store.copy(k('c/from.jpg'), k('c/to.jpg'));
      expect((await store.get(k('c/to.jpg'))).toString()).toBe('new');
      expect((await store.get(k('c/from.jpg'))).toString()).toBe('new');
    });

    it('answers blob_not_found (404) when copying a missing key, and writes nothing', async () => {
      await rejectsWith(store.copy(k('nope/missing.jpg'), k('c/target.jpg')), 'blob_not_found', 404);
      expect(await store.exists(k('c/target.jpg'))).toBe(false);
      await store.put(k('dir/inner.jpg'), Buffer.from('x'));
      await rejectsWith(store.copy(k('dir'), k('c/target.jpg')), 'blob_not_found', 404);
      expect(await store.exists(k('c/target.jpg'))).toBe(false);
    });

    it('deletes one key; deleting a missing key is fine', async () => {
      await store.put(k('a/1.jpg'), Buffer.from('1'));
      await store.put(k('a/2.jpg'), Buffer.from('2'));
      await store.delete(k('a/1.jpg'));
      expect(await store.exists(k('a/1.jpg'))).toBe(false);
      expect(await store.exists(k('a/2.jpg'))).toBe(true);
      await store.delete(k('a/1.jpg'));
      await store.delete(k('never/was.jpg'));
    });

    it('deletes by prefix with S3 semantics, leaving everything else', async () => {
      const keys = [
        'app/g1/a.jpg',
        'app/g1/u/b.jpg',
        'app/g1/u/deep/c.jpg',
        'app/g10/d.jpg',
        'app/g2/e.jpg',
        'app/g1.jpg',
      ];
      for (const key of keys) await store.put(k(key), Buffer.from(key));
      await store.deletePrefix(k('app/g1/'));
      const left = await Promise.all(keys.map(async (key) => [key, await store.exists(k(key))] as const));
      expect(left.filter(([, there]) => there).map(([key]) => key)).toEqual([
        'app/g10/d.jpg',
        'app/g2/e.jpg',
        'app/g1.jpg',
      ]);
      // Without a trailing slash, a prefix also matches names that merely start with it.
      await store.deletePrefix(k('app/g1'));
      expect(await store.exists(k('app/g10/d.jpg'))).toBe(false);
      expect(await store.exists(k('app/g1.jpg'))).toBe(false);
      expect(await store.exists(k('app/g2/e.jpg'))).toBe(true);
      await store.deletePrefix(k('nothing/here/'));
    });

    it('deletePrefix asks stillWanted before deleting, and keeps what is written under the prefix after listing', async () => {
      const old = ['app/re/u1/a.jpg', 'app/re/u2/b.jpg'];
      for (const key of old) await store.put(k(key), Buffer.from(key));
      // No longer wanted (the group made anew): nothing is deleted.
      await store.deletePrefix(k('app/re/'), { stillWanted: async () => false });
      for (const key of old) expect(await store.exists(k(key)), key).toBe(true);
      // Wanted, but the prefix is used again while the deletion runs: the new object stays (its folder too).
      let asked = 0;
      await store.deletePrefix(k('app/re/'), {
        stillWanted: async () => {
          if (asked++ === 0) await store.put(k('app/re/u3/new.jpg'), Buffer.from('new'));
          return true;
        },
      });
      for (const key of old) expect(await store.exists(k(key)), key).toBe(false);
      expect(await store.exists(k('app/re/u3/new.jpg'))).toBe(true);
      expect((await store.get(k('app/re/u3/new.jpg'))).toString()).toBe('new');
    });

    it('refuses hostile keys and prefixes with invalid_key (400) on every method', async () => {
      for (const key of HOSTILE_KEYS) {
        const shown = JSON.stringify(key.slice(0, 30));
        await expect(store.put(key, Buffer.from('x')), `put ${shown}`).rejects.toMatchObject({
          code: 'invalid_key',
          status: 400,
        });
        await expect(store.get(key), `get ${shown}`).rejects.toMatchObject({ code: 'invalid_key', status: 400 });
        await expect(store.exists(key), `exists ${shown}`).rejects.toMatchObject({ code: 'invalid_key' });
        await expect(store.delete(key), `delete ${shown}`).rejects.toMatchObject({ code: 'invalid_key' });
        await expect(store.presignPut(key, 60), `presign ${shown}`).rejects.toMatchObject({ code: 'invalid_key' });
        await expect(store.copy(key, k('ok.jpg')), `copy from ${shown}`).rejects.toMatchObject({ code: 'invalid_key' });
        await expect(store.copy(k('ok.jpg'), key), `copy to ${shown}`).rejects.toMatchObject({ code: 'invalid_key' });
      }
      for (const prefix of HOSTILE_PREFIXES) {
        await expect(store.deletePrefix(prefix), `deletePrefix ${JSON.stringify(prefix)}`).rejects.toMatchObject({
          code: 'invalid_key',
          status: 400,
        });
      }
    });

    it('presigns a PUT that uploads the bytes, and that expires', async () => {
      const key = k('uploads/presigned.jpg');
      const url = await store.presignPut(key, 60);
      if (!fx.presigns) {
        expect(url).toBeNull();
        return;
      }
      expect(url).toMatch(/^https?:\/\//);
      const body = randomBytes(2048);
      const res = await fetch(url as string, { method: 'PUT', body });
      expect(res.status).toBe(200);
      expect(Buffer.compare(await store.get(key), body)).toBe(0);
      // The signature covers the key: the same URL cannot write another object.
      const elsewhere = new URL(url as string);
      elsewhere.pathname = elsewhere.pathname.replace(/presigned\.jpg$/, 'other.jpg');
      expect((await fetch(elsewhere, { method: 'PUT', body })).status).toBe(403);
      expect(await store.exists(k('uploads/other.jpg'))).toBe(false);

      const shortLived = await store.presignPut(k('uploads/late.jpg'), 1);
      await new Promise((r) => setTimeout(r, 2500));
      const late = await fetch(shortLived as string, { method: 'PUT', body });
      expect(late.status).toBe(403);
      expect(await store.exists(k('uploads/late.jpg'))).toBe(false);
    });
  });
}
