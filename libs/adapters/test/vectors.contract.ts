import { randomUUID } from 'node:crypto';
import type { VectorPoint, VectorStore } from '@facesearch/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

export const DIM = 16;

export interface VectorStoreFixture {
  store: VectorStore;
  /** A second store over the same storage, as after a restart (before init). */
  reopen: () => Promise<VectorStore>;
  cleanup: () => Promise<void>;
}

/** Unit vector whose cosine with e0 is `cos` (it lies in the e0/e1 plane). */
export function atCosine(cos: number, dim = DIM): Float32Array {
  const v = new Float32Array(dim);
  v[0] = cos;
  v[1] = Math.sqrt(1 - cos * cos);
  return v;
}

export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomVector(rand: () => number, dim = DIM): Float32Array {
  const v = new Float32Array(dim);
  for (let i = 0; i < dim; i++) v[i] = rand() * 2 - 1;
  return v;
}

function unit(v: Float32Array): number[] {
  const n = Math.hypot(...v);
  return Array.from(v, (x) => x / n);
}

interface PointSpec {
  app?: string;
  group?: string;
  user?: string;
  face?: string;
  model?: string;
  vector: Float32Array;
}

function point(spec: PointSpec): VectorPoint {
  const face_id = spec.face ?? randomUUID();
  return {
    id: face_id,
    vector: spec.vector,
    payload: {
      app_id: spec.app ?? 'app1',
      group_id: spec.group ?? 'g1',
      user_id: spec.user ?? 'u1',
      face_id,
      model_id: spec.model ?? 'm1',
    },
  };
}

const E0 = atCosine(1);
const query = (over: Partial<{ app_id: string; group_ids: string[]; model_id: string; limit: number }> = {}) => ({
  app_id: 'app1',
  group_ids: ['g1'],
  model_id: 'm1',
  limit: 10,
  ...over,
});

async function rejectsWith(promise: Promise<unknown>, code: string, status?: number): Promise<void> {
  await expect(promise).rejects.toMatchObject(status === undefined ? { code } : { code, status });
}

/**
 * The behaviour every VectorStore must have. `factory` returns a store over fresh, empty storage, already
 * initialised with DIM; `skip` (a reason) skips the suite, e.g. when its server is not configured.
 */
/** Decimal digits a store keeps exactly: similarities and retrieved vector components (float32 keeps 4 and 5). */
export interface StorePrecision {
  scoreDigits: number;
  vectorDigits: number;
}

export function describeVectorStoreContract(
  name: string,
  factory: () => Promise<VectorStoreFixture>,
  skip?: string,
  { scoreDigits, vectorDigits }: StorePrecision = { scoreDigits: 4, vectorDigits: 5 },
): void {
  const suite = skip ? describe.skip : describe;
  suite(`VectorStore contract: ${name}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let fx: VectorStoreFixture;
    let store: VectorStore;

    beforeEach(async () => {
      fx = await factory();
      store = fx.store;
    });
    afterEach(async () => {
      await fx?.cleanup();
    });

    it('starts empty and answers ping', async () => {
      await store.ping();
      expect(await store.count({})).toBe(0);
      expect(await store.search(E0, query())).toEqual([]);
    });

    it('init is idempotent for the same dimension and refuses another one', async () => {
      await store.upsert([point({ vector: E0 })]);
      await store.init(DIM);
      expect(await store.count({})).toBe(1);
      await rejectsWith(store.init(DIM + 1), 'vector_dimension_mismatch');
      const again = await fx.reopen();
      try {
        await rejectsWith(again.init(DIM * 2), 'vector_dimension_mismatch');
      } finally {
        await again.close();
      }
    });

    it('keeps one point when the same face is written twice, with the latest vector and payload', async () => {
      const face = randomUUID();
      await store.upsert([point({ face, vector: atCosine(0.2), user: 'old' })]);
      await store.upsert([point({ face, vector: E0, user: 'new' })]);
      await store.upsert([point({ face, vector: E0, user: 'new' })]);
      expect(await store.count({})).toBe(1);
      const hits = await store.search(E0, query());
      expect(hits).toHaveLength(1);
      expect(hits[0]).toMatchObject({ face_id: face, user_id: 'new' });
      expect(hits[0].similarity).toBeCloseTo(1, scoreDigits);
    });

    it('moves a face to its new group when it is written again with another group', async () => {
      await store.upsert([point({ group: 'g1', face: 'mover', vector: atCosine(0.4) })]);
      await store.upsert([point({ group: 'g2', face: 'mover', vector: E0 })]);
      expect(await store.count({})).toBe(1);
      expect(await store.search(E0, query({ group_ids: ['g1'] }))).toEqual([]);
      const hits = await store.search(E0, query({ group_ids: ['g1', 'g2'] }));
      expect(hits.map((h) => [h.group_id, h.face_id])).toEqual([['g2', 'mover']]);
      expect((await store.retrieve('app1', ['mover']))[0].group_id).toBe('g2');
    });

    it('ranks the nearest first with cosine similarity, and honours the limit', async () => {
      const cosines = [0.3, 0.95, -0.6, 0.7, 0, 0.999];
      const points = cosines.map((cos, i) => point({ face: `f${i}`, user: `u${i}`, vector: atCosine(cos) }));
      await store.upsert(points);
      const hits = await store.search(E0, query());
      expect(hits.map((h) => h.face_id)).toEqual(['f5', 'f1', 'f3', 'f0', 'f4', 'f2']);
      const expected = [0.999, 0.95, 0.7, 0.3, 0, -0.6];
      for (const [i, hit] of hits.entries()) expect(hit.similarity).toBeCloseTo(expected[i], scoreDigits);
      expect(hits[0]).toEqual({
        app_id: 'app1',
        group_id: 'g1',
        user_id: 'u5',
        face_id: 'f5',
        model_id: 'm1',
        similarity: hits[0].similarity,
      });
      const top2 = await store.search(E0, query({ limit: 2 }));
      expect(top2.map((h) => h.face_id)).toEqual(['f5', 'f1']);
    });

    it('scores by direction only: vector length does not matter', async () => {
      const scaled = atCosine(0.8).map((x) => x * 37);
      await store.upsert([point({ face: 'big', vector: scaled })]);
      const [hit] = await store.search(
        E0.map((x) => x * 0.01),
        query(),
      );
      expect(hit.similarity).toBeCloseTo(0.8, scoreDigits);
    });

    it('never returns another app’s faces (tenant isolation), even for the same face id', async () => {
      await store.upsert([
        point({ app: 'app1', face: 'same', user: 'mine', vector: atCosine(0.5) }),
        point({ app: 'app2', face: 'same', user: 'theirs', vector: E0 }),
        point({ app: 'app2', face: 'other', vector: E0 }),
      ]);
      expect(await store.count({})).toBe(3);
      const hits = await store.search(E0, query());
      expect(hits.map((h) => [h.app_id, h.face_id, h.user_id])).toEqual([['app1', 'same', 'mine']]);
      const theirs = await store.search(E0, query({ app_id: 'app2' }));
      expect(theirs.map((h) => h.face_id).sort()).toEqual(['other', 'same']);
      expect(await store.search(E0, query({ app_id: 'app3' }))).toEqual([]);
    });

    it('searches only the given set of groups', async () => {
      await store.upsert([
        point({ group: 'g1', face: 'a', vector: atCosine(0.9) }),
        point({ group: 'g2', face: 'b', vector: atCosine(0.99) }),
        point({ group: 'g3', face: 'c', vector: atCosine(0.5) }),
        point({ group: 'g10', face: 'd', vector: E0 }),
      ]);
      const hits = await store.search(E0, query({ group_ids: ['g1', 'g3'] }));
      expect(hits.map((h) => [h.group_id, h.face_id])).toEqual([
        ['g1', 'a'],
        ['g3', 'c'],
      ]);
      expect((await store.search(E0, query({ group_ids: ['g2'] }))).map((h) => h.face_id)).toEqual(['b']);
      expect(await store.search(E0, query({ group_ids: [] }))).toEqual([]);
      expect(await store.search(E0, query({ group_ids: ['nope'] }))).toEqual([]);
    });

    it('returns the best `limit` across several groups, in similarity order, each face once', async () => {
      await store.upsert([
        point({ group: 'g1', face: 'g1-high', vector: atCosine(0.9) }),
        point({ group: 'g1', face: 'g1-low', vector: atCosine(0.5) }),
        point({ group: 'g2', face: 'g2-high', vector: atCosine(0.95) }),
        point({ group: 'g2', face: 'g2-low', vector: atCosine(0.3) }),
        point({ group: 'g3', face: 'g3-high', vector: atCosine(0.7) }),
        point({ group: 'g3', face: 'g3-low', vector: atCosine(0.1) }),
      ]);
      const groups = ['g1', 'g2', 'g3'];
      const top4 = await store.search(E0, query({ group_ids: groups, limit: 4 }));
      expect(top4.map((h) => h.face_id)).toEqual(['g2-high', 'g1-high', 'g3-high', 'g1-low']);
      for (const [i, hit] of top4.entries()) expect(hit.similarity).toBeCloseTo([0.95, 0.9, 0.7, 0.5][i], scoreDigits);
      expect((await store.search(E0, query({ group_ids: groups, limit: 1 }))).map((h) => h.face_id)).toEqual([
        'g2-high',
      ]);
      const repeated = await store.search(E0, query({ group_ids: ['g3', 'g1', 'g3', 'g1'] }));
      expect(repeated.map((h) => h.face_id)).toEqual(['g1-high', 'g3-high', 'g1-low', 'g3-low']);
    });

    it('counts the limit among matching faces only (filters apply before top-k)', async () => {
      const rand = seededRandom(7);
      const others = Array.from({ length: 50 }, () => point({ group: 'crowd', vector: atCosine(0.9 + rand() * 0.09) }));
      await store.upsert([...others, point({ group: 'g1', face: 'lonely', vector: atCosine(-0.2) })]);
      const hits = await store.search(E0, query({ limit: 1 }));
      expect(hits.map((h) => h.face_id)).toEqual(['lonely']);
    });

    it('searches only vectors of the given model', async () => {
      await store.upsert([
        point({ model: 'm1', face: 'old', vector: atCosine(0.6) }),
        point({ model: 'm2', face: 'new', vector: E0 }),
      ]);
      expect((await store.search(E0, query({ model_id: 'm1' }))).map((h) => h.face_id)).toEqual(['old']);
      expect((await store.search(E0, query({ model_id: 'm2' }))).map((h) => h.face_id)).toEqual(['new']);
      expect(await store.search(E0, query({ model_id: 'm3' }))).toEqual([]);
    });

    it('retrieves stored vectors (unit length) with payload; missing and foreign faces are left out', async () => {
      const v = randomVector(seededRandom(1));
      await store.upsert([
        point({ face: 'f1', user: 'u9', group: 'g7', model: 'm4', vector: v }),
        point({ app: 'app2', face: 'f2', vector: E0 }),
      ]);
      const got = await store.retrieve('app1', ['f1', 'f2', 'missing', 'f1']);
      expect(got).toHaveLength(1);
      const { vector, ...payload } = got[0];
      expect(payload).toEqual({ app_id: 'app1', group_id: 'g7', user_id: 'u9', face_id: 'f1', model_id: 'm4' });
      expect(vector).toBeInstanceOf(Float32Array);
      expect(vector).toHaveLength(DIM);
      for (const [i, x] of unit(v).entries()) expect(vector[i]).toBeCloseTo(x, vectorDigits);
      expect(await store.retrieve('app1', [])).toEqual([]);
    });

    it('deletes faces by id within one app only', async () => {
      await store.upsert([
        point({ face: 'f1', vector: E0 }),
        point({ face: 'f2', vector: E0 }),
        point({ app: 'app2', face: 'f1', vector: E0 }),
      ]);
      await store.deleteFaces('app1', ['f1', 'missing']);
      expect((await store.retrieve('app1', ['f1', 'f2'])).map((r) => r.face_id)).toEqual(['f2']);
      expect(await store.retrieve('app2', ['f1'])).toHaveLength(1);
      await store.deleteFaces('app1', []);
      expect(await store.count({})).toBe(2);
    });

    it('deletes by user and by group, within one app', async () => {
      await store.upsert([
        point({ group: 'g1', user: 'u1', face: 'a', vector: E0 }),
        point({ group: 'g1', user: 'u1', face: 'b', vector: E0 }),
        point({ group: 'g1', user: 'u2', face: 'c', vector: E0 }),
        point({ group: 'g2', user: 'u1', face: 'd', vector: E0 }),
        point({ group: 'g2', user: 'u3', face: 'e', vector: E0 }),
        point({ app: 'app2', group: 'g1', user: 'u1', face: 'f', vector: E0 }),
      ]);
      await store.deleteWhere({ app_id: 'app1', group_id: 'g1', user_id: 'u1' });
      expect((await store.search(E0, query({ group_ids: ['g1', 'g2'] }))).map((h) => h.face_id).sort()).toEqual([
        'c',
        'd',
        'e',
      ]);
      await store.deleteWhere({ app_id: 'app1', group_id: 'g2' });
      expect((await store.search(E0, query({ group_ids: ['g1', 'g2'] }))).map((h) => h.face_id)).toEqual(['c']);
      expect(await store.retrieve('app2', ['f'])).toHaveLength(1);
      await store.deleteWhere({ app_id: 'app1', group_id: 'nothing-here' });
      expect(await store.count({})).toBe(2);
    });

    it('counts everything, by app, by group, and by both', async () => {
      await store.upsert([
        point({ app: 'app1', group: 'g1', vector: E0 }),
        point({ app: 'app1', group: 'g1', vector: E0 }),
        point({ app: 'app1', group: 'g2', vector: E0 }),
        point({ app: 'app2', group: 'g1', vector: E0 }),
      ]);
      expect(await store.count({})).toBe(4);
      expect(await store.count({ app_id: 'app1' })).toBe(3);
      expect(await store.count({ app_id: 'app2' })).toBe(1);
      expect(await store.count({ group_id: 'g1' })).toBe(3);
      expect(await store.count({ app_id: 'app1', group_id: 'g1' })).toBe(2);
      expect(await store.count({ app_id: 'app3' })).toBe(0);
    });

    it('upserts a large batch in one call and finds the exact nearest neighbours', async () => {
      const rand = seededRandom(42);
      const points = Array.from({ length: 600 }, (_, i) =>
        point({ face: `f${i}`, group: `g${i % 3}`, vector: randomVector(rand) }),
      );
      await store.upsert(points);
      expect(await store.count({ app_id: 'app1' })).toBe(600);
      const q = randomVector(rand);
      const qn = unit(q);
      const truth = points
        .map((p) => ({ id: p.id, sim: unit(p.vector).reduce((s, x, i) => s + x * qn[i], 0) }))
        .sort((a, b) => b.sim - a.sim)
        .slice(0, 5);
      const hits = await store.search(q, query({ group_ids: ['g0', 'g1', 'g2'], limit: 5 }));
      expect(hits.map((h) => h.face_id)).toEqual(truth.map((t) => t.id));
      for (const [i, h] of hits.entries()) expect(h.similarity).toBeCloseTo(truth[i].sim, scoreDigits);
    });

    it('keeps its data across a restart', async () => {
      await store.upsert([point({ face: 'kept', vector: E0 })]);
      await store.close();
      store = await fx.reopen();
      fx.store = store;
      await store.init(DIM);
      expect(await store.count({})).toBe(1);
      expect((await store.search(E0, query()))[0].face_id).toBe('kept');
    });

    it('rejects vectors of the wrong size, zero vectors and bad ids', async () => {
      await rejectsWith(
        store.upsert([point({ vector: new Float32Array(DIM + 1).fill(1) })]),
        'vector_dimension_mismatch',
      );
      await rejectsWith(store.upsert([point({ vector: new Float32Array(DIM) })]), 'invalid_vector');
      await rejectsWith(store.search(new Float32Array(DIM - 1).fill(1), query()), 'vector_dimension_mismatch');
      await rejectsWith(store.upsert([point({ face: 'bad/id', vector: E0 })]), 'invalid_id', 400);
      await rejectsWith(store.retrieve('app 1', ['f']), 'invalid_id', 400);
      expect(await store.count({})).toBe(0);
    });
  });
}
