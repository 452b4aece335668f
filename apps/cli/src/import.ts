/**
 * `facesearch import DIR --group G`: uploads a folder (one subfolder per user) to a running instance as a bulk
 * import, follows it with a progress bar, and resumes when run again, from a state file kept in DIR.
 *
 * Transport: each photo goes to its own upload URL (POST /v1/uploads, then PUT the bytes: a presigned S3 URL in
 * the distributed mode, the gateway's signed URL in the embedded one), then one POST /v1/imports names the
 * uploaded objects. Nothing is held in memory beyond the photos being uploaded, and there is no request size limit.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { FaceSearchError, ID_PATTERN, mapConcurrent } from '@facesearch/common';
import { Progress } from './progress';

export const STATE_FILE = '.facesearch-import.json';
/** The API's limit of items per import (MAX_IMPORT_ITEMS); larger folders become several imports. */
export const MAX_ITEMS_PER_IMPORT = 10_000;
const IMAGE_TYPES: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.avif': 'image/avif',
  '.heic': 'image/heic',
  '.heif': 'image/heif',
  '.bmp': 'image/bmp',
};

export interface ImportCommandOptions {
  dir: string;
  group: string;
  url: string;
  key: string;
  json: boolean;
  /** false: submit and exit; a later run follows the import. */
  wait: boolean;
  /** Parallel uploads. */
  concurrency: number;
  pollMs: number;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

export interface FailedFile {
  file: string;
  user_id: string;
  code: string;
  message: string;
}

export interface ImportSummary {
  group_id: string;
  /** Every import this folder's state knows, oldest first. */
  import_ids: string[];
  /** `completed`: every file was tried; `submitted`: --no-wait, the import is still running. */
  status: 'completed' | 'submitted';
  total: number;
  succeeded: number;
  failed: number;
  /** Files not finished (a cancelled import): submitted again by the next run. */
  pending: number;
  /** Submitted by this run (0 when every file had already succeeded). */
  submitted: number;
  skipped: Array<{ file: string; reason: string }>;
  failures: FailedFile[];
}

// ---------------------------------------------------------------- folder

export interface LocalFile {
  /** Path relative to DIR with '/' separators: the key in the state file and the item's name. */
  rel: string;
  path: string;
  user_id: string;
}

export interface FolderScan {
  files: LocalFile[];
  /** Image files whose folder name cannot be a user id: reported as failed, never sent. */
  invalid: LocalFile[];
  skipped: Array<{ file: string; reason: string }>;
}

/** DIR/<user_id>/**\/<image>; hidden entries and the state file are ignored. Sorted, so runs see the same order. */
export function scanFolder(dir: string): FolderScan {
  const scan: FolderScan = { files: [], invalid: [], skipped: [] };
  const walk = (folder: string, userId: string | null) => {
    const entries = readdirSync(folder, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = join(folder, entry.name);
      const rel = relative(dir, path).split(sep).join('/');
      if (entry.isDirectory()) {
        walk(path, userId ?? entry.name);
        continue;
      }
      if (!entry.isFile()) continue;
      if (!(extname(entry.name).toLowerCase() in IMAGE_TYPES)) {
        scan.skipped.push({ file: rel, reason: 'not an image file name' });
      } else if (userId === null) {
        scan.skipped.push({ file: rel, reason: 'not in a user subfolder' });
      } else {
        (ID_PATTERN.test(userId) ? scan.files : scan.invalid).push({ rel, path, user_id: userId });
      }
    }
  };
  walk(dir, null);
  return scan;
}

// ---------------------------------------------------------------- state

type FileResult = { status: 'succeeded'; face_id: string | null } | { status: 'failed'; code: string; message: string };

interface StateImport {
  import_id: string;
  /** Item i of the import is files[i]. */
  files: string[];
  finished: boolean;
  created_at: string;
}

export interface ImportState {
  version: 1;
  group_id: string;
  url: string;
  imports: StateImport[];
  results: Record<string, FileResult>;
}

function loadState(dir: string): ImportState | null {
  const path = join(dir, STATE_FILE);
  if (!existsSync(path)) return null;
  try {
    const state = JSON.parse(readFileSync(path, 'utf8')) as ImportState;
    if (state.version !== 1 || !Array.isArray(state.imports) || typeof state.results !== 'object') throw new Error();
    return state;
  } catch {
    throw usage(`${path} is not a state file of this tool; delete it to start over.`);
  }
}

/** Written to a temp file and renamed, so an interrupted run never leaves half a state file. */
function saveState(dir: string, state: ImportState): void {
  const path = join(dir, STATE_FILE);
  const tmp = `${path}.${randomUUID()}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 1)}\n`);
  renameSync(tmp, path);
}

// ---------------------------------------------------------------- HTTP

const usage = (message: string) => new FaceSearchError('usage', message, 400);

/** Fatal for the whole run (exit 2), unlike a failure of one file. */
export class FatalError extends FaceSearchError {}

interface ApiErrorBody {
  error?: { code?: string; message?: string };
}

class ApiClient {
  constructor(
    private readonly base: string,
    private readonly key: string,
  ) {}

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.fetch(`${this.base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw await apiError(res);
    return (await res.json()) as T;
  }

  /** PUT to an upload URL; errors are the file's own (too large, empty), answered in the API's shape. */
  async put(url: string, data: Buffer, contentType: string): Promise<void> {
    const res = await this.fetch(url, { method: 'PUT', headers: { 'content-type': contentType }, body: data });
    if (!res.ok) throw await apiError(res, 'upload_failed');
  }

  private async fetch(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, init);
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new FatalError(
        'connection_failed',
        `Cannot reach ${this.base}: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
        503,
      );
    }
  }
}

async function apiError(res: Response, fallbackCode = `http_${res.status}`): Promise<FaceSearchError> {
  let body: ApiErrorBody | undefined;
  const text = await res.text();
  try {
    body = JSON.parse(text) as ApiErrorBody;
  } catch {
    body = undefined;
  }
  const code = body?.error?.code ?? fallbackCode;
  const message = body?.error?.message ?? `HTTP ${res.status} ${res.statusText}`.trim();
  // A bad key or a server fault stops the run; anything else is about the request at hand.
  if (res.status === 401 || res.status === 403 || res.status >= 500) return new FatalError(code, message, res.status);
  return new FaceSearchError(code, message, res.status);
}

interface ImportJobView {
  import_id: string;
  status: 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
  total: number;
  succeeded: number;
  failed: number;
}

interface ImportItemView {
  index: number;
  name: string | null;
  status: 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  face_id: string | null;
  error: { code: string; message: string } | null;
}

// ---------------------------------------------------------------- command

const nFiles = (n: number) => `${n} file${n === 1 ? '' : 's'}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function importFolder(o: ImportCommandOptions): Promise<{ exitCode: number; summary: ImportSummary }> {
  if (!o.group) throw usage('--group G is required: the group to import into.');
  if (!ID_PATTERN.test(o.group)) throw usage(`--group '${o.group}': ${"must be 1-128 letters, digits, '_' or '-'"}`);
  if (!o.key) throw usage('An API key is required: --key KEY or FACESEARCH_API_KEY.');
  if (!existsSync(o.dir) || !statSync(o.dir).isDirectory()) throw usage(`${o.dir} is not a folder.`);
  const base = o.url.replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(base)) throw usage(`--url '${o.url}' is not an http(s) URL.`);

  const log = (line: string) => o.stderr.write(`${line}\n`);
  const api = new ApiClient(base, o.key);
  const scan = scanFolder(o.dir);
  const state: ImportState = loadState(o.dir) ?? {
    version: 1,
    group_id: o.group,
    url: base,
    imports: [],
    results: {},
  };
  if (state.group_id !== o.group) {
    throw usage(
      `${join(o.dir, STATE_FILE)} is an import into group '${state.group_id}': run with --group ${state.group_id}, or delete it to start over.`,
    );
  }
  state.url = base;

  // 1. Imports an earlier run started: follow them to the end first, so their files are not sent twice.
  const followed = new Set<string>();
  for (const imp of state.imports.filter((i) => !i.finished)) {
    log(`Resuming import ${imp.import_id} (${nFiles(imp.files.length)})`);
    await follow(api, o, state, imp);
    for (const rel of imp.files) if (state.results[rel]) followed.add(rel);
  }

  // 2. Everything not yet succeeded (new files, and files that failed in an earlier run) goes into a new import.
  const todo = scan.files.filter((f) => state.results[f.rel]?.status !== 'succeeded' && !followed.has(f.rel));
  let submitted = 0;
  if (todo.length > 0) {
    const uploaded = await uploadAll(api, o, state, todo);
    for (let i = 0; i < uploaded.length; i += MAX_ITEMS_PER_IMPORT) {
      const batch = uploaded.slice(i, i + MAX_ITEMS_PER_IMPORT);
      const job = await api.json<ImportJobView>('POST', '/v1/imports', {
        group_id: o.group,
        items: batch.map((u) => ({ user_id: u.file.user_id, object_key: u.objectKey, name: u.file.rel })),
      });
      const imp: StateImport = {
        import_id: job.import_id,
        files: batch.map((u) => u.file.rel),
        finished: false,
        created_at: new Date().toISOString(),
      };
      for (const rel of imp.files) delete state.results[rel];
      state.imports.push(imp);
      saveState(o.dir, state);
      submitted += batch.length;
      log(`Started import ${job.import_id} of ${nFiles(batch.length)} into group '${o.group}'`);
    }
    if (o.wait) {
      for (const imp of state.imports.filter((x) => !x.finished)) await follow(api, o, state, imp);
    }
  } else if (scan.files.length > 0 && followed.size === 0) {
    log('Every file has already been imported.');
  }
  saveState(o.dir, state);

  const summary = summarize(state, scan, submitted, o);
  const allDone = summary.failed === 0 && summary.pending === 0;
  return { exitCode: summary.status === 'submitted' || allDone ? 0 : 1, summary };
}

interface Uploaded {
  file: LocalFile;
  objectKey: string;
}

/** Uploads with a few in flight; a file the API refuses is recorded as failed, anything fatal stops the run. */
async function uploadAll(
  api: ApiClient,
  o: ImportCommandOptions,
  state: ImportState,
  files: LocalFile[],
): Promise<Uploaded[]> {
  const progress = new Progress('uploading', files.length, { stream: o.stderr });
  let done = 0;
  let refused = 0;
  progress.update(0);
  const upload = async (file: LocalFile): Promise<string | null> => {
    let key: string | null = null;
    try {
      const data = await readFile(file.path);
      const ticket = await api.json<{ object_key: string; upload_url: string }>('POST', '/v1/uploads');
      await api.put(ticket.upload_url, data, IMAGE_TYPES[extname(file.path).toLowerCase()]);
      key = ticket.object_key;
    } catch (err) {
      if (err instanceof FatalError || !(err instanceof FaceSearchError || isFsError(err))) throw err;
      const e = err instanceof FaceSearchError ? err : fileError(err);
      state.results[file.rel] = { status: 'failed', code: e.code, message: e.message };
      refused++;
    }
    done++;
    progress.update(done, refused ? `${refused} refused` : '');
    return key;
  };
  let keys: Array<string | null>;
  try {
    keys = await mapConcurrent(files, o.concurrency, upload);
  } finally {
    progress.finish();
    saveState(o.dir, state);
  }
  return files.flatMap((file, i) => (keys[i] ? [{ file, objectKey: keys[i] as string }] : []));
}

const isFsError = (err: unknown) =>
  typeof (err as NodeJS.ErrnoException)?.code === 'string' && 'syscall' in (err as object);
const fileError = (err: unknown) =>
  new FaceSearchError('file_unreadable', `Cannot read the file: ${(err as Error).message}`, 400);

/** Polls an import to its end with a progress bar, then records every item's result by file. */
async function follow(api: ApiClient, o: ImportCommandOptions, state: ImportState, imp: StateImport): Promise<void> {
  const path = `/v1/imports/${encodeURIComponent(imp.import_id)}`;
  let job: ImportJobView;
  try {
    job = await api.json<ImportJobView>('GET', path);
  } catch (err) {
    if (err instanceof FaceSearchError && err.status === 404) {
      o.stderr.write(`Import ${imp.import_id} is unknown to ${state.url}: its files will be submitted again.\n`);
      imp.finished = true;
      saveState(o.dir, state);
      return;
    }
    throw err;
  }
  const progress = new Progress('importing', job.total, { stream: o.stderr });
  const counts = (j: ImportJobView) => `${j.succeeded} ok, ${j.failed} failed`;
  progress.update(job.succeeded + job.failed, counts(job));
  while (job.status === 'queued' || job.status === 'running') {
    await sleep(o.pollMs);
    job = await api.json<ImportJobView>('GET', path);
    progress.update(job.succeeded + job.failed, counts(job));
  }
  progress.finish();

  let cursor: string | null | undefined;
  do {
    const query = `limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page = await api.json<{ items: ImportItemView[]; next_cursor: string | null }>(
      'GET',
      `${path}/items?${query}`,
    );
    for (const item of page.items) {
      const rel = imp.files[item.index] ?? item.name;
      if (!rel) continue;
      if (item.status === 'succeeded') state.results[rel] = { status: 'succeeded', face_id: item.face_id };
      else if (item.status === 'failed') {
        state.results[rel] = {
          status: 'failed',
          code: item.error?.code ?? 'unknown',
          message: item.error?.message ?? '',
        };
      }
    }
    cursor = page.next_cursor;
  } while (cursor);
  imp.finished = true;
  saveState(o.dir, state);
}

function summarize(state: ImportState, scan: FolderScan, submitted: number, o: ImportCommandOptions): ImportSummary {
  const failures: FailedFile[] = scan.invalid.map((f) => ({
    file: f.rel,
    user_id: f.user_id,
    code: 'invalid_user_id',
    message: `The folder name '${f.user_id}' is not a valid user id (1-128 letters, digits, '_' or '-').`,
  }));
  let succeeded = 0;
  let pending = 0;
  for (const f of scan.files) {
    const r = state.results[f.rel];
    if (r?.status === 'succeeded') succeeded++;
    else if (r?.status === 'failed')
      failures.push({ file: f.rel, user_id: f.user_id, code: r.code, message: r.message });
    else pending++;
  }
  const running = state.imports.some((i) => !i.finished);
  return {
    group_id: state.group_id,
    import_ids: state.imports.map((i) => i.import_id),
    status: running && !o.wait ? 'submitted' : 'completed',
    total: scan.files.length + scan.invalid.length,
    succeeded,
    failed: failures.length,
    pending,
    submitted,
    skipped: scan.skipped,
    failures,
  };
}

export function printSummary(s: ImportSummary, out: NodeJS.WritableStream): void {
  const line = (text = '') => out.write(`${text}\n`);
  if (s.status === 'submitted') {
    line(`Submitted ${nFiles(s.submitted)} into group '${s.group_id}' (import ${s.import_ids.at(-1)}).`);
    line('Run the same command again to follow it to the end.');
    return;
  }
  line(
    `Group '${s.group_id}': ${nFiles(s.total)}, ${s.succeeded} succeeded, ${s.failed} failed` +
      `${s.pending ? `, ${s.pending} not finished` : ''}${s.skipped.length ? ` (${s.skipped.length} skipped)` : ''}`,
  );
  if (s.failures.length > 0) {
    line('Failed:');
    const width = Math.min(60, Math.max(...s.failures.map((f) => f.file.length)));
    for (const f of s.failures) line(`  ${f.file.padEnd(width)}  ${f.code}  ${f.message}`);
  }
  if (s.skipped.length > 0) {
    line('Skipped:');
    for (const f of s.skipped.slice(0, 20)) line(`  ${f.file}  (${f.reason})`);
    if (s.skipped.length > 20) line(`  … and ${s.skipped.length - 20} more`);
  }
  if (s.pending > 0) line('Files not finished are submitted again by the next run.');
}
