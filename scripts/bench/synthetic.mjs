// Synthetic face-like 512-d vectors for bench:vectors and bench:search (not run by itself). Deterministic from a
// seed, and computable by index, so any process can regenerate any part of the set without holding it.
//
// Structure: identity centre c = unit(M * a + r), where a is one shared "average face" direction and r a random unit
// vector (M = 0.42 gives different identities a cosine of about 0.15 +- 0.05); face = unit(c + s * n), n a random unit
// vector and s uniform in [0.55, 0.95] per face (two faces of one identity: cosine about 0.5-0.75). This matches the
// real model's figures on ../shared/testdata (same person 0.51-0.9, different people mostly -0.1-0.35).
// Face i belongs to identity floor(i / FACES_PER_ID) and to group `g{identity % groups}`.

export const DIM = 512;
export const FACES_PER_ID = 5;
const M = 0.42;

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hash(...parts) {
  let h = 2166136261 >>> 0;
  for (const p of parts) {
    h ^= p >>> 0;
    h = Math.imul(h, 16777619) >>> 0;
    h ^= h >>> 13;
    h = Math.imul(h, 0x5bd1e995) >>> 0;
  }
  return h >>> 0;
}

function unitGaussian(seed, out = new Float32Array(DIM)) {
  const rand = mulberry32(seed);
  for (let i = 0; i < DIM; i += 2) {
    const u = rand() || 1e-12;
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return normalizeInPlace(out);
}

export function normalizeInPlace(v) {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  const k = 1 / Math.sqrt(s);
  for (let i = 0; i < v.length; i++) v[i] *= k;
  return v;
}

export function dot(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export class SyntheticFaces {
  constructor(seed = 1, groups = 10) {
    this.seed = seed;
    this.groups = groups;
    this.average = unitGaussian(hash(seed, 0xa1));
    this.centreCache = new Map();
  }

  centre(identity) {
    let c = this.centreCache.get(identity);
    if (!c) {
      c = unitGaussian(hash(this.seed, 0xc0, identity));
      for (let i = 0; i < DIM; i++) c[i] = M * this.average[i] + c[i];
      normalizeInPlace(c);
      if (this.centreCache.size > 4096) this.centreCache.clear();
      this.centreCache.set(identity, c);
    }
    return c;
  }

  /** Face `face` of `identity` (faces >= FACES_PER_ID are never stored: use them as probes). */
  face(identity, face) {
    const c = this.centre(identity);
    const seed = hash(this.seed, 0xf0, identity, face);
    const s = 0.55 + 0.4 * mulberry32(seed ^ 0x5bd1)();
    const v = unitGaussian(seed);
    for (let i = 0; i < DIM; i++) v[i] = c[i] + s * v[i];
    return normalizeInPlace(v);
  }

  /** The stored point `index`. */
  point(index) {
    const identity = Math.floor(index / FACES_PER_ID);
    return {
      index,
      identity,
      group: `g${identity % this.groups}`,
      vector: this.face(identity, index % FACES_PER_ID),
    };
  }

  /** Query q: an unseen face of a stored identity (deterministic). */
  query(q, size) {
    const identities = Math.max(1, Math.floor(size / FACES_PER_ID));
    const identity = hash(this.seed, 0x9e, q) % identities;
    return { identity, group: `g${identity % this.groups}`, vector: this.face(identity, FACES_PER_ID + (q % 7)) };
  }
}

/** Same-identity and different-identity cosine ranges on a sample, to show the set looks like real faces. */
export function similarityProfile(gen, size, samples = 2000) {
  const same = [];
  const diff = [];
  const identities = Math.max(2, Math.floor(size / FACES_PER_ID));
  const rand = mulberry32(gen.seed ^ 0x77);
  for (let i = 0; i < samples; i++) {
    const a = Math.floor(rand() * identities);
    let b = Math.floor(rand() * identities);
    if (b === a) b = (a + 1) % identities;
    same.push(dot(gen.face(a, 0), gen.face(a, 1 + (i % (FACES_PER_ID - 1)))));
    diff.push(dot(gen.face(a, 0), gen.face(b, 0)));
  }
  const q = (arr, p) => {
    const s = [...arr].sort((x, y) => x - y);
    return Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))] * 100) / 100;
  };
  return {
    same: { p1: q(same, 0.01), p50: q(same, 0.5), p99: q(same, 0.99) },
    different: { p1: q(diff, 0.01), p50: q(diff, 0.5), p99: q(diff, 0.99), max: q(diff, 0.99999) },
  };
}

/**
 * The groups a bench search names, by filter: `one_group` the probe's own, `half_groups` it and the next ones up to
 * half of them (a search over part of an app's groups), `all_groups` every one.
 */
export const SEARCH_FILTERS = ['one_group', 'half_groups', 'all_groups'];
export function searchedGroups(filter, probeGroup, groups) {
  if (filter === 'one_group') return [probeGroup];
  const all = Array.from({ length: groups }, (_, g) => `g${g}`);
  if (filter === 'all_groups') return all;
  const first = Number(probeGroup.slice(1));
  return Array.from({ length: Math.max(1, Math.floor(groups / 2)) }, (_, k) => `g${(first + k) % groups}`);
}
