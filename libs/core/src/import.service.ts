import { randomUUID } from 'node:crypto';
import {
  type BlobStore,
  FaceSearchError,
  type ImportItemRecord,
  type ImportItemStatus,
  type ImportRecord,
  type JobQueue,
  type LibraryRepository,
  type Page,
  mapConcurrent,
  type PageRequest,
} from '@facesearch/common';
import { importImageKey } from './delete.pipeline';
import { checkId, errors, isConflict, nowIso } from './errors';
import { idempotencyKeyReused, idempotentId } from './idempotency';
import { ImportProgress, type ImportJob, importFaceId, importJobId, UNFINISHED_ITEM } from './import.pipeline';
import type { LibraryService } from './library.service';
import type { QualityControl } from './quality';
import { isUploadKeyOf } from './upload.service';
import type { UploadHandoff } from './upload-handoff';

export type ImportSource = { kind: 'bytes'; data: Uint8Array } | { kind: 'object'; key: string };

export interface ImportItemInput {
  user_id: string;
  name?: string | null;
  source: ImportSource;
}

export interface ImportView {
  import_id: string;
  group_id: string;
  status: ImportRecord['status'];
  total: number;
  succeeded: number;
  failed: number;
  /** Items not finished yet (or cancelled). */
  pending: number;
  /** 0..1, finished items over total. */
  progress: number;
  quality_control: QualityControl;
  created_at: string;
  updated_at: string;
}

export type ImportItemView = Omit<ImportItemRecord, 'import_id' | 'image_key'>;

export interface ImportOptionsConfig {
  maxItems: number;
  /** Faces per user, as in LibraryService. */
  maxFacesPerUser: number;
  /**
   * Back-pressure: a new import is refused (429 queue_full) while the analysis queue holds this many items
   * waiting or more than this with the new ones (a single import into an empty queue is always taken). 0: off.
   */
  maxQueuedItems?: number;
  /** Where the uploads go for this process's own detection stage (the embedded gateway); unset: not kept. */
  handoff?: UploadHandoff;
}

/**
 * Uploads of one import request stored at once. One after another, each waits for its own fsync (files) or round trip
 * (S3): 50 photos (17.7 MB) took 160-170 ms into files here and 500-690 ms into S3 (radosgw), 72-85 and 230-300 ms
 * eight at a time.
 */
const UPLOADS_STORED_AT_ONCE = 8;

/** Uploaded objects an import request checks for at once (a HEAD each on S3). */
const UPLOADS_CHECKED_AT_ONCE = 16;

/** Seconds a client refused with queue_full is told to wait. */
export const QUEUE_FULL_RETRY_AFTER_SECONDS = 30;

export const queueFull = (queued: number, limit: number) =>
  new FaceSearchError(
    'queue_full',
    `${queued} import items are waiting (the limit is ${limit}); retry later or send fewer items.`,
    429,
    true,
  ).retryAfter(QUEUE_FULL_RETRY_AFTER_SECONDS);

/**
 * Bulk enrolment as an asynchronous job: create stores every item and queues one analysis job per item;
 * the two stages in import.pipeline.ts run wherever the queues are consumed (the gateway in embedded mode,
 * the detector and indexer workers in distributed mode), so they know nothing about HTTP.
 */
export class ImportService {
  private readonly progress: ImportProgress;

  constructor(
    private readonly repo: LibraryRepository,
    private readonly blobs: BlobStore,
    private readonly queue: JobQueue<ImportJob>,
    private readonly library: LibraryService,
    private readonly options: ImportOptionsConfig,
  ) {
    this.progress = new ImportProgress(repo, blobs, options.handoff);
  }

  async create(
    appId: string,
    input: {
      group_id: string;
      quality_control?: QualityControl;
      items: ImportItemInput[];
      /** Same key, same app: the first import is returned (and its unqueued items queued again), none is added. */
      idempotency_key?: string;
    },
  ): Promise<ImportView> {
    const groupId = checkId('group_id', input.group_id);
    if (input.items.length === 0) throw errors.invalidRequest('items: at least one item is required');
    if (input.items.length > this.options.maxItems) {
      throw errors.invalidRequest(`items: at most ${this.options.maxItems} items per import`);
    }
    const key = input.idempotency_key;
    const importId = key ? idempotentId(appId, 'import', key) : randomUUID();
    if (key) {
      const earlier = await this.repo.getImport(appId, importId);
      if (earlier) return this.replay(earlier, groupId, input.items.length);
    }
    await this.admit(input.items.length);
    // Bad images are not refused here: they fail as items, with their code, without harming the import.
    for (const [i, item] of input.items.entries()) checkId(`items[${i}].user_id`, item.user_id);
    // Checked several at a time: one at a time, 10,000 keys took 10-13 s on a local S3 (one round trip each).
    const found = await mapConcurrent(
      input.items,
      UPLOADS_CHECKED_AT_ONCE,
      async (item) =>
        item.source.kind !== 'object' || (isUploadKeyOf(appId, item.source.key) && this.blobs.exists(item.source.key)),
    );
    const missing = found.indexOf(false);
    if (missing >= 0) {
      const source = input.items[missing].source as { key: string };
      throw new FaceSearchError(
        'upload_not_found',
        `items[${missing}].object_key: ${errors.uploadNotFound(source.key).message}`,
        400,
      );
    }
    await this.library.ensureGroup(appId, groupId);

    const now = nowIso();
    const attempt = key ? randomUUID().slice(0, 8) : undefined;
    const stored: string[] = [];
    const imageKeys = await mapConcurrent(input.items, UPLOADS_STORED_AT_ONCE, async (item, index) => {
      if (item.source.kind === 'object') return item.source.key;
      const imageKey = importImageKey(appId, groupId, item.user_id, importFaceId(importId, index), attempt);
      await this.blobs.put(imageKey, item.source.data);
      stored.push(imageKey);
      return imageKey;
    }).catch(async (err: unknown) => {
      // No import refers to them yet.
      for (const k of stored) await this.progress.dropBlob(k);
      throw err;
    });
    const items: ImportItemRecord[] = input.items.map((item, index) => ({
      import_id: importId,
      index,
      user_id: item.user_id,
      image_key: imageKeys[index] as string,
      name: item.name ?? null,
      status: 'pending',
      attempts: 0,
      face_id: null,
      error: null,
      updated_at: now,
    }));
    const record: ImportRecord = {
      import_id: importId,
      app_id: appId,
      group_id: groupId,
      status: 'queued',
      total: items.length,
      succeeded: 0,
      failed: 0,
      options: { quality_control: input.quality_control ?? 'NONE' },
      created_at: now,
      updated_at: now,
    };
    try {
      await this.repo.createImport(record, items);
    } catch (err) {
      const raced = key && isConflict(err) ? await this.repo.getImport(appId, importId) : null;
      if (!raced) throw err;
      // Another request with the same key won the race: its import stands, this one's uploads go.
      for (const k of stored) await this.progress.dropBlob(k);
      return this.replay(raced, groupId, input.items.length);
    }
    const handoff = this.options.handoff;
    if (handoff) {
      for (const [index, item] of input.items.entries()) {
        if (item.source.kind === 'bytes') handoff.offer(imageKeys[index] as string, item.source.data);
      }
    }
    try {
      await this.queue.add(
        items.map((it) => ({
          id: importJobId(importId, it.index),
          data: { app_id: appId, import_id: importId, index: it.index },
        })),
      );
    } catch (err) {
      // Not queued: a replay or the next start queues them, and reads the files.
      for (const k of stored) handoff?.take(k);
      throw err;
    }
    return view(record);
  }

  /** Refuses a new import while the analysis queue is too long (back-pressure instead of an endless backlog). */
  private async admit(newItems: number): Promise<void> {
    const limit = this.options.maxQueuedItems ?? 0;
    if (limit <= 0) return;
    const counts = await this.queue.counts();
    const queued = counts.waiting + counts.delayed;
    if (queued >= limit || (queued > 0 && queued + newItems > limit)) throw queueFull(queued, limit);
  }

  /**
   * The answer to a repeated request: the import the key made first. Its items that are not finished are queued
   * again (the queue ignores those already queued or running), which also repairs a first request that stored
   * the import but died before queueing its items.
   */
  private async replay(earlier: ImportRecord, groupId: string, total: number): Promise<ImportView> {
    if (earlier.group_id !== groupId || earlier.total !== total) {
      throw idempotencyKeyReused(
        `it started import ${earlier.import_id} of ${earlier.total} items into '${earlier.group_id}'`,
      );
    }
    if (earlier.status === 'queued' || earlier.status === 'running') {
      const todo = (await this.unfinishedItems(earlier.import_id)).filter((it) => it.status === 'pending');
      await this.queue.add(
        todo.map((it) => ({
          id: importJobId(earlier.import_id, it.index),
          data: { app_id: earlier.app_id, import_id: earlier.import_id, index: it.index },
        })),
      );
    }
    return view((await this.repo.getImport(earlier.app_id, earlier.import_id)) ?? earlier);
  }

  async get(appId: string, importId: string): Promise<ImportView> {
    return view(await this.load(appId, importId));
  }

  async listItems(
    appId: string,
    importId: string,
    status: ImportItemStatus | undefined,
    page: PageRequest,
  ): Promise<Page<ImportItemView>> {
    await this.load(appId, importId);
    const result = await this.repo.listImportItems(importId, status ? { status } : {}, page);
    return { items: result.items.map(itemView), next_cursor: result.next_cursor };
  }

  /** Stops queued items; items already being processed finish. */
  async cancel(appId: string, importId: string): Promise<ImportView> {
    const job = await this.load(appId, importId);
    if (job.status === 'cancelled') return view(job);
    if (job.status === 'completed' || job.status === 'failed') throw errors.importFinished(importId, job.status);
    const now = nowIso();
    await this.repo.setImportStatus(importId, 'cancelled', now);
    for (const item of await this.unfinishedItems(importId)) {
      await this.queue.remove([importJobId(importId, item.index)]);
      if (item.status === 'pending') await this.progress.cancel(item);
    }
    return this.get(appId, importId);
  }

  /** Cancels the unfinished imports into a group (before the group is deleted). */
  async cancelImportsInto(appId: string, groupId: string): Promise<void> {
    for (const job of await this.repo.listUnfinishedImports()) {
      if (job.app_id !== appId || job.group_id !== groupId) continue;
      try {
        await this.cancel(appId, job.import_id);
      } catch (err) {
        // It finished meanwhile: nothing left to stop.
        if (!(err instanceof FaceSearchError && err.code === 'import_finished')) throw err;
      }
    }
  }

  /** Start-up: queue again every unfinished item of every unfinished import (the queue ignores duplicates). */
  async resume(): Promise<{ imports: number; items: number }> {
    let items = 0;
    const imports = await this.repo.listUnfinishedImports();
    for (const job of imports) {
      const todo = await this.unfinishedItems(job.import_id);
      if (todo.length === 0) {
        await this.progress.completeIfDone(job.app_id, job.import_id);
        continue;
      }
      await this.queue.add(
        todo.map((it) => ({
          id: importJobId(job.import_id, it.index),
          data: { app_id: job.app_id, import_id: job.import_id, index: it.index },
        })),
      );
      items += todo.length;
    }
    return { imports: imports.length, items };
  }

  private async unfinishedItems(importId: string): Promise<ImportItemRecord[]> {
    const out: ImportItemRecord[] = [];
    for (const status of UNFINISHED_ITEM) {
      let cursor: string | null = null;
      do {
        const page: Page<ImportItemRecord> = await this.repo.listImportItems(
          importId,
          { status },
          { limit: 1000, cursor },
        );
        out.push(...page.items);
        cursor = page.next_cursor;
      } while (cursor);
    }
    return out;
  }

  private async load(appId: string, importId: string): Promise<ImportRecord> {
    const job = await this.repo.getImport(appId, checkId('import_id', importId));
    if (!job) throw errors.importNotFound(importId);
    return job;
  }
}

function view(r: ImportRecord): ImportView {
  const done = r.succeeded + r.failed;
  return {
    import_id: r.import_id,
    group_id: r.group_id,
    status: r.status,
    total: r.total,
    succeeded: r.succeeded,
    failed: r.failed,
    pending: r.total - done,
    progress: r.total === 0 ? 1 : Math.round((done / r.total) * 10000) / 10000,
    quality_control: r.options.quality_control,
    created_at: r.created_at,
    updated_at: r.updated_at,
  };
}

function itemView(r: ImportItemRecord): ImportItemView {
  const { import_id: _i, image_key: _k, ...rest } = r;
  return rest;
}
