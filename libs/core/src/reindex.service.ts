import {
  type BlobStore,
  type Box,
  type EmbeddedFace,
  type FaceAnalyzer,
  type FaceRecord,
  FaceSearchError,
  type LibraryRepository,
  type Page,
  type VectorStore,
} from '@facesearch/common';
import { errors, nowIso } from './errors';

export interface ReindexOptions {
  /** Re-embed every face, not only those stored with another model (or without a vector). */
  all?: boolean;
}

export interface ReindexError {
  app_id: string;
  face_id: string;
  code: string;
  message: string;
}

export interface ReindexProgress {
  status: 'idle' | 'running' | 'completed' | 'failed';
  /** The running embedding model: every rewritten vector and face record gets this id. */
  model_id: string;
  all: boolean;
  /** Faces in the library when the run started. */
  total: number;
  /** Faces looked at so far: reindexed + skipped + failed (+ deleted while the run went on). */
  processed: number;
  reindexed: number;
  /** Already embedded with the running model (a run without `all`). */
  skipped: number;
  failed: number;
  /** The first failures, with their reason (at most MAX_REPORTED_ERRORS). */
  errors: ReindexError[];
  started_at: string | null;
  finished_at: string | null;
  /** Why the run stopped, when status is `failed`. */
  error: { code: string; message: string } | null;
}

const MAX_REPORTED_ERRORS = 100;
const PAGE = 500;

const reindexRunning = () =>
  new FaceSearchError('reindex_running', 'A reindex is already running; follow it with GET /v1/admin/reindex.', 409);

/**
 * Re-embeds stored faces from their stored images with the running model: after a model change, faces indexed
 * with the old model are invisible to search (which compares only vectors of the running model) until this
 * rewrites their vector and record. Faces are visited app by app, group by group, user by user; one run at a
 * time per process. Safe to re-run: a face already on the running model is skipped (unless `all`).
 */
export class ReindexService {
  private progress: ReindexProgress;
  private running: Promise<ReindexProgress> | null = null;

  constructor(
    private readonly repo: LibraryRepository,
    private readonly vectors: VectorStore,
    private readonly blobs: BlobStore,
    private readonly analyzer: FaceAnalyzer,
    private readonly options: { concurrency?: number } = {},
  ) {
    this.progress = this.fresh(false, 'idle');
  }

  status(): ReindexProgress {
    return { ...this.progress, errors: [...this.progress.errors] };
  }

  /** Starts a run in the background; 409 `reindex_running` when one is running. */
  start(options: ReindexOptions = {}): ReindexProgress {
    void this.run(options).catch(() => undefined); // the outcome is in status()
    return this.status();
  }

  /** Runs to the end (the CLI and tests await it); the progress is readable meanwhile through status(). */
  run(options: ReindexOptions = {}): Promise<ReindexProgress> {
    if (this.running) throw reindexRunning();
    this.progress = this.fresh(options.all ?? false, 'running');
    this.progress.started_at = nowIso();
    this.running = this.execute(options.all ?? false).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Waits for the running run, if any (tests). */
  async idle(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  /** Shutdown: the run stops after the faces in hand (it ends `failed`, `reindex_stopped`; re-run to finish). */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.idle();
  }

  private stopping = false;

  private async execute(all: boolean): Promise<ReindexProgress> {
    const p = this.progress;
    try {
      p.total = await this.countFaces();
      const concurrency = Math.max(1, this.options.concurrency ?? 2);
      for await (const faces of this.facesByUser()) {
        const stored = new Map(
          (
            await this.vectors.retrieve(
              faces[0].app_id,
              faces.map((f) => f.face_id),
            )
          ).map((v) => [v.face_id, v]),
        );
        const todo = faces.filter((f) => {
          const vector = stored.get(f.face_id);
          const current = f.model_id === this.analyzer.modelId && vector?.model_id === this.analyzer.modelId;
          if (current && !all) {
            p.skipped++;
            p.processed++;
          }
          return all || !current;
        });
        for (let i = 0; i < todo.length; i += concurrency) {
          if (this.stopping)
            throw new FaceSearchError('reindex_stopped', 'The service stopped during the reindex.', 503, true);
          await Promise.all(todo.slice(i, i + concurrency).map((face) => this.reindexOne(face)));
        }
      }
      p.status = 'completed';
    } catch (err) {
      p.status = 'failed';
      p.error =
        err instanceof FaceSearchError
          ? err.toJSON()
          : { code: 'internal', message: err instanceof Error ? err.message : String(err) };
    }
    p.finished_at = nowIso();
    return this.status();
  }

  private async reindexOne(face: FaceRecord): Promise<void> {
    const p = this.progress;
    try {
      const image = await this.blobs.get(face.image_key);
      const analysis = await this.analyzer.analyze(image, { maxFaces: 20 });
      const match = sameFace(face.box, analysis.faces);
      if (!match) throw errors.noFace(`the stored image of face ${face.face_id}`);
      await this.vectors.upsert([
        {
          id: face.face_id,
          vector: match.embedding,
          payload: {
            app_id: face.app_id,
            group_id: face.group_id,
            user_id: face.user_id,
            face_id: face.face_id,
            model_id: analysis.modelId,
          },
        },
      ]);
      const updated = await this.repo.updateFace({
        ...face,
        box: match.box,
        landmarks: match.landmarks,
        quality: match.quality,
        model_id: analysis.modelId,
      });
      // Deleted while we embedded it: take the vector we just wrote away again.
      if (!updated) await this.vectors.deleteFaces(face.app_id, [face.face_id]);
      else p.reindexed++;
    } catch (err) {
      if (err instanceof FaceSearchError && err.retryable) throw err; // a store or engine is down: stop the run
      p.failed++;
      if (p.errors.length < MAX_REPORTED_ERRORS) {
        const e =
          err instanceof FaceSearchError
            ? err.toJSON()
            : { code: 'internal', message: err instanceof Error ? err.message : String(err) };
        p.errors.push({ app_id: face.app_id, face_id: face.face_id, ...e });
      }
    } finally {
      p.processed++;
    }
  }

  private async countFaces(): Promise<number> {
    let n = 0;
    for await (const faces of this.facesByUser()) n += faces.length;
    return n;
  }

  /** Every user's faces (non-empty lists), app by app and group by group. */
  private async *facesByUser(): AsyncGenerator<FaceRecord[]> {
    for await (const app of pages((cursor) => this.repo.listApps({ limit: PAGE, cursor }))) {
      for await (const group of pages((cursor) => this.repo.listGroups(app.app_id, { limit: PAGE, cursor }))) {
        for await (const user of pages((cursor) =>
          this.repo.listUsers(app.app_id, group.group_id, { limit: PAGE, cursor }),
        )) {
          const faces = await this.repo.listFaces(app.app_id, group.group_id, user.user_id);
          if (faces.length > 0) yield faces;
        }
      }
    }
  }

  private fresh(all: boolean, status: ReindexProgress['status']): ReindexProgress {
    return {
      status,
      model_id: this.analyzer.modelId,
      all,
      total: 0,
      processed: 0,
      reindexed: 0,
      skipped: 0,
      failed: 0,
      errors: [],
      started_at: null,
      finished_at: null,
      error: null,
    };
  }
}

async function* pages<T>(fetch: (cursor: string | null) => Promise<Page<T>>): AsyncGenerator<T> {
  let cursor: string | null = null;
  do {
    const page: Page<T> = await fetch(cursor);
    yield* page.items;
    cursor = page.next_cursor;
  } while (cursor);
}

/**
 * The detected face that is the enrolled one: the best overlap with the stored box (a new detector may place
 * it a little differently). Enrolment kept the largest face, so with no overlap at all there is no match.
 */
function sameFace(box: Box, faces: EmbeddedFace[]): EmbeddedFace | null {
  let best: EmbeddedFace | null = null;
  let bestIou = 0;
  for (const f of faces) {
    const overlap = iou(box, f.box);
    if (overlap > bestIou) {
      best = f;
      bestIou = overlap;
    }
  }
  return bestIou >= 0.3 ? best : null;
}

function iou(a: Box, b: Box): number {
  const x1 = Math.max(a.x, b.x);
  const y1 = Math.max(a.y, b.y);
  const x2 = Math.min(a.x + a.width, b.x + b.width);
  const y2 = Math.min(a.y + a.height, b.y + b.height);
  const inter = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
  const union = a.width * a.height + b.width * b.height - inter;
  return union > 0 ? inter / union : 0;
}
