import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import {
  access,
  copyFile,
  lstat,
  mkdir,
  open,
  readFile,
  readdir,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
} from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { type BlobStore, FaceSearchError } from '@facesearch/common';
import { blobNotFound, checkBlobKey, checkBlobPrefix } from './keys';

/** Temp files live next to their target (same filesystem, so rename is atomic) under this recognisable name. */
const TEMP_MARK = '.tmp-';
/** Files deletePrefix removes between two questions to its `stillWanted`. */
const DELETE_BATCH = 1000;

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

  /**
   * Same meaning as an S3 prefix: `a/b/` removes the folder, `a/b` also removes `a/b.jpg` and `a/bc/...`. Files go
   * one listed batch at a time (see BlobStore.deletePrefix), then the folders left empty; a folder someone writes
   * into meanwhile stays.
   */
  async deletePrefix(prefix: string, options: { stillWanted?: () => Promise<boolean> } = {}): Promise<void> {
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
    const tops = names.filter((name) => name.startsWith(start)).map((name) => join(dir, name));
    const folders: string[] = [];
    let batch: string[] = [];
    const flush = async (): Promise<boolean> => {
      if (batch.length === 0) return true;
      if (options.stillWanted && !(await options.stillWanted())) return false;
      await Promise.all(batch.map((file) => rm(file, { force: true })));
      batch = [];
      return true;
    };
    for await (const entry of walk(tops, folders)) {
      batch.push(entry);
      if (batch.length >= DELETE_BATCH && !(await flush())) return;
    }
    if (!(await flush())) return;
    // Deepest first; a folder that is not empty (written into meanwhile) or already gone is left as it is.
    if (start === '' && dir !== this.root) folders.push(dir);
    for (const folder of folders.sort((a, b) => b.length - a.length)) await rmdir(folder).catch(() => undefined);
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
  private async placeAtomically(key: string, fill: (temp: string) => Promise<void>, attempt = 1): Promise<void> {
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
      // The folder was removed between its mkdir and the write (a deletePrefix emptying it): make it again.
      if (isMissing(err) && attempt < 3) return this.placeAtomically(key, fill, attempt + 1);
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

/** The files under these paths (each a file or a folder), depth first; the folders seen are added to `folders`. */
async function* walk(paths: string[], folders: string[]): AsyncGenerator<string> {
  for (const path of paths) {
    const info = await lstat(path).catch(() => null);
    if (!info) continue;
    if (!info.isDirectory()) {
      yield path;
      continue;
    }
    folders.push(path);
    const names = await readdir(path).catch(() => [] as string[]);
    yield* walk(
      names.map((name) => join(path, name)),
      folders,
    );
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
