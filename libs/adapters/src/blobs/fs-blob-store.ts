import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, copyFile, mkdir, open, readFile, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { type BlobStore, FaceSearchError } from '@facesearch/common';
import { blobNotFound, checkBlobKey, checkBlobPrefix } from './keys';

/** Temp files live next to their target (same filesystem, so rename is atomic) under this recognisable name. */
const TEMP_MARK = '.tmp-';

/** Blobs as files under a root folder: key `app/group/xyz.jpg` is `<root>/app/group/xyz.jpg`. */
export class FsBlobStore implements BlobStore {
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** Creates the root folder if needed. */
  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }

  /** Writes to a temp file, fsyncs it, then renames: readers see the old bytes or the new, never a torn file. */
  async put(key: string, data: Uint8Array): Promise<void> {
    await this.placeAtomically(key, async (temp) => {
      const handle = await open(temp, 'wx');
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
    });
  }

  /** Copies the file to a temp name next to the target (a reflink where the filesystem has them), then renames. */
  async copy(fromKey: string, toKey: string): Promise<void> {
    const source = this.pathOf(checkBlobKey(fromKey));
    await this.placeAtomically(toKey, async (temp) => {
      try {
        await copyFile(source, temp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      } catch (err) {
        // The target's folder exists and the temp name is fresh, so the failure is the source's unless it is a file.
        if (!(await this.exists(fromKey))) throw blobNotFound(fromKey);
        throw err;
      }
      const handle = await open(temp, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    });
  }

  async get(key: string): Promise<Buffer> {
    const path = this.pathOf(checkBlobKey(key));
    try {
      return await readFile(path);
    } catch (err) {
      // A "folder" (a prefix of other keys) is not a blob, as in S3.
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') throw blobNotFound(key);
      throw err;
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(checkBlobKey(key)))).isFile();
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(checkBlobKey(key)), { force: true });
  }

  /** Same meaning as an S3 prefix: `a/b/` removes the folder, `a/b` also removes `a/b.jpg` and `a/bc/...`. */
  async deletePrefix(prefix: string): Promise<void> {
    checkBlobPrefix(prefix);
    const cut = prefix.lastIndexOf('/');
    const dir = this.pathOf(prefix.slice(0, cut + 1));
    const start = prefix.slice(cut + 1);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    for (const name of names) {
      if (name.startsWith(start)) await rm(join(dir, name), { recursive: true, force: true });
    }
    if (start === '' && dir !== this.root) await rm(dir, { recursive: true, force: true });
  }

  async presignPut(key: string): Promise<string | null> {
    checkBlobKey(key);
    return null;
  }

  /** The root exists (created if needed, so a store nobody wrote to yet is ready) and is writable. */
  async ping(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    await access(this.root, constants.W_OK);
  }

  async close(): Promise<void> {}

  /** Lets `fill` create a temp file next to the key's path, then renames it into place (removing it on failure). */
  private async placeAtomically(key: string, fill: (temp: string) => Promise<void>): Promise<void> {
    const path = this.pathOf(checkBlobKey(key));
    await mkdir(dirname(path), { recursive: true }).catch((err) => {
      throw isFolderClash(err) ? keyClash(key) : err;
    });
    const temp = join(dirname(path), `${TEMP_MARK}${randomBytes(8).toString('hex')}`);
    try {
      await fill(temp);
      await rename(temp, path);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      if (isFolderClash(err)) throw keyClash(key);
      throw err;
    }
  }

  private pathOf(key: string): string {
    const path = resolve(this.root, key);
    // Belt and braces behind checkBlobKey: nothing outside the root, ever.
    if (path !== this.root && !path.startsWith(this.root + sep)) throw new Error(`Blob path escapes the root: ${key}`);
    return path;
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** A file cannot also be a folder: `a/b` and `a/b/c` cannot both be keys on disk (they can in S3). */
function isFolderClash(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'EISDIR' || code === 'ENOTDIR' || code === 'EEXIST';
}

function keyClash(key: string): FaceSearchError {
  return new FaceSearchError(
    'blob_key_conflict',
    `Blob key ${JSON.stringify(key)} clashes with an existing key that is a folder of it, or a file on its path.`,
    409,
  );
}
