import { randomUUID } from 'node:crypto';
import type {
  BlobStore,
  JobQueue,
  EmbeddedFace,
  FaceAnalyzer,
  FaceRecord,
  GroupRecord,
  ImageInfo,
  LibraryRepository,
  Page,
  PageRequest,
  UserRecord,
  VectorPayload,
  VectorStore,
} from '@facesearch/common';
import { DELETE_CHUNK, type DeleteJob, deleteJobId, faceImageKey, removeDeleted } from './delete.pipeline';
import { checkId, errors, isConflict, nowIso } from './errors';
import { idempotencyKeyReused, idempotentId } from './idempotency';
import { assertQuality, type QualityControl } from './quality';

export type EnrolMode = 'APPEND' | 'REPLACE';

export interface LibraryOptions {
  maxFacesPerUser: number;
  /** Called after faces were indexed (metrics). */
  onFacesIndexed?: (count: number) => void;
  /**
   * Called before a group's records go (ImportService.cancelImportsInto): imports into it stop, rather than bring the
   * group back without the images its delete removes.
   */
  beforeGroupDelete?: (appId: string, groupId: string) => Promise<void>;
}

export interface EnrolInput {
  image: Uint8Array;
  user_info?: string | null;
  quality_control?: QualityControl;
  mode?: EnrolMode;
  /**
   * The request's Idempotency-Key: the face id is derived from it, so a retry of the same request returns the
   * face the first one stored (and repairs its vector and image if that one died half-way) instead of adding one.
   */
  idempotency_key?: string;
}

export interface EnrolResult {
  face: FaceRecord;
  image: ImageInfo;
  /** Ids of the faces a REPLACE removed. */
  replaced_face_ids: string[];
}

/** A delete job without its id and round (LibraryService adds them). */
type DeleteRequest = Omit<DeleteJob, 'delete_id' | 'dim' | 'round'>;

/** Creates the group when missing; safe when several processes race to create it. */
export async function ensureGroup(repo: LibraryRepository, appId: string, groupId: string): Promise<GroupRecord> {
  const existing = await repo.getGroup(appId, checkId('group_id', groupId));
  if (existing) return existing;
  const group: GroupRecord = { app_id: appId, group_id: groupId, created_at: nowIso() };
  try {
    await repo.createGroup(group);
    return group;
  } catch (err) {
    const raced = isConflict(err) ? await repo.getGroup(appId, groupId) : null;
    if (raced) return raced;
    throw err;
  }
}

/** Groups, users and faces of an app's library; keeps records, vectors and images in step. */
export class LibraryService {
  constructor(
    private readonly repo: LibraryRepository,
    private readonly vectors: VectorStore,
    private readonly blobs: BlobStore,
    private readonly analyzer: FaceAnalyzer,
    /** Vectors and images of deleted things are removed by whoever consumes this queue (see DeleteStage). */
    private readonly deletes: JobQueue<DeleteJob>,
    private readonly options: LibraryOptions,
  ) {}

  // ---- groups

  async createGroup(appId: string, groupId: string): Promise<GroupRecord> {
    const group: GroupRecord = { app_id: appId, group_id: checkId('group_id', groupId), created_at: nowIso() };
    try {
      await this.repo.createGroup(group);
    } catch (err) {
      if (isConflict(err)) throw errors.groupExists(groupId);
      throw err;
    }
    return group;
  }

  /** Creates the group when missing (enrolment and imports do, like Baidu's user/add). */
  ensureGroup(appId: string, groupId: string): Promise<GroupRecord> {
    return ensureGroup(this.repo, appId, groupId);
  }

  async getGroup(appId: string, groupId: string): Promise<GroupRecord> {
    const group = await this.repo.getGroup(appId, checkId('group_id', groupId));
    if (!group) throw errors.groupNotFound(groupId);
    return group;
  }

  listGroups(appId: string, page: PageRequest): Promise<Page<GroupRecord>> {
    return this.repo.listGroups(appId, page);
  }

  async deleteGroup(appId: string, groupId: string): Promise<{ deleted_faces: number }> {
    await this.getGroup(appId, groupId);
    await this.options.beforeGroupDelete?.(appId, groupId);
    const faceIds = await this.repo.deleteGroup(appId, groupId);
    for (let i = 0; i < faceIds.length; i += DELETE_CHUNK) {
      const chunk = faceIds.slice(i, i + DELETE_CHUNK);
      await this.scheduleDelete({ kind: 'faces', app_id: appId, face_ids: chunk, image_keys: [] } as DeleteRequest);
    }
    await this.scheduleDelete({ kind: 'group_images', app_id: appId, group_id: groupId } as DeleteRequest);
    return { deleted_faces: faceIds.length };
  }

  // ---- users

  async getUser(appId: string, groupId: string, userId: string): Promise<UserRecord> {
    await this.getGroup(appId, groupId);
    const user = await this.repo.getUser(appId, groupId, checkId('user_id', userId));
    if (!user) throw errors.userNotFound(groupId, userId);
    return user;
  }

  async listUsers(appId: string, groupId: string, page: PageRequest): Promise<Page<UserRecord>> {
    await this.getGroup(appId, groupId);
    return this.repo.listUsers(appId, groupId, page);
  }

  async updateUser(appId: string, groupId: string, userId: string, userInfo: string | null): Promise<UserRecord> {
    const user = await this.getUser(appId, groupId, userId);
    return this.repo.upsertUser({ ...user, user_info: userInfo, updated_at: nowIso() });
  }

  async deleteUser(appId: string, groupId: string, userId: string): Promise<{ deleted_faces: number }> {
    await this.getUser(appId, groupId, userId);
    // Image keys from the records: an imported face keeps its upload's key, which may carry a suffix.
    const imageKeys = new Map((await this.repo.listFaces(appId, groupId, userId)).map((f) => [f.face_id, f.image_key]));
    const faceIds = await this.repo.deleteUser(appId, groupId, userId);
    if (faceIds.length === 0) return { deleted_faces: 0 };
    await this.scheduleDelete({
      kind: 'faces',
      app_id: appId,
      face_ids: faceIds,
      image_keys: faceIds.map((faceId) => imageKeys.get(faceId) ?? faceImageKey(appId, groupId, userId, faceId)),
    } as DeleteRequest);
    return { deleted_faces: faceIds.length };
  }

  /** Copies the user with its faces (new face ids, same vectors and images) into another group. */
  async copyUser(
    appId: string,
    groupId: string,
    userId: string,
    toGroupId: string,
  ): Promise<{ user: UserRecord; faces: FaceRecord[] }> {
    const user = await this.getUser(appId, groupId, userId);
    await this.getGroup(appId, toGroupId);
    if (toGroupId === groupId) throw errors.invalidRequest('to_group_id: must differ from the source group');
    const faces = await this.repo.listFaces(appId, groupId, userId);
    const existing = await this.repo.getUser(appId, toGroupId, userId);
    const already = existing ? (await this.repo.listFaces(appId, toGroupId, userId)).length : 0;
    if (already + faces.length > this.options.maxFacesPerUser)
      throw errors.tooManyFaces(userId, this.options.maxFacesPerUser);

    const vectors = new Map(
      (
        await this.vectors.retrieve(
          appId,
          faces.map((f) => f.face_id),
        )
      ).map((v) => [v.face_id, v]),
    );
    const now = nowIso();
    // The images first: if one cannot be copied, nothing of the copy is left behind (no empty user in the target).
    const planned: Array<{
      face: FaceRecord;
      stored: VectorPayload & { vector: Float32Array };
      faceId: string;
      imageKey: string;
    }> = [];
    try {
      for (const face of faces) {
        const stored = vectors.get(face.face_id);
        if (!stored) continue; // no vector: the face cannot be searched anyway; nothing to copy
        const faceId = randomUUID();
        const imageKey = faceImageKey(appId, toGroupId, userId, faceId);
        await this.blobs.copy(face.image_key, imageKey);
        planned.push({ face, stored, faceId, imageKey });
      }
    } catch (err) {
      await Promise.all(planned.map((p) => this.blobs.delete(p.imageKey).catch(() => undefined)));
      throw err;
    }
    const copies: FaceRecord[] = [];
    let copiedUser: UserRecord;
    try {
      copiedUser = await this.repo.upsertUser({
        app_id: appId,
        group_id: toGroupId,
        user_id: userId,
        user_info: user.user_info,
        created_at: existing?.created_at ?? now,
        updated_at: now,
      });
      if (planned.length > 0) {
        await this.vectors.upsert(
          planned.map(({ stored, faceId }) => ({
            id: faceId,
            vector: stored.vector,
            payload: {
              app_id: appId,
              group_id: toGroupId,
              user_id: userId,
              face_id: faceId,
              model_id: stored.model_id,
            },
          })),
        );
      }
      for (const { face, stored, faceId, imageKey } of planned) {
        const copy: FaceRecord = {
          ...face,
          group_id: toGroupId,
          face_id: faceId,
          image_key: imageKey,
          model_id: stored.model_id,
          created_at: now,
        };
        // The limit again where the record is added: a concurrent copy or import may have filled the user.
        await this.repo.addFace(copy, { maxFacesPerUser: this.options.maxFacesPerUser });
        copies.push(copy);
      }
    } catch (err) {
      await this.takeBack(appId, toGroupId, userId, planned, existing === null);
      throw err;
    }
    // The target group deleted while this copy was written: its delete did not see these faces, so take them back.
    if (!(await this.repo.getGroup(appId, toGroupId))) {
      await this.takeBack(appId, toGroupId, userId, planned, true);
      throw errors.groupNotFound(toGroupId);
    }
    this.options.onFacesIndexed?.(copies.length);
    return { user: copiedUser, faces: copies };
  }

  /**
   * Takes back faces written into a group (records, vectors, images, best effort): a copy that could not be
   * completed, or an enrol or copy whose group was deleted meanwhile. `dropUser`: the user's record goes too (one the
   * copy made, or any user of a deleted group), with whatever faces it still held.
   */
  private async takeBack(
    appId: string,
    groupId: string,
    userId: string,
    written: Array<{ faceId: string; imageKey: string }>,
    dropUser: boolean,
  ): Promise<void> {
    for (const { faceId } of written) await this.repo.deleteFace(appId, faceId).catch(() => false);
    const leftover = dropUser ? await this.repo.deleteUser(appId, groupId, userId).catch(() => []) : [];
    const faceIds = [...new Set([...written.map((w) => w.faceId), ...leftover])];
    if (faceIds.length > 0) await this.vectors.deleteFaces(appId, faceIds).catch(() => undefined);
    await Promise.all(written.map((w) => this.blobs.delete(w.imageKey).catch(() => undefined)));
  }

  // ---- faces

  /** Detects the largest face, checks quality, and stores image, vector and record. Creates group and user if needed. */
  async enrol(appId: string, groupId: string, userId: string, input: EnrolInput): Promise<EnrolResult> {
    checkId('group_id', groupId);
    checkId('user_id', userId);
    const analysis = await this.analyzer.analyze(input.image, { maxFaces: 1 });
    const face = analysis.faces[0];
    if (!face) throw errors.noFace();
    assertQuality(face.quality.level, input.quality_control ?? 'NONE');

    const mode = input.mode ?? 'APPEND';
    const faceId = input.idempotency_key ? idempotentId(appId, 'face', input.idempotency_key) : randomUUID();
    const earlier = input.idempotency_key ? await this.repo.getFace(appId, faceId) : null;
    if (earlier && (earlier.group_id !== groupId || earlier.user_id !== userId)) {
      throw idempotencyKeyReused(`it enrolled face ${faceId} of user '${earlier.user_id}' in '${earlier.group_id}'`);
    }
    await this.ensureGroup(appId, groupId);
    const previous = (await this.repo.listFaces(appId, groupId, userId)).filter((f) => f.face_id !== faceId);
    if (!earlier && mode === 'APPEND' && previous.length >= this.options.maxFacesPerUser) {
      throw errors.tooManyFaces(userId, this.options.maxFacesPerUser);
    }
    const record = await this.indexFace(appId, groupId, userId, {
      faceId,
      image: input.image,
      face,
      modelId: analysis.modelId,
      userInfo: input.user_info,
      recordExists: earlier !== null,
      // APPEND keeps the limit where the record is added too: concurrent enrols may have filled the user meanwhile.
      maxFacesPerUser: mode === 'APPEND' && !earlier ? this.options.maxFacesPerUser : undefined,
    });
    // The group deleted while this face was written: its delete did not see the face, so take it back.
    if (!(await this.repo.getGroup(appId, groupId))) {
      await this.takeBack(appId, groupId, userId, [{ faceId, imageKey: record.image_key }], true);
      throw errors.groupNotFound(groupId);
    }
    // REPLACE removes the old faces only once the new one is stored: a failure never leaves the user empty. Old: the
    // faces listed before, and those stored since that came before this one (another REPLACE at the same time), so
    // that two REPLACEs at once leave one face, the later (each removing only what it listed left both).
    const replaced: string[] = [];
    if (mode === 'REPLACE') {
      const listed = new Set(previous.map((f) => f.face_id));
      const older = (await this.repo.listFaces(appId, groupId, userId)).filter(
        (f) => f.face_id !== record.face_id && (listed.has(f.face_id) || storedBefore(f, record)),
      );
      for (const old of older) await this.repo.deleteFace(old.app_id, old.face_id);
      if (older.length > 0) {
        await this.scheduleDelete({
          kind: 'faces',
          app_id: appId,
          face_ids: older.map((f) => f.face_id),
          image_keys: older.map((f) => f.image_key),
        } as DeleteRequest);
      }
      replaced.push(...older.map((f) => f.face_id));
    }
    return { face: record, image: analysis.image, replaced_face_ids: replaced };
  }

  /**
   * Stores one analysed face: image, then vector, then the record (so a listed face is always searchable).
   * Idempotent for a given faceId: a repeat after a crash rewrites the same blob and point and skips the record.
   */
  async indexFace(
    appId: string,
    groupId: string,
    userId: string,
    input: {
      faceId: string;
      image: Uint8Array;
      face: EmbeddedFace;
      modelId: string;
      userInfo?: string | null;
      /** The face record exists already (a retry): a failure must not take its image and vector back. */
      recordExists?: boolean;
      /** Refuse (too_many_faces) if the user already holds this many faces when the record is added. */
      maxFacesPerUser?: number;
    },
  ): Promise<FaceRecord> {
    const now = nowIso();
    const imageKey = faceImageKey(appId, groupId, userId, input.faceId);
    const takeBack = async (what: 'vector' | 'image') => {
      if (input.recordExists) return;
      if (what === 'vector') await this.vectors.deleteFaces(appId, [input.faceId]).catch(() => undefined);
      await this.blobs.delete(imageKey).catch(() => undefined);
    };
    await this.blobs.put(imageKey, input.image);
    try {
      await this.vectors.upsert([
        {
          id: input.faceId,
          vector: input.face.embedding,
          payload: {
            app_id: appId,
            group_id: groupId,
            user_id: userId,
            face_id: input.faceId,
            model_id: input.modelId,
          },
        },
      ]);
    } catch (err) {
      await takeBack('image'); // no orphan image
      throw err;
    }
    let created: boolean;
    let record: FaceRecord;
    try {
      ({ created, record } = await this.writeFaceRecords(appId, groupId, userId, imageKey, input, now));
    } catch (err) {
      // Image and vector without a record: nobody could see or delete them. Take them back (best effort; a
      // retry with the same Idempotency-Key writes all three again).
      await takeBack('vector');
      throw err;
    }
    if (created) this.options.onFacesIndexed?.(1);
    return record;
  }

  /** The user (created or touched) and the face record; created is false when the record was already there. */
  private async writeFaceRecords(
    appId: string,
    groupId: string,
    userId: string,
    imageKey: string,
    input: { faceId: string; face: EmbeddedFace; modelId: string; userInfo?: string | null; maxFacesPerUser?: number },
    now: string,
  ): Promise<{ created: boolean; record: FaceRecord }> {
    const existing = await this.repo.getUser(appId, groupId, userId);
    await this.repo.upsertUser({
      app_id: appId,
      group_id: groupId,
      user_id: userId,
      // undefined keeps the stored user_info
      user_info: input.userInfo === undefined ? (existing?.user_info ?? null) : input.userInfo,
      created_at: existing?.created_at ?? now,
      updated_at: now,
    });
    const record: FaceRecord = {
      app_id: appId,
      group_id: groupId,
      user_id: userId,
      face_id: input.faceId,
      image_key: imageKey,
      box: input.face.box,
      landmarks: input.face.landmarks,
      quality: input.face.quality,
      model_id: input.modelId,
      created_at: now,
    };
    try {
      await this.repo.addFace(record, { maxFacesPerUser: input.maxFacesPerUser });
      return { created: true, record };
    } catch (err) {
      if (!isConflict(err)) throw err;
      return { created: false, record: (await this.repo.getFace(appId, input.faceId)) ?? record };
    }
  }

  async listFaces(appId: string, groupId: string, userId: string): Promise<FaceRecord[]> {
    await this.getUser(appId, groupId, userId);
    return this.repo.listFaces(appId, groupId, userId);
  }

  async getFace(appId: string, faceId: string): Promise<FaceRecord> {
    const face = await this.repo.getFace(appId, checkId('face_id', faceId));
    if (!face) throw errors.faceNotFound(faceId);
    return face;
  }

  async faceImage(appId: string, groupId: string, userId: string, faceId: string): Promise<Buffer> {
    const face = await this.getFace(appId, faceId);
    if (face.group_id !== groupId || face.user_id !== userId) throw errors.faceNotFound(faceId);
    return this.blobs.get(face.image_key);
  }

  async deleteFace(appId: string, groupId: string, userId: string, faceId: string): Promise<void> {
    await this.getUser(appId, groupId, userId);
    const face = await this.getFace(appId, faceId);
    if (face.group_id !== groupId || face.user_id !== userId) throw errors.faceNotFound(faceId);
    await this.removeFace(face);
  }

  private async removeFace(face: FaceRecord): Promise<void> {
    await this.repo.deleteFace(face.app_id, face.face_id);
    await this.scheduleDelete({
      kind: 'faces',
      app_id: face.app_id,
      face_ids: [face.face_id],
      image_keys: [face.image_key],
    } as DeleteRequest);
  }

  /**
   * After the records are gone: queues the removal of vectors and images. When the queue cannot take it, does
   * it here; only when both fail does the request fail (the leftovers stay hidden from search by the records).
   */
  private async scheduleDelete(request: DeleteRequest): Promise<void> {
    const job = { ...request, delete_id: randomUUID(), dim: this.analyzer.embeddingDim, round: 0 } as DeleteJob;
    try {
      await this.deletes.add([{ id: deleteJobId(job), data: job }]);
    } catch (queueError) {
      try {
        await removeDeleted(this.repo, this.vectors, this.blobs, job);
      } catch {
        throw queueError;
      }
    }
  }
}

/** Whether face `a` was stored before face `b` (ISO times; the face id breaks a tie, the same way for everyone). */
function storedBefore(a: FaceRecord, b: FaceRecord): boolean {
  return a.created_at < b.created_at || (a.created_at === b.created_at && a.face_id < b.face_id);
}
