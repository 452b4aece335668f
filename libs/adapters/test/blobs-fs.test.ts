import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsBlobStore } from '@facesearch/adapters';
import { describe, expect, it } from 'vitest';
import { describeBlobStoreContract } from './blobs.contract';

describeBlobStoreContract('FsBlobStore', async () => {
  const root = mkdtempSync(join(tmpdir(), 'facesearch-blobs-'));
  const store = new FsBlobStore(join(root, 'blobs'));
  await store.init();
  return { store, presigns: false, cleanup: async () => rmSync(root, { recursive: true, force: true }) };
});

describe('FsBlobStore specifics', () => {
  it('stores keys as files under the root, leaves no temp files, and never writes outside it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'facesearch-blobs-'));
    try {
      const store = new FsBlobStore(join(root, 'blobs'));
      await store.init();
      await store.put('app/group/x.jpg', Buffer.from('x'));
      expect(readdirSync(join(root, 'blobs/app/group'))).toEqual(['x.jpg']);
      await store.copy('app/group/x.jpg', 'app/group/y.jpg');
      await expect(store.copy('app/group/missing.jpg', 'app/group/z.jpg')).rejects.toMatchObject({
        code: 'blob_not_found',
      });
      expect(readdirSync(join(root, 'blobs/app/group')).sort()).toEqual(['x.jpg', 'y.jpg']);
      await expect(store.put('../outside.jpg', Buffer.from('x'))).rejects.toMatchObject({ code: 'invalid_key' });
      expect(existsSync(join(root, 'outside.jpg'))).toBe(false);
      await store.deletePrefix('app/');
      expect(readdirSync(join(root, 'blobs'))).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('answers blob_key_conflict (409) when a key would be both a file and a folder', async () => {
    const root = mkdtempSync(join(tmpdir(), 'facesearch-blobs-'));
    try {
      const store = new FsBlobStore(root);
      await store.put('a/b.jpg', Buffer.from('file'));
      await expect(store.put('a/b.jpg/c.jpg', Buffer.from('x'))).rejects.toMatchObject({
        code: 'blob_key_conflict',
        status: 409,
      });
      await expect(store.put('a', Buffer.from('x'))).rejects.toMatchObject({ code: 'blob_key_conflict', status: 409 });
      expect(readdirSync(join(root, 'a'))).toEqual(['b.jpg']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
