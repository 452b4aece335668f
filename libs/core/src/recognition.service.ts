import {
  type Box,
  cosineSimilarity,
  DEFAULT_MATCH_SCORE,
  type DetectResult,
  type EmbeddedFace,
  type EngineTiming,
  type FaceAnalyzer,
  type FaceQuality,
  type ImageInfo,
  type LibraryRepository,
  type Landmarks,
  similarityToScore,
  type VectorHit,
  type VectorStore,
} from '@facesearch/common';
import { checkId, errors } from './errors';
import { StageTimings } from './stage-timings';

export interface RecognitionOptions {
  /** Calibrated cosine similarity that maps to score 80. */
  cosineThreshold: number;
  /** Upper bound of faces per user, to fetch enough hits before collapsing them per user. */
  maxFacesPerUser: number;
}

export const SEARCH_LIMITS = { maxGroups: 100, maxTopK: 100, maxFaces: 10 } as const;

export interface Match {
  group_id: string;
  user_id: string;
  face_id: string;
  score: number;
  similarity: number;
  user_info: string | null;
}

export interface SearchedFace {
  box: Box;
  landmarks: Landmarks;
  score: number;
  quality: FaceQuality;
  /** Best first; empty means "no match". */
  matches: Match[];
}

export interface SearchResult {
  image: ImageInfo;
  face_num: number;
  results: SearchedFace[];
}

export interface CompareResult {
  similarity: number;
  score: number;
  match: boolean;
  threshold: number;
  face_a: { box: Box };
  face_b: { box: Box; face_id?: string };
}

export interface SearchInput {
  image: Uint8Array;
  group_ids: string[];
  top_k?: number;
  match_threshold?: number;
  max_faces?: number;
}

/** Most hits a search asks the vector store for, per searched face. */
const MAX_SEARCH_HITS = 1000;
/** Hits per wanted user in the first vector search (see search()). */
const FIRST_PAGE_HITS_PER_USER = 4;

const round = (n: number) => Math.round(n * 1e6) / 1e6;

/**
 * Detect, compare and search read each uploaded image once, for the analysis: an engine thread may take its memory
 * instead of a copy (enrolment does not: it stores the image afterwards).
 */
const HAND_OVER = { handOver: true } as const;

/** Times `work` as the `analyze` stage and records the engine's own share of it as `engine`. */
async function timeAnalysis<T extends EngineTiming>(timings: StageTimings, work: () => Promise<T>): Promise<T> {
  const result = await timings.time('analyze', work);
  timings.add('engine', result.engine_ms);
  return result;
}

/** One side of a compare: an analysed image's largest face, or a stored face. */
interface ComparedFace {
  embedding: Float32Array;
  box: Box;
  face_id?: string;
  engine_ms?: number;
}

/**
 * Both results, awaited in order: the first one's error wins, and the second's, if the first failed, is dropped
 * rather than left unhandled.
 */
async function inOrder<A, B>(first: Promise<A>, second: Promise<B>): Promise<[A, B]> {
  second.catch(() => undefined);
  return [await first, await second];
}

/** Detect, 1:1 compare and 1:N / M:N search. */
export class RecognitionService {
  constructor(
    private readonly repo: LibraryRepository,
    private readonly vectors: VectorStore,
    private readonly analyzer: FaceAnalyzer,
    private readonly options: RecognitionOptions,
  ) {}

  /**
   * `timings` (optional, for the Server-Timing header) gets the stages: analyze, vectors, library; and `engine`, the
   * part of `analyze` the face engine itself reports (the rest of `analyze` is hand-off and transport).
   */
  detect(image: Uint8Array, maxFaces = 10, timings = new StageTimings()): Promise<DetectResult> {
    return timeAnalysis(timings, () => this.analyzer.detect(image, { maxFaces }, HAND_OVER));
  }

  async compare(
    appId: string,
    input: { image_a: Uint8Array; image_b?: Uint8Array; face_id_b?: string; match_threshold?: number },
    timings = new StageTimings(),
  ): Promise<CompareResult> {
    const threshold = input.match_threshold ?? DEFAULT_MATCH_SCORE;
    const faceIdB = input.face_id_b === undefined ? undefined : checkId('face_id_b', input.face_id_b);
    const imageB = input.image_b;
    if (faceIdB === undefined && !imageB) throw errors.invalidRequest('image_b: required unless face_id_b is given');
    let a: ComparedFace;
    let b: ComparedFace;
    if (faceIdB !== undefined) {
      // The stored face is read while image_a is analysed; image_a's errors still come first.
      [a, b] = await inOrder(
        timeAnalysis(timings, () => this.largestFace(input.image_a, 'image_a')),
        this.storedFace(appId, faceIdB, timings),
      );
    } else {
      // Both images at once, on two engine threads (or two workers): a compare takes about as long as its slower
      // image rather than both in turn. `analyze` is the pair's time, `engine` the longer engine time of the two.
      [a, b] = await timings.time('analyze', () =>
        inOrder(this.largestFace(input.image_a, 'image_a'), this.largestFace(imageB as Uint8Array, 'image_b')),
      );
      const engineMs = [a.engine_ms, b.engine_ms].filter((ms): ms is number => ms !== undefined);
      if (engineMs.length > 0) timings.add('engine', Math.max(...engineMs));
    }
    const similarity = cosineSimilarity(a.embedding, b.embedding);
    const score = similarityToScore(similarity, this.options.cosineThreshold);
    return {
      similarity: round(similarity),
      score,
      match: score >= threshold,
      threshold,
      face_a: { box: a.box },
      face_b: b.face_id ? { box: b.box, face_id: b.face_id } : { box: b.box },
    };
  }

  async search(appId: string, input: SearchInput, timings = new StageTimings()): Promise<SearchResult> {
    const groupIds = [...new Set(input.group_ids.map((g) => checkId('group_ids', g)))];
    if (groupIds.length === 0) throw errors.invalidRequest('group_ids: at least one group is required');
    if (groupIds.length > SEARCH_LIMITS.maxGroups) {
      throw errors.invalidRequest(`group_ids: at most ${SEARCH_LIMITS.maxGroups} groups`);
    }
    const topK = input.top_k ?? 5;
    const threshold = input.match_threshold ?? DEFAULT_MATCH_SCORE;
    // The groups are looked up while the image is analysed (a round trip each on Redis, hidden behind the model, so
    // not timed as a stage); a missing group is still the answer before anything about the image.
    const groupsExist = Promise.all(groupIds.map((g) => this.repo.getGroup(appId, g))).then((groups) => {
      const missing = groupIds.find((_, i) => !groups[i]);
      if (missing !== undefined) throw errors.groupNotFound(missing);
    });
    const [, analysis] = await inOrder(
      groupsExist,
      timeAnalysis(timings, () => this.analyzer.analyze(input.image, { maxFaces: input.max_faces ?? 1 }, HAND_OVER)),
    );
    if (analysis.faces.length === 0) throw errors.noFace();

    const users = new Map<string, Promise<string | null | undefined>>();
    const userInfo = (groupId: string, userId: string) => {
      const key = `${groupId}\u0000${userId}`;
      let p = users.get(key);
      if (!p) {
        p = this.repo.getUser(appId, groupId, userId).then((u) => (u ? u.user_info : undefined));
        users.set(key, p);
      }
      return p;
    };

    const faceRecords = new Map<string, ReturnType<LibraryRepository['getFace']>>();
    const faceRecord = (faceId: string) => {
      let p = faceRecords.get(faceId);
      if (!p) {
        p = this.repo.getFace(appId, faceId);
        faceRecords.set(faceId, p);
      }
      return p;
    };

    // Best hit per user, best users first. A hit counts only if its face record exists and agrees: the record is
    // the source of truth, so a vector whose delete failed, or whose record is not written yet (an import between
    // its two writes), never shows up. `exhausted`: every hit passed the threshold, so more hits could add users.
    const collapse = async (hits: VectorHit[]) => {
      const sorted = [...hits].sort((x, y) => y.similarity - x.similarity);
      // The records of every hit that can count are asked for at once (one pipelined round trip on Redis) rather
      // than two round trips per match in turn; the loop below reads them in order.
      for (const hit of sorted) {
        if (similarityToScore(hit.similarity, this.options.cosineThreshold) < threshold) break;
        faceRecord(hit.face_id).catch(() => undefined);
        userInfo(hit.group_id, hit.user_id).catch(() => undefined);
      }
      const matches: Match[] = [];
      const matched = new Set<string>();
      for (const hit of sorted) {
        if (matches.length >= topK) break;
        const score = similarityToScore(hit.similarity, this.options.cosineThreshold);
        if (score < threshold) return { matches, exhausted: false };
        const key = `${hit.group_id}\u0000${hit.user_id}`;
        if (matched.has(key)) continue;
        const record = await faceRecord(hit.face_id);
        if (!record || record.group_id !== hit.group_id || record.user_id !== hit.user_id) continue;
        const info = await userInfo(hit.group_id, hit.user_id);
        if (info === undefined) continue;
        matched.add(key);
        matches.push({
          group_id: hit.group_id,
          user_id: hit.user_id,
          face_id: hit.face_id,
          score,
          similarity: round(hit.similarity),
          user_info: info,
        });
      }
      return { matches, exhausted: matches.length < topK };
    };

    // Several faces per user: top_k x MAX_FACES_PER_USER hits always leave top_k users after collapsing, but
    // that is 100 hits by default, which costs the vector store (BENCHMARKS.md, Problems 5). Most searches find
    // top_k users among top_k x 4 hits; ask for the full count only when a full first page did not.
    const fullLimit = Math.min(MAX_SEARCH_HITS, topK * this.options.maxFacesPerUser);
    const firstLimit = Math.min(fullLimit, topK * FIRST_PAGE_HITS_PER_USER);
    // The faces of an M:N search are searched at once (Qdrant answers concurrent queries on its own threads; the
    // embedded store queues them); the answer keeps the detector's order.
    const searchFace = async (face: EmbeddedFace): Promise<SearchedFace> => {
      const search = (limit: number) =>
        timings.time('vectors', () =>
          this.vectors.search(face.embedding, {
            app_id: appId,
            group_ids: groupIds,
            model_id: analysis.modelId,
            limit,
          }),
        );
      const firstHits = await search(firstLimit);
      let { matches, exhausted } = await timings.time('library', () => collapse(firstHits));
      if (exhausted && firstHits.length >= firstLimit && firstLimit < fullLimit) {
        const moreHits = await search(fullLimit);
        ({ matches } = await timings.time('library', () => collapse(moreHits)));
      }
      return { box: face.box, landmarks: face.landmarks, score: face.score, quality: face.quality, matches };
    };
    const results = await Promise.all(analysis.faces.map(searchFace));
    return { image: analysis.image, face_num: results.length, results };
  }

  /** A stored face's box and vector, for a compare with it. */
  private async storedFace(
    appId: string,
    faceId: string,
    timings: StageTimings,
  ): Promise<{ embedding: Float32Array; box: Box; face_id: string }> {
    const [record, [stored]] = await Promise.all([
      timings.time('library', () => this.repo.getFace(appId, faceId)),
      timings.time('vectors', () => this.vectors.retrieve(appId, [faceId])),
    ]);
    if (!record || !stored) throw errors.faceNotFound(faceId);
    if (stored.model_id !== this.analyzer.modelId) throw errors.modelMismatch(faceId);
    return { embedding: stored.vector, box: record.box, face_id: faceId };
  }

  private async largestFace(
    image: Uint8Array,
    field: string,
  ): Promise<{ embedding: Float32Array; box: Box; engine_ms?: number }> {
    const analysis = await this.analyzer.analyze(image, { maxFaces: 1 }, HAND_OVER);
    const face = analysis.faces[0];
    if (!face) throw errors.noFace(field);
    return { embedding: face.embedding, box: face.box, engine_ms: analysis.engine_ms };
  }
}
