import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cosineSimilarity, isFaceSearchError } from '@facesearch/common';
import type { FaceEngine, StageTimings } from './engine';

export interface EvaluationReport {
  identities: number;
  images: number;
  no_face: number;
  errors: Record<string, number>;
  threshold: number;
  /** Accuracy at `threshold` over all same-identity pairs and as many different pairs. */
  accuracy: number;
  same_pairs: number;
  different_pairs: number;
  /** The threshold with the best accuracy on those balanced pairs, and that accuracy. */
  best_threshold: number;
  best_accuracy: number;
  /** True-accept rate at a false-accept rate, measured over every different-identity pair (more negatives). */
  tar_at_far_1e2: number;
  tar_at_far_1e3: number;
  threshold_at_far_1e3: number;
  impostor_pairs: number;
  /** Each photo searched against all others: share whose nearest neighbour is the same identity
   * (photos of identities with a single photo are not searched). */
  rank1: number;
  rank1_searches: number;
  /** Median milliseconds per image for each stage. */
  ms_per_image: StageTimings & { total: number };
  failures: Array<{ path: string; code: string }>;
}

interface Sample {
  identity: string;
  path: string;
  embedding: Float32Array;
}

/** Reads a folder of identity subfolders and measures verification and 1:N search on it. */
export async function evaluateFolder(
  engine: FaceEngine,
  dir: string,
  threshold = engine.matchThreshold,
): Promise<EvaluationReport> {
  const identities = readdirSync(dir)
    .filter((name) => statSync(join(dir, name)).isDirectory())
    .sort();
  const samples: Sample[] = [];
  const errors: Record<string, number> = {};
  const failures: EvaluationReport['failures'] = [];
  const perImage: Array<StageTimings & { total: number }> = [];
  let images = 0;
  let noFace = 0;
  for (const identity of identities) {
    const files = readdirSync(join(dir, identity))
      .filter((f) => statSync(join(dir, identity, f)).isFile())
      .sort();
    for (const file of files) {
      const path = join(dir, identity, file);
      images++;
      engine.resetTimings();
      const start = performance.now();
      try {
        const result = await engine.analyze(readFileSync(path), { maxFaces: 1 });
        perImage.push({ ...engine.timings, total: performance.now() - start });
        if (result.faces.length === 0) {
          noFace++;
          failures.push({ path, code: 'no_face' });
          continue;
        }
        samples.push({ identity, path, embedding: result.faces[0].embedding });
      } catch (err) {
        const code = isFaceSearchError(err) ? err.code : 'internal';
        errors[code] = (errors[code] ?? 0) + 1;
        failures.push({ path, code });
      }
    }
  }

  const genuine: number[] = [];
  const impostor: number[] = [];
  for (let i = 0; i < samples.length; i++) {
    for (let j = i + 1; j < samples.length; j++) {
      const sim = cosineSimilarity(samples[i].embedding, samples[j].embedding);
      (samples[i].identity === samples[j].identity ? genuine : impostor).push(sim);
    }
  }
  // An equal number of different pairs, drawn with a fixed seed so runs are comparable.
  const balancedImpostor = sampleSeeded(impostor, genuine.length, 42);
  const accuracyAt = (t: number) =>
    (genuine.filter((s) => s >= t).length + balancedImpostor.filter((s) => s < t).length) /
    Math.max(1, genuine.length + balancedImpostor.length);
  let best = { threshold, accuracy: accuracyAt(threshold) };
  for (const t of [...genuine, ...balancedImpostor].sort((a, b) => a - b)) {
    const candidate = t + 1e-6;
    const accuracy = accuracyAt(candidate);
    if (accuracy > best.accuracy) best = { threshold: candidate, accuracy };
  }
  const tarAt = (far: number) => {
    const t = thresholdAtFar(impostor, far);
    return { t, tar: genuine.filter((s) => s >= t).length / Math.max(1, genuine.length) };
  };

  // A probe whose identity has no other photo cannot be found; it is left out of rank-1.
  const perIdentity = new Map<string, number>();
  for (const s of samples) perIdentity.set(s.identity, (perIdentity.get(s.identity) ?? 0) + 1);
  let hits = 0;
  let searches = 0;
  for (let i = 0; i < samples.length; i++) {
    if ((perIdentity.get(samples[i].identity) ?? 0) < 2) continue;
    searches++;
    let bestJ = -1;
    let bestSim = -Infinity;
    for (let j = 0; j < samples.length; j++) {
      if (i === j) continue;
      const sim = cosineSimilarity(samples[i].embedding, samples[j].embedding);
      if (sim > bestSim) {
        bestSim = sim;
        bestJ = j;
      }
    }
    if (bestJ >= 0 && samples[bestJ].identity === samples[i].identity) hits++;
  }

  const far1e3 = tarAt(1e-3);
  return {
    identities: identities.length,
    images,
    no_face: noFace,
    errors,
    threshold: round4(threshold),
    accuracy: round4(accuracyAt(threshold)),
    same_pairs: genuine.length,
    different_pairs: balancedImpostor.length,
    best_threshold: round4(best.threshold),
    best_accuracy: round4(best.accuracy),
    tar_at_far_1e2: round4(tarAt(1e-2).tar),
    tar_at_far_1e3: round4(far1e3.tar),
    threshold_at_far_1e3: round4(far1e3.t),
    impostor_pairs: impostor.length,
    rank1: round4(hits / Math.max(1, searches)),
    rank1_searches: searches,
    ms_per_image: {
      decode: median(perImage.map((t) => t.decode)),
      detect: median(perImage.map((t) => t.detect)),
      align: median(perImage.map((t) => t.align)),
      embed: median(perImage.map((t) => t.embed)),
      total: median(perImage.map((t) => t.total)),
    },
    failures,
  };
}

/** The lowest threshold at which at most `far` of the impostor scores are accepted. */
export function thresholdAtFar(impostor: number[], far: number): number {
  if (impostor.length === 0) return 0;
  const sorted = [...impostor].sort((a, b) => b - a);
  const allowed = Math.floor(far * sorted.length);
  // Accepting scores >= t; t just above the (allowed+1)-th highest impostor score.
  return sorted[Math.min(allowed, sorted.length - 1)] + 1e-6;
}

export function median(values: number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const m = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return Math.round(m * 100) / 100;
}

function sampleSeeded<T>(items: T[], count: number, seed: number): T[] {
  if (items.length <= count) return [...items];
  let state = seed >>> 0;
  const next = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const copy = [...items];
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(next() * (copy.length - i));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy.slice(0, count);
}

const round4 = (x: number) => Math.round(x * 10000) / 10000;
