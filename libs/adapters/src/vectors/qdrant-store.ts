import { createHash } from 'node:crypto';
import {
  FaceSearchError,
  type VectorHit,
  type VectorPayload,
  type VectorPoint,
  type VectorQuery,
  type VectorStore,
} from '@facesearch/common';
import {
  MAX_SEARCH_LIMIT,
  checkId,
  dimensionMismatch,
  faceKey,
  normalize,
  normalizedVector,
  notInitialized,
} from './points';
import { QdrantHttp } from './qdrant-http';

export interface QdrantVectorStoreOptions {
  /** e.g. http://127.0.0.1:6333 */
  url: string;
  apiKey?: string;
  /** Default `faces`. */
  collection?: string;
  /** Points per upsert request. Default 256. */
  batchSize?: number;
  /** Request timeout in ms. Default 30000. */
  timeoutMs?: number;
  /**
   * HNSW graph of a collection this store creates (an existing collection keeps its own; change one with
   * `PATCH /collections/<name>` `{ hnsw_config: { m, ef_construct } }`, which rebuilds its index). Default m 0: no
   * graph, every search scans the points its filter matches, scoring the int8 copies (see `quantization`) and
   * rescoring the best with the float vectors. On 2 cores that found the exact top 10 of 1M faces in 21-24 ms p50 (p99
   * 27-33) and of one group of 100k among them in 4-5 ms (p99 6-9, its points stored together: see the class), where
   * the m 32 graph found 79 % of the top 10 over all 1M and 67 % within the group (BENCHMARKS.md, sessions 15-16);
   * and a new collection is ready as soon as its points are written (the m 32 graph took 66 min to build for 1M
   * points). A scan grows with the points searched:
   * beyond a few million faces per Qdrant node give the collection a graph (m 32, ef_construct 256 were measured).
   * `full_scan_threshold_kb` (with a graph only): a search whose filter matches fewer points than this in a segment
   * (in KB of float vectors as Qdrant counts them: a 512-d vector is 2) scans them instead of walking the graph;
   * default 60,000 (30,000 faces per segment; Qdrant's own 10,000).
   */
  hnsw?: { m?: number; ef_construct?: number; full_scan_threshold_kb?: number };
  /**
   * Search tuning. Default `{ hnsw_ef: DEFAULT_QDRANT_HNSW.search_ef }`; a larger `hnsw_ef` trades query time for
   * recall. `exact: true` scans every matching point (recall 1, ~110 ms at 100k).
   */
  searchParams?: { hnsw_ef?: number; exact?: boolean };
  /**
   * Vectors of a collection this store creates (an existing one keeps its own; add it with `PATCH
   * /collections/<name>` `{ quantization_config: ... }`). `int8` (default): Qdrant also keeps a scalar-quantised copy
   * of each vector in RAM (a quarter of the float size, 25 % more vector memory while the floats stay in RAM too)
   * which searches score, and rescores the best QUANTIZED_OVERSAMPLING x limit with the float vectors: the scan reads
   * a quarter of the bytes (at 100k faces 3.7-4.4 ms against 11-13 for the float scan, the same top 10). `none`:
   * float vectors only.
   */
  quantization?: 'none' | 'int8';
  /**
   * How a collection this store creates keeps its vectors (an existing one keeps its own). `float16` halves their
   * memory (1 KiB per 512-d face instead of 2) for scores within 1e-4 of float32's (mean 1.2e-5, max 7.4e-5 over
   * 2,000 pairs): at 100k synthetic faces recall@10 was 0.93 against 0.925 with float32 at the same hnsw_ef and the
   * query 5-8 % faster (BENCHMARKS.md, session 10).
   * Default `float32`.
   */
  datatype?: 'float32' | 'float16';
  /** Where init reports a collection set up for slower searches than this store would make it (default console). */
  logger?: { warn(obj: object, msg: string): void };
}

/**
 * Candidates a quantised search rescores with the float vectors, as a multiple of its limit: 2 kept the float
 * recall at 100k (BENCHMARKS.md, Vector search alone).
 */
export const QUANTIZED_OVERSAMPLING = 2;

/** How long the list of scopes in the collection is trusted before it is asked for again (see `search`). */
const SCOPES_TTL_MS = 5_000;
/** The scope list only picks a search's plan: asked for at most this long (a filtered search needs none). */
const SCOPES_TIMEOUT_MS = 2_000;
/** Collections holding more scopes than this are always searched with the filter. */
const SCOPES_LISTED = 256;
/**
 * Searches whose scopes hold at least this share of the collection's points go without the filter (see `search`).
 * Scanning, Qdrant scores the points a filter matches one by one from the payload index: at 1M faces a filter matching
 * all of them took 117 ms p50 where the unfiltered scan took 21-26, ~5x the CPU per point (BENCHMARKS.md, session 15).
 * With each scope's points stored together (`scope` marked as the tenant key, as in the collections this store
 * creates), a filtered scan costs ~2x the unfiltered one per point (75-80 against 36-40 ns): the filter pays up to
 * about half of the points (session 16).
 */
const UNFILTERED_SHARE = { scopesStoredTogether: 0.45, scopesMixed: 0.25 };
/** How many more hits than its share of them an unfiltered search asks for (see `search`). */
const UNFILTERED_MARGIN = 1.5;

/**
 * Defaults of a new collection: no graph (m 0, see `hnsw`); with a graph (an operator's m > 0), ef_construct 256,
 * searches at hnsw_ef 256 and filtered sets under 60,000 KB per segment scanned (BENCHMARKS.md, Problems 6 and
 * session 12: 100k and 1M synthetic 512-d faces).
 */
export const DEFAULT_QDRANT_HNSW = {
  m: 0,
  ef_construct: 256,
  search_ef: 256,
  full_scan_threshold_kb: 60_000,
} as const;

/**
 * The full-scan threshold of a collection without a graph: above any segment's size, so that Qdrant's planner
 * always scans (it would otherwise walk the missing graph of a segment holding more than the threshold).
 */
export const SCAN_ALWAYS_KB = 1_000_000_000;

/** The hnsw_config of a collection this store creates. */
function newCollectionGraph(hnsw: QdrantVectorStoreOptions['hnsw'] = {}): {
  m: number;
  ef_construct: number;
  full_scan_threshold: number;
} {
  const m = hnsw.m ?? DEFAULT_QDRANT_HNSW.m;
  return {
    m,
    ef_construct: hnsw.ef_construct ?? DEFAULT_QDRANT_HNSW.ef_construct,
    full_scan_threshold:
      m === 0 ? SCAN_ALWAYS_KB : (hnsw.full_scan_threshold_kb ?? DEFAULT_QDRANT_HNSW.full_scan_threshold_kb),
  };
}

/** Fixed namespace for point ids (a random v4 UUID chosen once; changing it orphans every stored point). */
const POINT_ID_NAMESPACE = '6f0b6c2e-3f5c-4d2a-9c71-2b8e5f0d4a13';

/**
 * Qdrant wants UUID or integer point ids while face ids are free-form strings unique per app, so a point's id is
 * a UUID v5 (SHA-1, RFC 9562) of `app_id/face_id`: deterministic, so writing the same face twice keeps one point.
 */
export function qdrantPointId(appId: string, faceId: string): string {
  const ns = Buffer.from(POINT_ID_NAMESPACE.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1').update(ns).update(faceKey(appId, faceId), 'utf8').digest();
  const bytes = hash.subarray(0, 16);
  bytes[6] = (bytes[6] & 0x0f) | 0x50;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The package's type declarations are ESM-only (it is `"type": "module"`) but it ships a CommonJS build under
 * `require`, which is what this CommonJS package loads.
 */
const { QdrantClient: QdrantClientClass } =
  require('@qdrant/js-client-rest') as typeof import('@qdrant/js-client-rest', { with: {
    'resolution-mode': 'import',
  }});

type QdrantClient = InstanceType<typeof QdrantClientClass>;

type Filter = { must: Array<Record<string, unknown>> };
const keyword = (key: string, value: string) => ({ key, match: { value } });

/**
 * The `scope` payload of a point: app, group and model in one keyword, so a search filters on one condition
 * instead of three. Qdrant checks every condition at each point its graph walk visits: at 100k points in one group
 * the three-condition filter cost ~11 ms of a ~24 ms query, one condition ~4.5 (BENCHMARKS.md, session 5). App and
 * group ids have no `/` (ID_PATTERN), so the key is unambiguous with the model id, which may, last.
 */
export function qdrantScope(appId: string, groupId: string, modelId: string): string {
  return `${appId}/${groupId}/${modelId}`;
}

/**
 * Face vectors in one Qdrant collection (cosine distance). Every read and delete filters on the app; every search on
 * `scope` (app, group and model), whose payload index is marked `is_tenant` in a collection this store creates, so
 * that Qdrant stores each scope's points together when it builds a segment: a search of one group then reads its
 * points in a run instead of one by one across the segment (one group of 100k among 1M faces: Qdrant's CPU per search
 * 23-26 -> 5-7 ms, p99 22-26 -> 7-10 ms; BENCHMARKS.md, session 16).
 */
export class QdrantVectorStore implements VectorStore {
  private readonly client: QdrantClient;
  /** search and retrieve: plain node:http, see QdrantHttp. */
  private readonly http: QdrantHttp;
  private readonly timeoutMs: number;
  private readonly collection: string;
  private readonly batchSize: number;
  private dim = 0;
  /** Whether the collection (as found at init) has quantised vectors: searches then ask for rescoring. */
  private quantized = false;
  /** See UNFILTERED_SHARE: by whether the collection's `scope` index is its tenant key (as found at init). */
  private unfilteredShare = UNFILTERED_SHARE.scopesStoredTogether;
  /** The scopes the collection holds and their points (null: more than SCOPES_LISTED), as last asked; see `search`. */
  private scopes: { values: Map<string, number> | null; at: number } = { values: null, at: Number.NEGATIVE_INFINITY };
  private scopesAsked: Promise<Map<string, number> | null> | undefined;

  constructor(private readonly options: QdrantVectorStoreOptions) {
    this.collection = options.collection ?? 'faces';
    this.batchSize = options.batchSize ?? 256;
    // The version check would fire an unawaited request at construction; init() reports an unreachable server.
    this.client = new QdrantClientClass({
      url: options.url,
      apiKey: options.apiKey,
      timeout: options.timeoutMs ?? 30_000,
      checkCompatibility: false,
    });
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.http = new QdrantHttp(options.url, options.apiKey, this.timeoutMs);
  }

  private get collectionPath(): string {
    return `/collections/${encodeURIComponent(this.collection)}`;
  }

  async init(dim: number): Promise<void> {
    if (!Number.isInteger(dim) || dim <= 0) throw new Error(`Bad vector dimension: ${dim}`);
    await this.call('init', async () => {
      if (!(await this.client.collectionExists(this.collection)).exists) {
        try {
          // Only a new collection gets these settings: an existing one is never rebuilt behind the operator's back.
          await this.client.createCollection(this.collection, {
            vectors: {
              size: dim,
              distance: 'Cosine',
              ...(this.options.datatype === 'float16' ? { datatype: 'float16' as const } : {}),
            },
            hnsw_config: newCollectionGraph(this.options.hnsw),
            ...((this.options.quantization ?? 'int8') === 'int8'
              ? { quantization_config: { scalar: { type: 'int8', quantile: 0.99, always_ram: true } } }
              : {}),
          });
        } catch (err) {
          // Another process may have created it in between; the check below decides.
          if (!(await this.client.collectionExists(this.collection)).exists) throw err;
        }
      }
      const info = await this.client.getCollection(this.collection);
      const vectors = info.config.params.vectors as { size?: number; distance?: string } | undefined;
      if (vectors?.size !== dim) {
        throw dimensionMismatch(`Qdrant collection ${this.collection}`, Number(vectors?.size ?? Number.NaN), dim);
      }
      if (vectors.distance !== 'Cosine') {
        throw new FaceSearchError(
          'vector_store_misconfigured',
          `Qdrant collection ${this.collection} uses ${vectors.distance} distance; face search needs Cosine.`,
          500,
        );
      }
      this.quantized = info.config.quantization_config != null;
      const schema = info.payload_schema ?? {};
      const indexes: Array<[string, { type: 'keyword'; is_tenant?: boolean }]> = [
        ['app_id', { type: 'keyword' }],
        ['group_id', { type: 'keyword' }],
        ['user_id', { type: 'keyword' }],
        ['model_id', { type: 'keyword' }],
        // An existing collection keeps the indexes it has (README, "Qdrant": how to mark `scope` and rebuild).
        ['scope', { type: 'keyword', is_tenant: true }],
      ];
      const scopeIndex = schema.scope as { params?: { is_tenant?: boolean | null } } | undefined;
      const scopesMixed = scopeIndex !== undefined && !scopeIndex.params?.is_tenant;
      this.unfilteredShare = scopesMixed ? UNFILTERED_SHARE.scopesMixed : UNFILTERED_SHARE.scopesStoredTogether;
      if (scopesMixed) {
        (this.options.logger ?? console).warn(
          { collection: this.collection },
          `Qdrant collection ${this.collection} keeps its groups' points mixed (its scope index is not the tenant key): ` +
            'searches of a group scan ~4x slower than in a new collection; README, "Qdrant", tells how to move it.',
        );
      }
      for (const [field, fieldSchema] of indexes) {
        if (schema[field]) continue;
        await this.client.createPayloadIndex(this.collection, {
          field_name: field,
          field_schema: fieldSchema,
          wait: true,
        });
      }
      await this.addMissingScopes();
    });
    this.dim = dim;
  }

  /**
   * Points written before `scope` existed get it here, so that searches (which filter on it) still find them.
   * A no-op once done: one count request.
   */
  private async addMissingScopes(): Promise<void> {
    const missing = { must: [{ is_empty: { key: 'scope' } }] };
    const { count } = await this.client.count(this.collection, { exact: true, filter: missing });
    if (count === 0) return;
    let offset: string | number | undefined;
    do {
      const page = await this.client.scroll(this.collection, {
        filter: missing,
        limit: 1000,
        with_payload: ['app_id', 'group_id', 'model_id'],
        with_vector: false,
        ...(offset === undefined ? {} : { offset }),
      });
      const byScope = new Map<string, Array<string | number>>();
      for (const point of page.points) {
        const p = (point.payload ?? {}) as Partial<VectorPayload>;
        if (!p.app_id || !p.group_id || !p.model_id) continue;
        const scope = qdrantScope(p.app_id, p.group_id, p.model_id);
        const ids = byScope.get(scope);
        if (ids) ids.push(point.id);
        else byScope.set(scope, [point.id]);
      }
      for (const [scope, points] of byScope) {
        await this.client.setPayload(this.collection, { payload: { scope }, points, wait: true });
      }
      offset = (page.next_page_offset ?? undefined) as string | number | undefined;
    } while (offset !== undefined);
  }

  async upsert(points: VectorPoint[]): Promise<void> {
    const dim = this.requireDim();
    const prepared = points.map((p) => ({
      id: qdrantPointId(p.payload.app_id, p.id),
      vector: Array.from(normalizedVector(p, dim)),
      payload: {
        ...pickPayload(p.payload),
        scope: qdrantScope(p.payload.app_id, p.payload.group_id, p.payload.model_id),
      },
    }));
    // A scope the list lacks: ask again before the next search (a list of too many scopes stays too many).
    const listed = this.scopes.values;
    if (listed && prepared.some((p) => !listed.has(p.payload.scope))) this.scopes.at = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < prepared.length; i += this.batchSize) {
      const batch = prepared.slice(i, i + this.batchSize);
      // Over node:http like search: the batch is ~10 KB of JSON per point (see QdrantHttp).
      await this.call('upsert', () =>
        this.http.send('PUT', `${this.collectionPath}/points?wait=true`, { points: batch }),
      );
    }
  }

  /**
   * A filter costs Qdrant at every point: a graph walk checks it at each point it visits (with real face embeddings
   * at 100k points ~37 % of the query, BENCHMARKS.md, session 6), and a scan scores the matching points one by one
   * from the payload index, 2-5x slower per point than the plain scan (sessions 15-16). So when the searched scopes
   * hold at least UNFILTERED_SHARE of the collection's points (all of them: one group of one app, the common small
   * deployment), the query goes without the filter, for limit / share x UNFILTERED_MARGIN hits, and keeps those in
   * scope: when they are `limit` or more, they are exactly the filtered answer's top hits (a better one in scope would
   * have ranked among them), as they are when the collection held fewer points than asked for; otherwise (the
   * nearest faces were out of scope) the search runs again with the filter. A hit of a scope the list lacks (written
   * since it was asked for, by another process) has the list asked for again.
   */
  async search(vector: Float32Array, query: VectorQuery): Promise<VectorHit[]> {
    const dim = this.requireDim();
    const target = Array.from(normalize(vector, dim));
    if (query.group_ids.length === 0 || query.limit <= 0) return [];
    checkId('app_id', query.app_id);
    for (const groupId of query.group_ids) checkId('group_id', groupId);
    // One condition: see qdrantScope.
    const scopes = query.group_ids.map((groupId) => qdrantScope(query.app_id, groupId, query.model_id));
    const inScope = new Set(scopes);
    // One scope as a plain match: Qdrant answered it ~15 % faster than `any` of one value (BENCHMARKS.md, session 15).
    const match = scopes.length === 1 ? { value: scopes[0] } : { any: scopes };
    const filter = { must: [{ key: 'scope', match }] };
    const limit = Math.min(Math.floor(query.limit), MAX_SEARCH_LIMIT);
    type Hit = { payload: unknown; score: number };
    // One deadline for the whole search (its scope lookup and up to two queries), not one per request.
    const deadline = performance.now() + this.timeoutMs;
    const ask = async (withFilter: boolean, count: number) =>
      (
        await this.call('search', () =>
          this.http.post<{ points: Hit[] }>(
            `${this.collectionPath}/points/query`,
            {
              query: target,
              ...(withFilter ? { filter } : {}),
              limit: count,
              with_payload: true,
              with_vector: false,
              params: this.searchParams(),
            },
            deadline - performance.now(),
          ),
        )
      ).points;
    const scopeOf = (hit: Hit) => (hit.payload as { scope?: string } | null)?.scope ?? '';
    const answer = (hits: Hit[]) =>
      hits.map((hit) => ({ ...pickPayload(hit.payload as unknown as VectorPayload), similarity: hit.score }));

    const held = await this.scopesHeld();
    const share = held ? shareOf(held, inScope) : 0;
    if (held && share >= this.unfilteredShare) {
      const wide = share >= 1 ? limit : Math.min(MAX_SEARCH_LIMIT, Math.ceil((limit / share) * UNFILTERED_MARGIN));
      const hits = await ask(false, wide);
      if (hits.some((hit) => !held.has(scopeOf(hit)))) this.scopes.at = Number.NEGATIVE_INFINITY;
      const kept = hits.filter((hit) => inScope.has(scopeOf(hit)));
      if (kept.length >= limit || hits.length < wide) return answer(kept.slice(0, limit));
    }
    return answer(await ask(true, limit));
  }

  /**
   * The scopes in the collection and their points (null: more than SCOPES_LISTED, or unknown), asked again after
   * SCOPES_TTL_MS.
   */
  private scopesHeld(): Promise<Map<string, number> | null> {
    if (performance.now() - this.scopes.at < SCOPES_TTL_MS) return Promise.resolve(this.scopes.values);
    // Searches arriving while the list is being asked for share the one request.
    this.scopesAsked ??= this.askScopes().finally(() => {
      this.scopesAsked = undefined;
    });
    return this.scopesAsked;
  }

  private async askScopes(): Promise<Map<string, number> | null> {
    try {
      const { hits } = await this.http.post<{ hits: Array<{ value: unknown; count: number }> }>(
        `${this.collectionPath}/facet`,
        // Approximate counts are enough: they only pick the plan, and the hits are checked (see `search`).
        { key: 'scope', limit: SCOPES_LISTED + 1, exact: false },
        // Only a plan: a Qdrant too slow to list its scopes should not take a search's whole time with it.
        SCOPES_TIMEOUT_MS,
      );
      const values = hits.length <= SCOPES_LISTED ? new Map(hits.map((h) => [String(h.value), h.count])) : null;
      this.scopes = { values, at: performance.now() };
    } catch {
      // Not worth failing a search for: search with the filter, and ask again after the TTL.
      this.scopes = { values: null, at: performance.now() };
    }
    return this.scopes.values;
  }

  private searchParams(): Record<string, unknown> {
    const params = this.options.searchParams ?? { hnsw_ef: DEFAULT_QDRANT_HNSW.search_ef };
    if (!this.quantized) return params;
    return { ...params, quantization: { rescore: true, oversampling: QUANTIZED_OVERSAMPLING } };
  }

  async retrieve(appId: string, faceIds: string[]): Promise<Array<VectorPayload & { vector: Float32Array }>> {
    this.requireDim();
    if (faceIds.length === 0) return [];
    const ids = [...new Set(faceIds)].map((id) => qdrantPointId(appId, id));
    const records = await this.call('retrieve', () =>
      this.http.post<Array<{ payload: unknown; vector: unknown }>>(`${this.collectionPath}/points`, {
        ids,
        with_payload: true,
        with_vector: true,
      }),
    );
    return records
      .map((r) => ({
        ...pickPayload(r.payload as unknown as VectorPayload),
        vector: Float32Array.from(r.vector as number[]),
      }))
      .filter((r) => r.app_id === appId);
  }

  async deleteFaces(appId: string, faceIds: string[]): Promise<void> {
    this.requireDim();
    if (faceIds.length === 0) return;
    const points = faceIds.map((id) => qdrantPointId(appId, id));
    await this.call('deleteFaces', () => this.client.delete(this.collection, { wait: true, points }));
  }

  async deleteWhere(filter: { app_id: string; group_id: string; user_id?: string }): Promise<void> {
    this.requireDim();
    checkId('app_id', filter.app_id);
    checkId('group_id', filter.group_id);
    const qfilter: Filter = { must: [keyword('app_id', filter.app_id), keyword('group_id', filter.group_id)] };
    if (filter.user_id !== undefined) {
      checkId('user_id', filter.user_id);
      qfilter.must.push(keyword('user_id', filter.user_id));
    }
    await this.call('deleteWhere', () => this.client.delete(this.collection, { wait: true, filter: qfilter }));
  }

  async count(filter: { app_id?: string; group_id?: string }): Promise<number> {
    this.requireDim();
    const qfilter: Filter = { must: [] };
    if (filter.app_id !== undefined) qfilter.must.push(keyword('app_id', filter.app_id));
    if (filter.group_id !== undefined) qfilter.must.push(keyword('group_id', filter.group_id));
    const result = await this.call('count', () =>
      this.client.count(this.collection, { exact: true, filter: qfilter.must.length ? qfilter : undefined }),
    );
    return result.count;
  }

  async ping(): Promise<void> {
    await this.call('ping', () => this.client.collectionExists(this.collection));
  }

  async close(): Promise<void> {
    // The REST client holds no connection of its own; the node:http agent keeps idle sockets open.
    this.http.close();
  }

  private requireDim(): number {
    if (!this.dim) throw notInitialized('QdrantVectorStore');
    return this.dim;
  }

  /** Runs a Qdrant request; transport and 5xx errors become a retryable 503. */
  private async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof FaceSearchError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      const where = `Qdrant ${operation} failed (${this.options.url}, collection ${this.collection})`;
      // A 4xx from Qdrant is our request's fault: retrying cannot help.
      if (/^Unexpected Response: 4\d\d/.test(message)) {
        throw new FaceSearchError('vector_store_error', `${where}: ${message.replace(/\s+/g, ' ').slice(0, 500)}`, 500);
      }
      throw new FaceSearchError('vector_store_unavailable', `${where}: ${message.split('\n')[0]}`, 503, true);
    }
  }
}

function pickPayload(p: VectorPayload): VectorPayload {
  return { app_id: p.app_id, group_id: p.group_id, user_id: p.user_id, face_id: p.face_id, model_id: p.model_id };
}

/** The share of the collection's points (as counted in `held`) that the scopes in `inScope` hold. */
function shareOf(held: Map<string, number>, inScope: Set<string>): number {
  let total = 0;
  let mine = 0;
  for (const [scope, count] of held) {
    total += count;
    if (inScope.has(scope)) mine += count;
  }
  return total > 0 ? mine / total : 0;
}
