#!/usr/bin/env node
/**
 * Backup and restore of the face library, in either deployment mode, configured by the service's own
 * environment variables (FACESEARCH_MODE, DATA_DIR, REDIS_URL, REDIS_PREFIX, S3_*, QDRANT_*):
 *
 *   pnpm backup:create DEST            DEST must not exist (or be an empty folder)
 *   pnpm backup:restore SRC [--force]  --force replaces a library that is already there
 *
 * Embedded: a consistent copy of DATA_DIR taken while the gateway runs: SQLite's online backup API (library
 * records and sqlite-vec vectors are one database file, so they are copied as one snapshot), then the blobs
 * folder. Distributed: the library keys of Redis (DUMP of every `<REDIS_PREFIX>:lib:*` key), then a Qdrant
 * snapshot of the collection (REST snapshot API), then every S3 object of the bucket.
 *
 * Order matters: records first, images and vectors after. A face is written image -> vector -> record, so every
 * record in the backup has its image and vector in it too; a face enrolled during the backup may leave an extra
 * image (harmless, never listed). Restore with the services stopped (embedded: the gateway; distributed: the
 * gateway and workers; Redis, Qdrant and S3 running).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '../..');
const requireFromAdapters = createRequire(join(ROOT, 'libs/adapters/package.json'));
const FORMAT = 'facesearch-backup';
const VERSION = 1;

class BackupError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function loadConfig() {
  const common = join(ROOT, 'libs/common/dist/index.js');
  if (!existsSync(common)) throw new BackupError('not_built', `${common} is missing: run pnpm build first`);
  return createRequire(import.meta.url)(common).loadConfig(process.env);
}

const log = (msg) => process.stderr.write(`backup: ${msg}\n`);

// ---- files ------------------------------------------------------------------------------------------------------

/** Every file under dir, as paths relative to it; blob stores' temp files (`.tmp-*`) are left out. */
async function listFiles(dir) {
  const out = [];
  async function walk(d) {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch (err) {
      if (err.code === 'ENOENT') return; // a folder deleted while we walk (a user or group deleted)
      throw err;
    }
    for (const e of entries) {
      const full = join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile() && !e.name.startsWith('.tmp-')) out.push(relative(dir, full));
    }
  }
  await walk(dir);
  return out.sort();
}

/** Copies a tree; files that disappear during the copy (deleted faces) are skipped. */
async function copyTree(from, to) {
  let files = 0;
  let bytes = 0;
  for (const rel of await listFiles(from)) {
    const target = join(to, rel);
    await mkdir(dirname(target), { recursive: true });
    try {
      await copyFile(join(from, rel), target);
      files++;
      bytes += (await stat(target)).size;
    } catch (err) {
      if (err.code !== 'ENOENT') throw err;
    }
  }
  return { files, bytes };
}

async function sha256File(path) {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

async function prepareDestination(dest) {
  if (existsSync(dest) && (await readdir(dest)).length > 0) {
    throw new BackupError('destination_not_empty', `${dest} exists and is not empty; choose a new folder`);
  }
  await mkdir(dest, { recursive: true });
}

async function readManifest(src) {
  const path = join(src, 'backup.json');
  if (!existsSync(path)) throw new BackupError('not_a_backup', `${path} not found: ${src} is not a facesearch backup`);
  const manifest = JSON.parse(await readFile(path, 'utf8'));
  if (manifest.format !== FORMAT || manifest.version !== VERSION) {
    throw new BackupError('not_a_backup', `${path}: unknown format ${manifest.format} v${manifest.version}`);
  }
  return manifest;
}

// ---- embedded ---------------------------------------------------------------------------------------------------

async function createEmbedded(config, dest) {
  const dataDir = resolve(config.dataDir);
  const dbPath = join(dataDir, 'facesearch.db');
  if (!existsSync(dbPath)) throw new BackupError('no_library', `No library at ${dbPath} (DATA_DIR=${config.dataDir})`);
  await prepareDestination(dest);
  const Database = requireFromAdapters('better-sqlite3');
  // A connection of our own next to the gateway's: WAL lets it read while the gateway writes. The backup API
  // copies a consistent snapshot, records and vectors together (one file).
  const db = new Database(dbPath, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 10000');
    await db.backup(join(dest, 'facesearch.db'));
  } finally {
    db.close();
  }
  const check = new Database(join(dest, 'facesearch.db'), { readonly: true });
  let faces;
  try {
    const ok = check.pragma('integrity_check', { simple: true });
    if (ok !== 'ok') throw new BackupError('backup_corrupt', `integrity_check of the copy: ${ok}`);
    faces = check.prepare('SELECT count(*) AS n FROM lib_faces').get().n;
  } finally {
    check.close();
  }
  const blobs = await copyTree(join(dataDir, 'blobs'), join(dest, 'blobs'));
  const manifest = {
    format: FORMAT,
    version: VERSION,
    mode: 'embedded',
    created_at: new Date().toISOString(),
    faces,
    database: { file: 'facesearch.db', sha256: await sha256File(join(dest, 'facesearch.db')) },
    blobs,
  };
  await writeFile(join(dest, 'backup.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

async function restoreEmbedded(config, src, force) {
  const manifest = await readManifest(src);
  if (manifest.mode !== 'embedded') throw new BackupError('wrong_mode', `${src} is a ${manifest.mode} backup`);
  const dbCopy = join(src, manifest.database.file);
  if ((await sha256File(dbCopy)) !== manifest.database.sha256) {
    throw new BackupError('backup_corrupt', `${dbCopy} does not match its checksum in backup.json`);
  }
  const dataDir = resolve(config.dataDir);
  const dbPath = join(dataDir, 'facesearch.db');
  if (existsSync(dbPath) && !force) {
    throw new BackupError('library_exists', `${dbPath} exists: stop the gateway and add --force to replace it`);
  }
  await mkdir(dataDir, { recursive: true });
  // The old WAL and shared-memory files belong to the old database: they must go with it.
  for (const f of ['facesearch.db', 'facesearch.db-wal', 'facesearch.db-shm'])
    await rm(join(dataDir, f), { force: true });
  await rm(join(dataDir, 'blobs'), { recursive: true, force: true });
  await copyFile(dbCopy, dbPath);
  const blobs = await copyTree(join(src, 'blobs'), join(dataDir, 'blobs'));
  return { mode: 'embedded', faces: manifest.faces, blobs, data_dir: dataDir };
}

// ---- distributed ------------------------------------------------------------------------------------------------

function redisClient(config) {
  const { Redis } = requireFromAdapters('ioredis');
  return new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
}

function s3Client(config) {
  const Minio = requireFromAdapters('minio');
  const u = new URL(config.s3.endpoint);
  return new Minio.Client({
    endPoint: u.hostname,
    port: u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80,
    useSSL: u.protocol === 'https:',
    accessKey: config.s3.accessKey,
    secretKey: config.s3.secretKey,
    region: config.s3.region,
    pathStyle: true,
  });
}

async function qdrant(config, method, path, body, headers = {}) {
  const res = await fetch(`${config.qdrantUrl.replace(/\/+$/, '')}${path}`, { method, body, headers });
  if (!res.ok) {
    throw new BackupError(
      'qdrant_failed',
      `Qdrant ${method} ${path}: ${res.status} ${await res.text().catch(() => '')}`,
    );
  }
  return res;
}

async function createDistributed(config, dest) {
  await prepareDestination(dest);
  // 1. Redis: the library keys (apps, keys, groups, users, faces, imports), as DUMP payloads with their TTL.
  const redis = redisClient(config);
  const pattern = `${config.redisPrefix}:lib:*`;
  let keys = 0;
  try {
    await redis.connect();
    const out = createWriteStream(join(dest, 'redis-library.jsonl'));
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      for (const key of batch) {
        const [dump, ttl] = await Promise.all([redis.dumpBuffer(key), redis.pttl(key)]);
        if (!dump) continue; // deleted since SCAN saw it
        out.write(`${JSON.stringify({ key, ttl: Math.max(ttl, 0), dump: dump.toString('base64') })}\n`);
        keys++;
      }
    } while (cursor !== '0');
    await new Promise((r, j) => out.end((err) => (err ? j(err) : r())));
  } finally {
    redis.disconnect();
  }
  log(`redis: ${keys} library keys`);

  // 2. Qdrant: a snapshot of the collection, downloaded, then removed from the server.
  const collection = encodeURIComponent(config.qdrantCollection);
  const created = await (await qdrant(config, 'POST', `/collections/${collection}/snapshots?wait=true`)).json();
  const snapshot = created.result.name;
  const snapshotFile = join(dest, 'qdrant', `${config.qdrantCollection}.snapshot`);
  await mkdir(dirname(snapshotFile), { recursive: true });
  const download = await qdrant(config, 'GET', `/collections/${collection}/snapshots/${encodeURIComponent(snapshot)}`);
  await pipeline(Readable.fromWeb(download.body), createWriteStream(snapshotFile));
  await qdrant(config, 'DELETE', `/collections/${collection}/snapshots/${encodeURIComponent(snapshot)}`);
  log(`qdrant: snapshot ${snapshot}`);

  // 3. S3: every object of the bucket.
  const s3 = s3Client(config);
  let objects = 0;
  let bytes = 0;
  for await (const item of s3.listObjectsV2(config.s3.bucket, '', true)) {
    if (!item.name) continue;
    const target = join(dest, 's3', ...item.name.split('/'));
    if (!target.startsWith(join(dest, 's3') + sep)) throw new BackupError('bad_key', `unsafe object key ${item.name}`);
    await mkdir(dirname(target), { recursive: true });
    try {
      await pipeline(await s3.getObject(config.s3.bucket, item.name), createWriteStream(target));
      objects++;
      bytes += item.size ?? 0;
    } catch (err) {
      if (err.code !== 'NoSuchKey') throw err; // deleted since the listing
      await rm(target, { force: true });
    }
  }
  log(`s3: ${objects} objects`);

  const manifest = {
    format: FORMAT,
    version: VERSION,
    mode: 'distributed',
    created_at: new Date().toISOString(),
    redis: { file: 'redis-library.jsonl', prefix: config.redisPrefix, keys },
    qdrant: {
      file: relative(dest, snapshotFile),
      collection: config.qdrantCollection,
      sha256: await sha256File(snapshotFile),
    },
    s3: { folder: 's3', bucket: config.s3.bucket, objects, bytes },
  };
  await writeFile(join(dest, 'backup.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

async function restoreDistributed(config, src, force) {
  const manifest = await readManifest(src);
  if (manifest.mode !== 'distributed') throw new BackupError('wrong_mode', `${src} is a ${manifest.mode} backup`);
  if (manifest.redis.prefix !== config.redisPrefix) {
    throw new BackupError(
      'wrong_prefix',
      `the backup is of REDIS_PREFIX=${manifest.redis.prefix}, not ${config.redisPrefix}`,
    );
  }
  const snapshotFile = join(src, manifest.qdrant.file);
  if ((await sha256File(snapshotFile)) !== manifest.qdrant.sha256) {
    throw new BackupError('backup_corrupt', `${snapshotFile} does not match its checksum in backup.json`);
  }
  const redis = redisClient(config);
  let keys = 0;
  try {
    await redis.connect();
    const pattern = `${config.redisPrefix}:lib:*`;
    const [, existing] = await redis.scan('0', 'MATCH', pattern, 'COUNT', 1000);
    if (existing.length > 0 && !force) {
      throw new BackupError('library_exists', `Redis holds ${pattern} keys: stop the services and add --force`);
    }
    // The library is replaced as a whole: keys the backup does not have (faces enrolled since) go.
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (batch.length > 0) await redis.del(...batch);
    } while (cursor !== '0');
    const lines = (await readFile(join(src, manifest.redis.file), 'utf8')).split('\n').filter(Boolean);
    for (const line of lines) {
      const { key, ttl, dump } = JSON.parse(line);
      await redis.restore(key, ttl, Buffer.from(dump, 'base64'), 'REPLACE');
      keys++;
    }
  } finally {
    redis.disconnect();
  }
  log(`redis: ${keys} library keys restored`);

  // Qdrant replaces the collection with the snapshot's.
  const form = new FormData();
  form.append('snapshot', new Blob([await readFile(snapshotFile)]), 'collection.snapshot');
  await qdrant(
    config,
    'POST',
    `/collections/${encodeURIComponent(config.qdrantCollection)}/snapshots/upload?wait=true&priority=snapshot`,
    form,
  );
  log(`qdrant: collection ${config.qdrantCollection} recovered`);

  const s3 = s3Client(config);
  if (!(await s3.bucketExists(config.s3.bucket))) await s3.makeBucket(config.s3.bucket, config.s3.region);
  // Objects the backup does not have go too, so the three stores agree again.
  const inBackup = new Set((await listFiles(join(src, 's3'))).map((rel) => rel.split(sep).join('/')));
  const stale = [];
  for await (const item of s3.listObjectsV2(config.s3.bucket, '', true)) {
    if (item.name && !inBackup.has(item.name)) stale.push(item.name);
  }
  if (stale.length > 0) await s3.removeObjects(config.s3.bucket, stale);
  let objects = 0;
  for (const key of inBackup) {
    await s3.fPutObject(config.s3.bucket, key, join(src, 's3', ...key.split('/')));
    objects++;
  }
  log(`s3: ${objects} objects restored, ${stale.length} newer ones removed`);
  return { mode: 'distributed', redis_keys: keys, s3_objects: objects, qdrant_collection: config.qdrantCollection };
}

// ---- command line -----------------------------------------------------------------------------------------------

const USAGE = `Usage:
  pnpm backup:create DEST             copy the library (the mode's stores) into the new folder DEST
  pnpm backup:restore SRC [--force]   put a backup back (stop the gateway and workers first)
Configured by the service's environment: FACESEARCH_MODE, DATA_DIR (embedded); REDIS_URL, REDIS_PREFIX,
QDRANT_URL, QDRANT_COLLECTION, S3_* (distributed). The last line of output is a JSON summary.`;

async function main(argv) {
  const [command, path, ...rest] = argv;
  const force = rest.includes('--force');
  if (!['create', 'restore'].includes(command) || !path || rest.some((a) => a !== '--force')) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const target = resolve(process.env.INIT_CWD ?? process.cwd(), path);
  try {
    const config = loadConfig();
    const distributed = config.libraryStore === 'redis';
    if (distributed && (config.vectorStore !== 'qdrant' || config.blobStore !== 's3')) {
      throw new BackupError('unsupported_mix', 'backups cover Redis + Qdrant + S3, or the embedded data folder');
    }
    if (!distributed && (config.vectorStore !== 'sqlite' || config.blobStore !== 'fs')) {
      throw new BackupError('unsupported_mix', 'backups cover Redis + Qdrant + S3, or the embedded data folder');
    }
    const result =
      command === 'create'
        ? await (distributed ? createDistributed : createEmbedded)(config, target)
        : await (distributed ? restoreDistributed : restoreEmbedded)(config, target, force);
    process.stdout.write(`${JSON.stringify({ [command === 'create' ? 'backup' : 'restored']: target, ...result })}\n`);
    return 0;
  } catch (err) {
    const error = { code: err.code && typeof err.code === 'string' ? err.code : 'backup_failed', message: err.message };
    process.stdout.write(`${JSON.stringify({ error })}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
