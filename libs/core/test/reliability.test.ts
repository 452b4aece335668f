/**
 * Faults and overload in the core services, on fakes: enrolment leaves nothing half-written when a store fails,
 * Idempotency-Key retries create nothing twice, and back-pressure refuses work early with a retry hint.
 */
import { MemoryJobQueue, SqliteLibraryRepository } from '@facesearch/adapters';
import { type AnalyzeResult, FaceSearchError } from '@facesearch/common';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AdmissionLimitedAnalyzer,
  checkIdempotencyKey,
  type DeleteJob,
  type EmbedJob,
  ImportDetectStage,
  ImportEmbedStage,
  ImportIndexStage,
  type ImportJob,
  ImportService,
  type IndexJob,
  LibraryService,
} from '../src';
import { FakeAnalyzer, fakeImage, MemoryBlobStore, MemoryVectorStore, waitFor } from './fakes';

const silent = { error() {}, warn() {} };

async function caught(p: Promise<unknown>): Promise<FaceSearchError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FaceSearchError);
  return err as FaceSearchError;
}

function setup(opts: { maxQueuedItems?: number } = {}) {
  const repo = new SqliteLibraryRepository(':memory:');
  const vectors = new MemoryVectorStore();
  const blobs = new MemoryBlobStore();
  const analyzer = new FakeAnalyzer();
  const deleteQueue = new MemoryJobQueue<DeleteJob>('deletes', { attempts: 2, backoffMs: 1, logger: silent });
  const library = new LibraryService(repo, vectors, blobs, analyzer, deleteQueue, { maxFacesPerUser: 2 });
  const queue = new MemoryJobQueue<ImportJob>('imports', { attempts: 2, backoffMs: 1, logger: silent });
  const embedQueue = new MemoryJobQueue<EmbedJob>('embed', { attempts: 2, backoffMs: 1, logger: silent });
  const indexQueue = new MemoryJobQueue<IndexJob>('index', { attempts: 2, backoffMs: 1, logger: silent });
  const imports = new ImportService(repo, blobs, queue, library, {
    maxItems: 100,
    maxFacesPerUser: 2,
    maxQueuedItems: opts.maxQueuedItems,
  });
  const detection = new ImportDetectStage(repo, blobs, analyzer, embedQueue, { maxFacesPerUser: 2 });
  const embedding = new ImportEmbedStage(repo, blobs, analyzer, indexQueue);
  const indexing = new ImportIndexStage(repo, vectors, blobs, { maxWaitMs: 5 });
  const startWorkers = () => {
    detection.start(queue, 2);
    embedding.start(embedQueue, 2);
    indexing.start(indexQueue, 16);
  };
  return {
    repo,
    vectors,
    blobs,
    analyzer,
    library,
    queue,
    embedQueue,
    indexQueue,
    deleteQueue,
    imports,
    indexing,
    startWorkers,
  };
}

let s: ReturnType<typeof setup>;
beforeEach(() => {
  s = setup();
});
afterEach(async () => {
  vi.restoreAllMocks();
  for (const q of [s.queue, s.embedQueue, s.indexQueue, s.deleteQueue]) await q.close();
  await s.indexing.close();
  await s.repo.close();
});

const down = (what: string) => new FaceSearchError(`${what}_unavailable`, `${what} is down`, 503, true);

describe('enrolment when a store fails', () => {
  it('vector store down: 503 and the stored image is taken back', async () => {
    vi.spyOn(s.vectors, 'upsert').mockRejectedValueOnce(down('vector_store'));
    const err = await caught(s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u' }) }));
    expect(err.code).toBe('vector_store_unavailable');
    expect(s.blobs.blobs.size).toBe(0);
    expect(await s.repo.listFaces('a', 'g', 'u')).toEqual([]);
  });

  it('library down after the vector was written: vector and image are taken back', async () => {
    vi.spyOn(s.repo, 'addFace').mockRejectedValueOnce(down('library'));
    const err = await caught(s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u' }) }));
    expect(err.code).toBe('library_unavailable');
    expect(s.vectors.points.size).toBe(0);
    expect(s.blobs.blobs.size).toBe(0);
    // Once the store is back, the same request works and leaves exactly one face.
    const ok = await s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u' }) });
    expect(s.vectors.points.size).toBe(1);
    expect(s.blobs.blobs.has(ok.face.image_key)).toBe(true);
  });

  it('blob store down: nothing is written at all', async () => {
    vi.spyOn(s.blobs, 'put').mockRejectedValueOnce(down('blob_store'));
    expect((await caught(s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u' }) }))).status).toBe(503);
    expect(s.vectors.points.size).toBe(0);
    expect(await s.repo.listFaces('a', 'g', 'u')).toEqual([]);
  });
});

describe('import request when the blob store fails', () => {
  it('an upload that cannot be stored: 503, no import, and none of its uploads left behind', async () => {
    const put = s.blobs.put.bind(s.blobs);
    let puts = 0;
    vi.spyOn(s.blobs, 'put').mockImplementation(async (key, data) => {
      if (++puts === 5) throw down('blob_store');
      await put(key, data);
    });
    const items = Array.from({ length: 30 }, (_, i) => ({
      user_id: `u${i}`,
      source: { kind: 'bytes' as const, data: fakeImage({ person: `u${i}` }) },
    }));
    const err = await caught(s.imports.create('a', { group_id: 'g', items }));
    expect(err.code).toBe('blob_store_unavailable');
    expect(puts).toBeLessThan(items.length); // no upload started after the failure
    expect(s.blobs.blobs.size).toBe(0);
    expect(await s.repo.listUnfinishedImports()).toEqual([]);
    expect((await s.queue.counts()).waiting).toBe(0);
  });
});

describe('Idempotency-Key', () => {
  it('validates the key', () => {
    expect(checkIdempotencyKey(undefined)).toBeUndefined();
    expect(checkIdempotencyKey('3f1c-uuid')).toBe('3f1c-uuid');
    for (const bad of ['has space', 'x'.repeat(256), 'é']) {
      expect(() => checkIdempotencyKey(bad)).toThrow(/Idempotency-Key/);
    }
  });

  it('enrol: a retry returns the first face, adds none, and does not count against the face limit', async () => {
    const image = fakeImage({ person: 'u' });
    const first = await s.library.enrol('a', 'g', 'u', { image, idempotency_key: 'k1' });
    await s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u', variant: 2 }) }); // the user is full (2)
    const again = await s.library.enrol('a', 'g', 'u', { image, idempotency_key: 'k1' });
    expect(again.face.face_id).toBe(first.face.face_id);
    expect(await s.repo.listFaces('a', 'g', 'u')).toHaveLength(2);
    // REPLACE retried: the first call's face is kept, not replaced by itself.
    const r1 = await s.library.enrol('a', 'g', 'v', { image, mode: 'REPLACE', idempotency_key: 'k2' });
    const r2 = await s.library.enrol('a', 'g', 'v', { image, mode: 'REPLACE', idempotency_key: 'k2' });
    expect(r2.face.face_id).toBe(r1.face.face_id);
    expect((await s.repo.listFaces('a', 'g', 'v')).map((f) => f.face_id)).toEqual([r1.face.face_id]);
    // Same key, other user: refused; same key, other app: independent.
    expect((await caught(s.library.enrol('a', 'g', 'w', { image, idempotency_key: 'k1' }))).code).toBe(
      'idempotency_key_reused',
    );
    const otherApp = await s.library.enrol('b', 'g', 'u', { image, idempotency_key: 'k1' });
    expect(otherApp.face.face_id).not.toBe(first.face.face_id);
  });

  it('enrol: concurrent retries store one face', async () => {
    const image = fakeImage({ person: 'u' });
    const results = await Promise.all(
      [1, 2, 3].map(() => s.library.enrol('a', 'g', 'u', { image, idempotency_key: 'same' })),
    );
    expect(new Set(results.map((r) => r.face.face_id)).size).toBe(1);
    expect(await s.repo.listFaces('a', 'g', 'u')).toHaveLength(1);
    expect(s.vectors.points.size).toBe(1);
  });

  it('enrol: a retry after a half-written first attempt repairs it', async () => {
    const image = fakeImage({ person: 'u' });
    const first = await s.library.enrol('a', 'g', 'u', { image, idempotency_key: 'k' });
    s.vectors.points.clear(); // as if the vector had been lost
    const again = await s.library.enrol('a', 'g', 'u', { image, idempotency_key: 'k' });
    expect(again.face.face_id).toBe(first.face.face_id);
    expect(s.vectors.points.size).toBe(1);
    // A retry failing on the way must not take back the first attempt's image and vector.
    vi.spyOn(s.repo, 'addFace').mockRejectedValueOnce(down('library'));
    vi.spyOn(s.repo, 'upsertUser').mockRejectedValueOnce(down('library'));
    await caught(s.library.enrol('a', 'g', 'u', { image, idempotency_key: 'k' }));
    expect(s.vectors.points.size).toBe(1);
    expect(s.blobs.blobs.has(first.face.image_key)).toBe(true);
  });

  it('import: the same key returns the first import and creates no second set of faces', async () => {
    s.startWorkers();
    const items = ['x', 'y', 'z'].map((p) => ({
      user_id: p,
      source: { kind: 'bytes' as const, data: fakeImage({ person: p }) },
    }));
    const [a, b] = await Promise.all([
      s.imports.create('a', { group_id: 'g', items, idempotency_key: 'imp-1' }),
      s.imports.create('a', { group_id: 'g', items, idempotency_key: 'imp-1' }),
    ]);
    expect(b.import_id).toBe(a.import_id);
    await waitFor(async () => (await s.imports.get('a', a.import_id)).status === 'completed');
    const again = await s.imports.create('a', { group_id: 'g', items, idempotency_key: 'imp-1' });
    expect(again).toMatchObject({ import_id: a.import_id, status: 'completed', succeeded: 3 });
    expect(s.vectors.points.size).toBe(3);
    for (const p of ['x', 'y', 'z']) expect(await s.repo.listFaces('a', 'g', p)).toHaveLength(1);
    // Only the face images stay: the losing request's uploads were dropped, the winner's consumed.
    expect([...s.blobs.blobs.keys()].every((k) => k.startsWith('faces/'))).toBe(true);
    const other = await caught(s.imports.create('a', { group_id: 'other', items, idempotency_key: 'imp-1' }));
    expect(other).toMatchObject({ code: 'idempotency_key_reused', status: 409 });
  });

  it('import: a retry queues again the items a first request stored but never queued', async () => {
    const items = [{ user_id: 'x', source: { kind: 'bytes' as const, data: fakeImage({ person: 'x' }) } }];
    vi.spyOn(s.queue, 'add').mockRejectedValueOnce(down('queue'));
    await caught(s.imports.create('a', { group_id: 'g', items, idempotency_key: 'k' }));
    s.startWorkers();
    const retried = await s.imports.create('a', { group_id: 'g', items, idempotency_key: 'k' });
    await waitFor(async () => (await s.imports.get('a', retried.import_id)).status === 'completed');
    expect((await s.imports.get('a', retried.import_id)).succeeded).toBe(1);
  });
});

describe('back-pressure', () => {
  it('refuses a new import with 429 queue_full and a retry hint while the queue is full', async () => {
    s = setup({ maxQueuedItems: 4 });
    const items = (n: number) =>
      Array.from({ length: n }, (_, i) => ({
        user_id: `u${i}`,
        source: { kind: 'bytes' as const, data: fakeImage({ person: `u${i}` }) },
      }));
    // Nothing consumes the queue: it fills up. An empty queue takes one import even above the limit.
    await s.imports.create('a', { group_id: 'g', items: items(3) });
    const refused = await caught(s.imports.create('a', { group_id: 'g', items: items(2) }));
    expect(refused).toMatchObject({ code: 'queue_full', status: 429, retryable: true });
    expect(refused.retryAfterSeconds).toBeGreaterThan(0);
    await s.imports.create('a', { group_id: 'g', items: items(1) }); // 3 + 1 <= 4
    expect((await caught(s.imports.create('a', { group_id: 'g', items: items(1) }))).code).toBe('queue_full');
    // Drained: accepted again.
    s.startWorkers();
    await waitFor(async () => (await s.queue.counts()).waiting === 0);
    await s.imports.create('a', { group_id: 'g', items: items(2) });
  });

  it('refuses analyses beyond the limit with 503 engine_busy at once, and admits again when one ends', async () => {
    const inner = new FakeAnalyzer();
    const gates: Array<() => void> = [];
    const real = inner.analyze.bind(inner);
    vi.spyOn(inner, 'analyze').mockImplementation(
      (image) =>
        new Promise<AnalyzeResult>((resolve) => {
          gates.push(() => resolve(real(image)));
        }),
    );
    const limited = new AdmissionLimitedAnalyzer(inner, 2);
    const image = fakeImage({ person: 'u' });
    const running = [limited.analyze(image), limited.detect(image)];
    const busy = await caught(limited.analyze(image));
    expect(busy).toMatchObject({ code: 'engine_busy', status: 503, retryable: true, retryAfterSeconds: 1 });
    expect(limited.refused).toBe(1);
    gates.shift()?.();
    await running[0];
    const third = limited.analyze(image);
    for (const open of gates.splice(0)) open();
    await Promise.all([running[1], third]);
    expect(limited.running).toBe(0);
    // 0 turns the limit off.
    const open = new AdmissionLimitedAnalyzer(new FakeAnalyzer(), 0);
    await Promise.all(Array.from({ length: 50 }, () => open.analyze(image)));
  });
});
