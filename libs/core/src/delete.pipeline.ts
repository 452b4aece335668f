/**
 * Deletes of faces, users and groups, second half. The gateway removes the library records inside the request
 * (so the API answers consistently at once) and queues a DeleteJob; whoever consumes the `deletes` queue (the
 * indexer, or the embedded gateway) removes the vectors and the images. Until then the leftover vectors are
 * invisible: search and compare only count hits whose face record exists.
 *
 * A delete job is retried until it succeeds: after the queue's last attempt it queues its own next round
 * (with a growing pause), so a vector store that is down for an hour still gets its deletes afterwards.
 */
import type { BlobStore, JobContext, JobQueue, LibraryRepository, VectorStore } from '@facesearch/common';

export const DELETE_QUEUE = 'deletes';

interface DeleteBase {
  /** Unique per delete request; the job id is `{delete_id}_{round}`. */
  delete_id: string;
  app_id: string;
  /** The embedding dimension, so a process that has not written a vector yet (the indexer) can open the store. */
  dim: number;
  /** 0 for the first round; each round after the queue's last attempt adds one. */
  round: number;
}

/**
 * Vectors are always removed by the face ids captured when the records were deleted, never by a filter on user or
 * group: a user or group created again under the same id before the job runs keeps its new faces.
 */
export type DeleteJob = DeleteBase &
  (
    | { kind: 'faces'; face_ids: string[]; image_keys: string[] }
    /** The images of a deleted group, by prefix; skipped if the group exists again (its new images live there). */
    | { kind: 'group_images'; group_id: string }
  );

/** Face ids per delete job, so a large group becomes many small jobs. */
export const DELETE_CHUNK = 1000;

export const deleteJobId = (job: Pick<DeleteJob, 'delete_id' | 'round'>) => `${job.delete_id}_${job.round}`;

/** Blob keys of enrolled face images; grouped so deleting a group or user is one prefix delete. */
export const groupImagePrefix = (appId: string, groupId: string) => `faces/${appId}/${groupId}/`;
export const userImagePrefix = (appId: string, groupId: string, userId: string) =>
  `${groupImagePrefix(appId, groupId)}${userId}/`;
export const faceImageKey = (appId: string, groupId: string, userId: string, faceId: string) =>
  `${userImagePrefix(appId, groupId, userId)}${faceId}`;
/**
 * Where an import stores an item's upload: the image key of the face the item becomes, so a successful item needs
 * no copy and no delete. `attempt` tells apart the uploads of two racing requests with the same Idempotency-Key.
 */
export const importImageKey = (appId: string, groupId: string, userId: string, faceId: string, attempt?: string) =>
  `${faceImageKey(appId, groupId, userId, faceId)}${attempt ? `-${attempt}` : ''}`;

/**
 * Removes deleted faces' vectors and images. Idempotent. Faces whose record exists again (the same id enrolled again
 * since, e.g. an Idempotency-Key retry) are left alone.
 */
export async function removeDeleted(
  repo: LibraryRepository,
  vectors: VectorStore,
  blobs: BlobStore,
  job: DeleteJob,
): Promise<void> {
  switch (job.kind) {
    case 'faces': {
      const gone: string[] = [];
      const keys: string[] = [];
      for (const [i, faceId] of job.face_ids.entries()) {
        if (await repo.getFace(job.app_id, faceId)) continue;
        gone.push(faceId);
        if (job.image_keys[i]) keys.push(job.image_keys[i]);
      }
      await vectors.deleteFaces(job.app_id, gone);
      for (const key of keys) await blobs.delete(key);
      return;
    }
    case 'group_images': {
      // Asked again before each batch: a group made anew under the same id stops the deletion, so its images stay.
      const stillGone = async () => !(await repo.getGroup(job.app_id, job.group_id));
      if (!(await stillGone())) return;
      await blobs.deletePrefix(groupImagePrefix(job.app_id, job.group_id), { stillWanted: stillGone });
      return;
    }
  }
}

export interface DeleteStageOptions {
  /** Pause before round 1; doubles each round up to maxPauseMs. Default 1 s, at most 60 s. */
  pauseMs?: number;
  maxPauseMs?: number;
  onDeleted?: (job: DeleteJob) => void;
  /** A round ran out of attempts; the next one is queued. */
  onRetry?: (next: DeleteJob, error: unknown) => void;
  /** The next round could not even be queued (the queue is down or closing): the job is lost. */
  onLost?: (job: DeleteJob, error: unknown) => void;
}

/** Consumes the `deletes` queue (the indexer workers, or the embedded gateway). */
export class DeleteStage {
  private readonly pauses = new Set<() => void>();
  private vectorsReady?: Promise<void>;
  private closed = false;

  constructor(
    private readonly repo: LibraryRepository,
    private readonly vectors: VectorStore,
    private readonly blobs: BlobStore,
    private readonly queue: JobQueue<DeleteJob>,
    private readonly options: DeleteStageOptions = {},
  ) {}

  start(concurrency: number): void {
    this.queue.process((job, ctx) => this.handle(job, ctx), {
      concurrency,
      onFailed: async (job, error) => this.options.onLost?.(job, error),
    });
  }

  async handle(job: DeleteJob, ctx: JobContext): Promise<void> {
    // A later round waits first; a retryable error when closing hands it back to the queue (its retries, in Redis).
    if (job.round > 0 && ctx.attempt === 1) {
      await this.pause(job.round);
      if (this.closed) throw new Error('shutting down: the delete job goes back to the queue');
    }
    try {
      await this.ensureVectors(job.dim);
      await removeDeleted(this.repo, this.vectors, this.blobs, job);
    } catch (error) {
      if (ctx.attempt < ctx.maxAttempts) throw error;
      const next: DeleteJob = { ...job, round: job.round + 1 };
      await this.queue.add([{ id: deleteJobId(next), data: next }]);
      this.options.onRetry?.(next, error);
      return;
    }
    this.options.onDeleted?.(job);
  }

  /** Cuts pauses short; call before closing the queue. */
  close(): void {
    this.closed = true;
    for (const wake of this.pauses) wake();
  }

  private pause(round: number): Promise<void> {
    const base = this.options.pauseMs ?? 1000;
    const ms = Math.min(this.options.maxPauseMs ?? 60_000, base * 2 ** (round - 1));
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.pauses.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.pauses.add(wake);
    });
  }

  private ensureVectors(dim: number): Promise<void> {
    this.vectorsReady ??= this.vectors.init(dim).catch((err) => {
      this.vectorsReady = undefined;
      throw err;
    });
    return this.vectorsReady;
  }
}
