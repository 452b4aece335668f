/**
 * The three stages an import item goes through after ImportService.create queued it:
 *   1. detection (queue `imports`): load the item's image, detect and align, quality control and the per-user
 *      limit; store the face image and the aligned crop (blob `crops/{app}/{import}/{index}`, raw 112x112x3)
 *      and queue an embed job carrying the crop's KEY (bytes never travel through Redis);
 *   2. embedding (queue `embed`): read the crop, embed it, queue an index job with the vector, drop the crop;
 *      or, with the `inline` option of stage 1 (IMPORT_EMBED=inline), stage 1 embeds the crop itself and queues
 *      the index job: no crop in the blob store and one queue hop less, for when embedders need not scale apart;
 *   3. indexing (queue `index`): many index jobs at once (see MicroBatcher): one vector upsert for the batch,
 *      then the user and face records and the item's result.
 * Every stage is idempotent: the face id is `{import_id}_{index}`, so a job delivered twice writes the same
 * vector point, image and face record once, and an item is counted once (finishImportItem is a no-op the
 * second time). An item that fails for good in any stage is finished as failed with its error code.
 */
import {
  type AlignedFace,
  type AnalyzeCall,
  type BlobStore,
  type Box,
  type DetectOptions,
  type FaceQuality,
  type FaceRecord,
  FaceSearchError,
  type ImageInfo,
  type ImportItemRecord,
  type ImportItemStatus,
  type JobContext,
  type JobQueue,
  type Landmarks,
  type LibraryRepository,
  type VectorPoint,
  type VectorStore,
} from '@facesearch/common';
import { faceImageKey, userImagePrefix } from './delete.pipeline';
import { errors, isConflict, nowIso } from './errors';
import { MicroBatcher, type MicroBatcherOptions } from './micro-batcher';
import { assertQuality } from './quality';
import type { UploadHandoff } from './upload-handoff';

/** Detects and aligns faces (the engine in process: FaceEngine fits as is). */
export interface FaceAligner {
  detectAligned(
    image: Uint8Array,
    options?: DetectOptions,
    call?: AnalyzeCall,
  ): Promise<{ image: ImageInfo; faces: AlignedFace[] }>;
}

/** Embeds aligned crops (the engine in process: FaceEngine fits as is). */
export interface CropEmbedder {
  readonly modelId: string;
  embed(crops: Uint8Array[]): Promise<Float32Array[]>;
}

/** One detection job per import item; the item itself lives in the library repository. */
export interface ImportJob {
  app_id: string;
  import_id: string;
  index: number;
}

/** A detected face and where its data is. JSON-serialisable (it travels through Redis in distributed mode). */
export interface DetectedFaceJob extends ImportJob {
  group_id: string;
  user_id: string;
  face_id: string;
  /** Blob key of the face's image, already stored by the detection stage. */
  image_key: string;
  /** Blob key of the item's upload, deleted once the item is finished. */
  item_image_key: string;
  box: Box;
  landmarks: Landmarks;
  quality: FaceQuality;
  /** Detection attempts the item took, for its result. */
  attempts: number;
}

/** A detected face waiting for its vector. */
export interface EmbedJob extends DetectedFaceJob {
  /** Blob key of the aligned crop (raw 112x112x3 RGB), deleted once the index job is queued. */
  crop_key: string;
}

/** An embedded face, ready to be written. JSON-serialisable. */
export interface IndexJob extends DetectedFaceJob {
  model_id: string;
  /**
   * The vector's little-endian Float32 bytes in base64 (2.7 KB at 512-d, where JSON numbers take ~10 KB to write,
   * store in Redis and parse). Jobs queued by earlier versions carry `vector` (numbers) instead.
   */
  vector_f32?: string;
  vector?: number[];
}

export function encodeVector(vector: Float32Array): string {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64');
}

/** The index job's vector, in either encoding. */
export function indexJobVector(job: IndexJob): Float32Array {
  if (job.vector_f32 !== undefined) {
    const bytes = Buffer.from(job.vector_f32, 'base64');
    // Copied into its own buffer: base64 decoding may return a slice of Node's shared pool, unaligned for floats.
    const vector = new Float32Array(bytes.length / 4);
    new Uint8Array(vector.buffer).set(bytes);
    return vector;
  }
  if (job.vector) return Float32Array.from(job.vector);
  throw new FaceSearchError('invalid_request', `Index job ${job.face_id} carries no vector.`, 400);
}

export const IMPORT_QUEUE = 'imports';
export const EMBED_QUEUE = 'embed';
export const INDEX_QUEUE = 'index';

/** The same id in every stage's queue: one job per item per queue. */
export const importJobId = (importId: string, index: number) => `${importId}_${index}`;
/** Deterministic, so a job delivered twice writes the same face once. */
export const importFaceId = (importId: string, index: number) => `${importId}_${index}`;
export const cropKey = (appId: string, importId: string, index: number) => `crops/${appId}/${importId}/${index}`;

export const UNFINISHED_ITEM: readonly ImportItemStatus[] = ['pending', 'running'];

/** Item results and import completion, shared by the service and both stages. */
export class ImportProgress {
  constructor(
    private readonly repo: LibraryRepository,
    private readonly blobs: BlobStore,
    private readonly handoff?: UploadHandoff,
  ) {}

  /** The item's upload goes unless it is the face's image (ImportService stores uploads where faces keep them). */
  async succeed(
    item: { import_id: string; index: number; image_key: string },
    face: { face_id: string; image_key: string },
    attempts: number,
  ) {
    const changed = await this.repo.finishImportItem(
      item.import_id,
      item.index,
      { status: 'succeeded', face_id: face.face_id, attempts },
      nowIso(),
    );
    if (changed && item.image_key !== face.image_key) await this.dropBlob(item.image_key);
    return changed;
  }

  /** Records an item's final failure (after its last attempt, in any stage). */
  async fail(data: ImportJob, error: unknown, attempts: number | undefined): Promise<void> {
    const item = await this.repo.getImportItem(data.import_id, data.index);
    if (!item || !UNFINISHED_ITEM.includes(item.status)) return;
    const reason =
      error instanceof FaceSearchError
        ? { code: error.code, message: error.message }
        : { code: 'internal', message: error instanceof Error ? error.message : String(error) };
    await this.repo.finishImportItem(
      data.import_id,
      data.index,
      { status: 'failed', error: reason, attempts: attempts ?? item.attempts + 1 },
      nowIso(),
    );
    // The upload may already be the image of the item's face (written before a later step failed): it stays.
    const face = await this.repo.getFace(data.app_id, importFaceId(data.import_id, data.index)).catch(() => null);
    if (face?.image_key !== item.image_key) await this.dropBlob(item.image_key);
    await this.completeIfDone(data.app_id, data.import_id);
  }

  /** Cancels an unfinished item; false when it had finished meanwhile (its upload may be its face's image: it stays). */
  async cancel(item: ImportItemRecord): Promise<boolean> {
    const cancelled = await this.repo.finishImportItem(
      item.import_id,
      item.index,
      { status: 'cancelled', attempts: item.attempts },
      nowIso(),
    );
    if (cancelled) await this.dropBlob(item.image_key);
    return cancelled;
  }

  async completeIfDone(appId: string, importId: string): Promise<void> {
    const job = await this.repo.getImport(appId, importId);
    if (!job || (job.status !== 'queued' && job.status !== 'running')) return;
    if (job.succeeded + job.failed < job.total) return;
    await this.repo.setImportStatus(importId, job.succeeded === 0 && job.total > 0 ? 'failed' : 'completed', nowIso());
  }

  /** Best effort: a leftover upload or image is harmless. */
  async dropBlob(key: string): Promise<void> {
    this.handoff?.take(key);
    try {
      await this.blobs.delete(key);
    } catch {
      // ignored
    }
  }
}

export interface DetectStageOptions {
  maxFacesPerUser: number;
  /** Embed each face here and queue its index job, instead of handing the crop to the embed stage. */
  inline?: { embedder: CropEmbedder; indexQueue: JobQueue<IndexJob> };
  /** Called once per item handed on to the next stage (logs, metrics). */
  onDetected?: (job: DetectedFaceJob) => void;
  /** Uploads that ImportService in this process kept in memory for this stage. */
  handoff?: UploadHandoff;
}

/** Stage 1: runs wherever the `imports` queue is consumed (embedded gateway, or the detector workers). */
export class ImportDetectStage {
  /** Last attempt number per job, for the failure record (onFailed does not carry it). */
  private readonly attempts = new Map<string, number>();
  private readonly progress: ImportProgress;

  constructor(
    private readonly repo: LibraryRepository,
    private readonly blobs: BlobStore,
    private readonly aligner: FaceAligner,
    private readonly embedQueue: JobQueue<EmbedJob>,
    private readonly options: DetectStageOptions,
  ) {
    this.progress = new ImportProgress(repo, blobs, options.handoff);
  }

  /** Consumes the `imports` queue in this process. */
  start(queue: JobQueue<ImportJob>, concurrency: number): void {
    queue.process((data, ctx) => this.handle(data, ctx), {
      concurrency,
      onFailed: (data, error) => this.handleFailed(data, error),
    });
  }

  /** Detects one item; throws to fail the attempt (a non-retryable FaceSearchError is not retried). */
  async handle(data: ImportJob, ctx: JobContext): Promise<void> {
    // The three reads go out together (one round trip on the auto-pipelining Redis client: on a VM where each
    // socket write costs ~1 ms of kernel time, round trips per item are the distributed import's overhead).
    const faceId = importFaceId(data.import_id, data.index);
    const [job, item, indexed] = await Promise.all([
      this.repo.getImport(data.app_id, data.import_id),
      this.repo.getImportItem(data.import_id, data.index),
      this.repo.getFace(data.app_id, faceId),
    ]);
    // Taken at once, so that every way out of this attempt lets go of it.
    const held = item ? this.options.handoff?.take(item.image_key) : undefined;
    if (!job || !item || !UNFINISHED_ITEM.includes(item.status)) return; // gone, or a duplicate delivery
    if (job.status === 'cancelled') {
      await this.progress.cancel(item);
      return;
    }
    const jobId = importJobId(data.import_id, data.index);
    this.attempts.set(jobId, ctx.attempt);
    if (job.status === 'queued') await this.repo.setImportStatus(job.import_id, 'running', nowIso());

    // A previous delivery got through indexing and died before recording the item: only that is left to do.
    if (indexed) {
      this.attempts.delete(jobId);
      await this.progress.succeed(item, indexed, ctx.attempt);
      await this.progress.completeIfDone(job.app_id, job.import_id);
      return;
    }
    const image = held ?? (await this.blobs.get(item.image_key));
    // The image is not read again here: an engine thread may take it instead of a copy.
    const detected = (await this.aligner.detectAligned(image, { maxFaces: 1 }, { handOver: true })).faces[0];
    if (!detected) throw errors.noFace();
    assertQuality(detected.quality.level, job.options.quality_control);
    const [group, existing] = await Promise.all([
      this.repo.getGroup(job.app_id, job.group_id),
      this.repo.listFaces(job.app_id, job.group_id, item.user_id),
    ]);
    // The import made its group; gone now means deleted meanwhile, and the delete cancels the import too.
    if (!group) {
      this.attempts.delete(jobId);
      await this.progress.cancel(item);
      return;
    }
    if (existing.length >= this.options.maxFacesPerUser) {
      throw errors.tooManyFaces(item.user_id, this.options.maxFacesPerUser);
    }
    // An upload the import stored among this user's images is the face's image as it is; other sources (an
    // object from the uploads API, or an import queued before uploads were stored there) are copied.
    const imageKey = item.image_key.startsWith(userImagePrefix(job.app_id, job.group_id, item.user_id))
      ? item.image_key
      : faceImageKey(job.app_id, job.group_id, item.user_id, faceId);
    const face: DetectedFaceJob = {
      app_id: job.app_id,
      import_id: job.import_id,
      index: item.index,
      group_id: job.group_id,
      user_id: item.user_id,
      face_id: faceId,
      image_key: imageKey,
      item_image_key: item.image_key,
      box: detected.box,
      landmarks: detected.landmarks,
      quality: detected.quality,
      attempts: ctx.attempt,
    };
    const inline = this.options.inline;
    if (inline) {
      const indexJob = await embedFace(inline.embedder, face, detected.crop);
      if (imageKey !== item.image_key) await this.blobs.copy(item.image_key, imageKey);
      await inline.indexQueue.add([{ id: jobId, data: indexJob }]);
    } else {
      const crop = cropKey(job.app_id, job.import_id, item.index);
      if (imageKey !== item.image_key) await this.blobs.copy(item.image_key, imageKey);
      await this.blobs.put(crop, detected.crop, 'application/octet-stream');
      await this.embedQueue.add([{ id: jobId, data: { ...face, crop_key: crop } }]);
    }
    this.attempts.delete(jobId);
    this.options.onDetected?.(face);
  }

  /** After the last attempt: the item fails; the crop and face image it may have stored go with it. */
  async handleFailed(data: ImportJob, error: unknown): Promise<void> {
    const jobId = importJobId(data.import_id, data.index);
    const attempts = this.attempts.get(jobId);
    this.attempts.delete(jobId);
    await this.progress.fail(data, error, attempts);
    const item = await this.repo.getImportItem(data.import_id, data.index).catch(() => null);
    const job = await this.repo.getImport(data.app_id, data.import_id).catch(() => null);
    if (!item || !job) return;
    await this.progress.dropBlob(cropKey(data.app_id, data.import_id, data.index));
    const faceId = importFaceId(data.import_id, data.index);
    if (!(await this.repo.getFace(data.app_id, faceId).catch(() => null))) {
      await this.progress.dropBlob(faceImageKey(data.app_id, job.group_id, item.user_id, faceId));
    }
  }
}

/** Embeds one face's aligned crop into its index job. */
async function embedFace(embedder: CropEmbedder, face: DetectedFaceJob, crop: Uint8Array): Promise<IndexJob> {
  const [vector] = await embedder.embed([crop]);
  if (!vector) throw new FaceSearchError('engine_error', 'The embedder returned no vector for the crop.', 500, true);
  return { ...face, model_id: embedder.modelId, vector_f32: encodeVector(vector) };
}

export interface EmbedStageOptions {
  /** Called once per item handed to the index stage (logs, metrics). */
  onEmbedded?: (job: IndexJob) => void;
}

/** Stage 2: runs wherever the `embed` queue is consumed (embedded gateway, or the embedder workers). */
export class ImportEmbedStage {
  private readonly progress: ImportProgress;

  constructor(
    private readonly repo: LibraryRepository,
    private readonly blobs: BlobStore,
    private readonly embedder: CropEmbedder,
    private readonly indexQueue: JobQueue<IndexJob>,
    private readonly options: EmbedStageOptions = {},
  ) {
    this.progress = new ImportProgress(repo, blobs);
  }

  /** Consumes the `embed` queue in this process. */
  start(queue: JobQueue<EmbedJob>, concurrency: number): void {
    queue.process((data) => this.handle(data), {
      concurrency,
      onFailed: (data, error) => this.handleFailed(data, error),
    });
  }

  /** Embeds one item's crop and hands it to the index stage; throws to fail the attempt. */
  async handle(job: EmbedJob): Promise<void> {
    const item = await this.repo.getImportItem(job.import_id, job.index);
    if (!item || !UNFINISHED_ITEM.includes(item.status)) {
      // Cancelled, failed, or a duplicate delivery of a finished item: only leftovers to clear.
      await this.discard(job);
      return;
    }
    let crop: Buffer;
    try {
      crop = await this.blobs.get(job.crop_key);
    } catch (err) {
      // The crop goes only after the index job was queued: a redelivery after that has nothing left to do.
      if (err instanceof FaceSearchError && err.code === 'blob_not_found') return;
      throw err;
    }
    const { crop_key: _crop, ...face } = job;
    const indexJob = await embedFace(this.embedder, face, crop);
    await this.indexQueue.add([{ id: importJobId(job.import_id, job.index), data: indexJob }]);
    await this.progress.dropBlob(job.crop_key);
    this.options.onEmbedded?.(indexJob);
  }

  /** After the last attempt: the item fails with the error; its crop and face image go. */
  async handleFailed(job: EmbedJob, error: unknown): Promise<void> {
    await this.discard(job);
    await this.progress.fail(job, error, job.attempts);
  }

  /** Drops the crop, and the face image unless a face record points at it. */
  private async discard(job: EmbedJob): Promise<void> {
    await this.progress.dropBlob(job.crop_key);
    if (!(await this.repo.getFace(job.app_id, job.face_id).catch(() => null))) {
      await this.progress.dropBlob(job.image_key);
    }
  }
}

export interface IndexStageOptions extends MicroBatcherOptions {
  /** MAX_FACES_PER_USER, kept where the face record is added (the detect stage's check can race another import). */
  maxFacesPerUser?: number;
  /** Called with the number of faces a batch newly indexed (metrics). */
  onFacesIndexed?: (count: number) => void;
  /** Called after each batch was written (logs). */
  onBatch?: (size: number) => void;
}

/** Stage 3: runs wherever the `index` queue is consumed (embedded gateway, or the indexer workers). */
export class ImportIndexStage {
  private readonly progress: ImportProgress;
  private readonly batcher: MicroBatcher<IndexJob>;
  private vectorsReady?: Promise<void>;

  constructor(
    private readonly repo: LibraryRepository,
    private readonly vectors: VectorStore,
    blobs: BlobStore,
    private readonly options: IndexStageOptions = {},
  ) {
    this.progress = new ImportProgress(repo, blobs);
    this.batcher = new MicroBatcher((jobs) => this.writeBatch(jobs), options);
  }

  /**
   * Consumes the `index` queue in this process. Concurrency bounds how many jobs can wait in one batch, so it
   * should be at least the batch size.
   */
  start(queue: JobQueue<IndexJob>, concurrency: number): void {
    queue.process((data) => this.batcher.submit(data), {
      concurrency,
      onFailed: (data, error) => this.handleFailed(data, error),
    });
  }

  /** Index one job through the batcher (settles with its batch). */
  handle(job: IndexJob): Promise<void> {
    return this.batcher.submit(job);
  }

  /** Flushes what is waiting; call after the queue stopped handing out jobs. */
  close(): Promise<void> {
    return this.batcher.close();
  }

  /** Writes a batch: one vector upsert, then records and results. Throws to fail every job of the batch. */
  async writeBatch(jobs: IndexJob[]): Promise<void> {
    const seen = new Set<string>();
    const distinct = jobs.filter((job) => {
      const key = `${job.app_id}/${job.face_id}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    // The jobs of a batch are independent (one face each), so their library calls run together: in sequence they
    // were ~7 Redis round trips per face, each its own socket write.
    const items = await Promise.all(distinct.map((job) => this.repo.getImportItem(job.import_id, job.index)));
    const unfinished: Array<{ job: IndexJob; item: ImportItemRecord }> = [];
    for (const [i, job] of distinct.entries()) {
      const item = items[i];
      if (item && UNFINISHED_ITEM.includes(item.status)) unfinished.push({ job, item });
      // Cancelled (or its import deleted) while it was detected or embedded: the stored face image has no owner.
      else if (!item || item.status === 'cancelled') await this.progress.dropBlob(job.image_key);
    }
    const todo = await this.withoutDeletedGroups(unfinished);
    if (todo.length === 0) return;
    // A job without a readable vector throws here; the batcher then retries the batch's jobs one by one.
    const points = todo.map(toPoint);
    await this.ensureVectors(points[0].vector.length);
    // Vectors first, records after: a listed face is always searchable.
    await this.vectors.upsert(points);
    // Settled one by one: a job that fails (e.g. too_many_faces) must not keep its siblings' imports from completing.
    const written = await Promise.allSettled(
      todo.map(async (job) => {
        const created = await this.writeRecords(job);
        const recorded = await this.progress.succeed({ ...job, image_key: job.item_image_key }, job, job.attempts);
        if (!recorded && created && (await this.repo.getImportItem(job.import_id, job.index))?.status === 'cancelled') {
          // Cancelled while this batch was written, and the cancel let go of the upload: the face must not stay
          // without its image.
          await this.undoFace(job);
          return false;
        }
        return created;
      }),
    );
    const added = written.filter((w) => w.status === 'fulfilled' && w.value).length;
    for (const key of new Set(todo.map((j) => `${j.app_id}\u0000${j.import_id}`))) {
      const [appId, importId] = key.split('\u0000');
      await this.progress.completeIfDone(appId, importId);
    }
    if (added > 0) this.options.onFacesIndexed?.(added);
    this.options.onBatch?.(todo.length);
    // The batcher then runs each job alone: those written are finished and pass; the failed one fails on its own.
    const failed = written.find((w) => w.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** After the last attempt: the item fails; its face image goes unless a record points at it. */
  async handleFailed(job: IndexJob, error: unknown): Promise<void> {
    if (!(await this.repo.getFace(job.app_id, job.face_id).catch(() => null))) {
      await this.progress.dropBlob(job.image_key);
    }
    await this.progress.fail(job, error, job.attempts);
  }

  /**
   * The jobs whose group still exists. The import made its group, so a missing one was deleted after the import
   * started (the delete cancels the import too): its items are cancelled and their images dropped, rather than the
   * group brought back without the images its delete removed.
   */
  private async withoutDeletedGroups(
    unfinished: Array<{ job: IndexJob; item: ImportItemRecord }>,
  ): Promise<IndexJob[]> {
    const groups = new Map<string, Promise<boolean>>();
    const exists = (job: IndexJob) => {
      const key = `${job.app_id}\u0000${job.group_id}`;
      let found = groups.get(key);
      if (!found) {
        found = this.repo.getGroup(job.app_id, job.group_id).then((g) => g !== null);
        groups.set(key, found);
      }
      return found;
    };
    const live: IndexJob[] = [];
    for (const { job, item } of unfinished) {
      if (await exists(job)) {
        live.push(job);
        continue;
      }
      const cancelled = await this.progress.cancel(item);
      if (cancelled && job.image_key !== item.image_key) await this.progress.dropBlob(job.image_key);
    }
    return live;
  }

  /** Removes a face this stage wrote for an item cancelled meanwhile: its record, its vector, its image. */
  private async undoFace(job: IndexJob): Promise<void> {
    await this.repo.deleteFace(job.app_id, job.face_id);
    await this.vectors.deleteFaces(job.app_id, [job.face_id]);
    await this.progress.dropBlob(job.image_key);
  }

  /** The user and face records; false when the face was already there (a repeated delivery). */
  private async writeRecords(job: IndexJob): Promise<boolean> {
    const now = nowIso();
    const user = await this.repo.getUser(job.app_id, job.group_id, job.user_id);
    await this.repo.upsertUser({
      app_id: job.app_id,
      group_id: job.group_id,
      user_id: job.user_id,
      user_info: user?.user_info ?? null,
      created_at: user?.created_at ?? now,
      updated_at: now,
    });
    const record: FaceRecord = {
      app_id: job.app_id,
      group_id: job.group_id,
      user_id: job.user_id,
      face_id: job.face_id,
      image_key: job.image_key,
      box: job.box,
      landmarks: job.landmarks,
      quality: job.quality,
      model_id: job.model_id,
      created_at: now,
    };
    try {
      await this.repo.addFace(record, { maxFacesPerUser: this.options.maxFacesPerUser });
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      // Over the limit (another import or a copy filled the user meanwhile): the vector written for it goes too.
      if (err instanceof FaceSearchError && err.code === 'too_many_faces') {
        await this.vectors.deleteFaces(job.app_id, [job.face_id]);
      }
      throw err;
    }
  }

  /** The indexer learns the dimension from the first vector it sees (it runs no model itself). */
  private ensureVectors(dim: number): Promise<void> {
    this.vectorsReady ??= this.vectors.init(dim).catch((err) => {
      this.vectorsReady = undefined;
      throw err;
    });
    return this.vectorsReady;
  }
}

function toPoint(job: IndexJob): VectorPoint {
  return {
    id: job.face_id,
    vector: indexJobVector(job),
    payload: {
      app_id: job.app_id,
      group_id: job.group_id,
      user_id: job.user_id,
      face_id: job.face_id,
      model_id: job.model_id,
    },
  };
}
