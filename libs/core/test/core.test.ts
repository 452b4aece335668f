import { SqliteLibraryRepository, MemoryJobQueue } from '@facesearch/adapters';
import { availableParallelism } from 'node:os';
import { FaceSearchError, type ImportItemRecord, loadConfig } from '@facesearch/common';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AuthService,
  DEFAULT_APP_ID,
  type DeleteJob,
  DeleteStage,
  type EmbedJob,
  ImportDetectStage,
  ImportEmbedStage,
  ImportIndexStage,
  type ImportJob,
  ImportProgress,
  ImportService,
  type IndexJob,
  indexJobVector,
  MicroBatcher,
  LibraryService,
  RecognitionService,
  UploadHandoff,
  UploadService,
} from '../src';
import { FakeAnalyzer, fakeImage, MemoryBlobStore, MemoryVectorStore, personVector, waitFor } from './fakes';

const silent = { error() {}, warn() {} };

async function expectError(p: Promise<unknown>, code: string, status?: number): Promise<FaceSearchError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(FaceSearchError);
  const fe = err as FaceSearchError;
  expect(fe.code).toBe(code);
  if (status) expect(fe.status).toBe(status);
  return fe;
}

function setup(opts: { maxFacesPerUser?: number } = {}) {
  const repo = new SqliteLibraryRepository(':memory:');
  const vectors = new MemoryVectorStore();
  const blobs = new MemoryBlobStore();
  const analyzer = new FakeAnalyzer();
  const maxFacesPerUser = opts.maxFacesPerUser ?? 20;
  const deleteQueue = new MemoryJobQueue<DeleteJob>('deletes', { attempts: 2, backoffMs: 1, logger: silent });
  const library: LibraryService = new LibraryService(repo, vectors, blobs, analyzer, deleteQueue, {
    maxFacesPerUser,
    beforeGroupDelete: (appId, groupId): Promise<void> => imports.cancelImportsInto(appId, groupId),
  });
  const recognition = new RecognitionService(repo, vectors, analyzer, { cosineThreshold: 0.45, maxFacesPerUser });
  const queue = new MemoryJobQueue<ImportJob>('imports', { attempts: 2, backoffMs: 1, logger: silent });
  const embedQueue = new MemoryJobQueue<EmbedJob>('embed', { attempts: 2, backoffMs: 1, logger: silent });
  const indexQueue = new MemoryJobQueue<IndexJob>('index', { attempts: 2, backoffMs: 1, logger: silent });
  const imports: ImportService = new ImportService(repo, blobs, queue, library, { maxItems: 100, maxFacesPerUser });
  const batches: number[] = [];
  const detection = new ImportDetectStage(repo, blobs, analyzer, embedQueue, { maxFacesPerUser });
  const embedding = new ImportEmbedStage(repo, blobs, analyzer, indexQueue);
  const indexing = new ImportIndexStage(repo, vectors, blobs, {
    maxWaitMs: 20,
    maxFacesPerUser,
    onBatch: (n) => batches.push(n),
  });
  const deletes = new DeleteStage(repo, vectors, blobs, deleteQueue, { pauseMs: 1 });
  // Deletes are always consumed, as in the embedded gateway (and by the indexer when distributed).
  deletes.start(2);
  /** The three stages consume their queues in this process, as in the embedded gateway. */
  const startWorkers = (concurrency: number) => {
    detection.start(queue, concurrency);
    embedding.start(embedQueue, concurrency);
    indexing.start(indexQueue, 64);
  };
  /** Until the queued deletes are done. */
  const deletesDone = () =>
    waitFor(async () => {
      const c = await deleteQueue.counts();
      return c.waiting + c.active + c.delayed === 0;
    });
  return {
    repo,
    vectors,
    blobs,
    analyzer,
    library,
    recognition,
    queue,
    embedQueue,
    indexQueue,
    deleteQueue,
    imports,
    detection,
    embedding,
    indexing,
    deletes,
    deletesDone,
    batches,
    startWorkers,
  };
}

type Setup = ReturnType<typeof setup>;

/** Makes the fake embedder fail (engine_error) for crops of one person, as a model would on a bad crop. */
function failEmbeddingOf(person: string): void {
  const embed = s.analyzer.embed.bind(s.analyzer);
  const poison = personVector(person);
  s.analyzer.embed = async (crops) => {
    const vectors = await embed(crops);
    if (vectors.some((v) => v[0] === poison[0])) throw new FaceSearchError('engine_error', 'bad crop', 422);
    return vectors;
  };
}
/** An import into group 'g' of app 'a' with one photo per person, each person its own user. */
const importPeople = (people: string[]) =>
  s.imports.create('a', {
    group_id: 'g',
    items: people.map((p) => ({ user_id: p, source: { kind: 'bytes' as const, data: fakeImage({ person: p }) } })),
  });

let s: Setup;
beforeEach(() => {
  s = setup();
});
afterEach(async () => {
  s.deletes.close();
  for (const q of [s.queue, s.embedQueue, s.indexQueue, s.deleteQueue]) await q.close();
  await s.indexing.close();
  await s.repo.close();
});

describe('config', () => {
  it('defaults to embedded with its implementations', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      mode: 'embedded',
      blobStore: 'fs',
      vectorStore: 'sqlite',
      libraryStore: 'sqlite',
      queue: 'memory',
      engine: 'local',
      port: 3000,
    });
    expect(c.matchCosineThreshold).toBeNull();
  });

  it('keeps up to 64 MiB of import uploads in memory for the detection stage unless IMPORT_HANDOFF_BYTES says otherwise (0: off)', () => {
    expect(loadConfig({}).importHandoffBytes).toBe(64 * 1024 * 1024);
    expect(loadConfig({ IMPORT_HANDOFF_BYTES: '0' }).importHandoffBytes).toBe(0);
    expect(() => loadConfig({ IMPORT_HANDOFF_BYTES: '-1' })).toThrowError(/IMPORT_HANDOFF_BYTES/);
  });

  it('names every bad variable with the reason', () => {
    const err = (() => {
      try {
        loadConfig({ PORT: 'abc', BLOB_STORE: 'ftp', MATCH_COSINE_THRESHOLD: '2' });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message).toContain("PORT: expected an integer 1-65535, got 'abc'");
    expect(err?.message).toContain("BLOB_STORE: expected one of fs|s3, got 'ftp'");
    expect(err?.message).toContain("MATCH_COSINE_THRESHOLD: expected a number 0.01-0.99, got '2'");
  });

  it('decodes large JPEGs at 512 px first unless ENGINE_PREVIEW_MAX_SIDE says otherwise (0: off)', () => {
    expect(loadConfig({}).enginePreviewMaxSide).toBe(512);
    expect(loadConfig({ ENGINE_PREVIEW_MAX_SIDE: '0' }).enginePreviewMaxSide).toBe(0);
    expect(loadConfig({ ENGINE_PREVIEW_MAX_SIDE: '768' }).enginePreviewMaxSide).toBe(768);
    expect(() => loadConfig({ ENGINE_PREVIEW_MAX_SIDE: '100' })).toThrow(
      "ENGINE_PREVIEW_MAX_SIDE: expected 0 (off) or an integer 256-1536, got '100'",
    );
  });

  it('trusts a valid API key for 5 s unless AUTH_KEY_CACHE_MS says otherwise (0: off)', () => {
    expect(loadConfig({}).authKeyCacheMs).toBe(5000);
    expect(loadConfig({ AUTH_KEY_CACHE_MS: '0' }).authKeyCacheMs).toBe(0);
    expect(() => loadConfig({ AUTH_KEY_CACHE_MS: '-1' })).toThrow(/AUTH_KEY_CACHE_MS: /);
  });

  it('serves worker metrics only when METRICS_PORT is set (0: any free port)', () => {
    expect(loadConfig({}).metricsPort).toBeNull();
    expect(loadConfig({ METRICS_PORT: '9464' }).metricsPort).toBe(9464);
    expect(loadConfig({ METRICS_PORT: '0' }).metricsPort).toBe(0);
    expect(() => loadConfig({ METRICS_PORT: '70000' })).toThrow(/METRICS_PORT: expected an integer 0-65535/);
    expect(() => loadConfig({ METRICS_PORT: 'yes' })).toThrow(/METRICS_PORT: /);
  });

  it('runs the models on one thread per core unless ENGINE_WORKERS says otherwise', () => {
    expect(loadConfig({}).engineWorkers).toBe(availableParallelism());
    expect(loadConfig({ ENGINE_WORKERS: 'auto' }).engineWorkers).toBe(availableParallelism());
    expect(loadConfig({ ENGINE_WORKERS: '0' }).engineWorkers).toBe(0);
    expect(loadConfig({ ENGINE_WORKERS: '3' }).engineWorkers).toBe(3);
    expect(() => loadConfig({ ENGINE_WORKERS: 'many' })).toThrow(
      "ENGINE_WORKERS: expected 'auto' or an integer 0-64, got 'many'",
    );
    // Import items in flight follow the engine threads unless set.
    expect(loadConfig({ ENGINE_WORKERS: '3' }).importConcurrency).toBe(9);
    expect(loadConfig({ ENGINE_WORKERS: '0' }).importConcurrency).toBe(2);
    expect(loadConfig({ ENGINE_WORKERS: '3', IMPORT_CONCURRENCY: '5' }).importConcurrency).toBe(5);
    expect(() => loadConfig({ IMPORT_CONCURRENCY: '0' })).toThrow(
      "IMPORT_CONCURRENCY: expected 'auto' or an integer 1-256, got '0'",
    );
  });

  it('requires the servers of distributed implementations', () => {
    expect(() => loadConfig({ FACESEARCH_MODE: 'distributed' })).toThrowError(
      /REDIS_URL: required when QUEUE=bullmq[\s\S]*S3_ENDPOINT[\s\S]*QDRANT_URL[\s\S]*DETECTOR_GRPC_URL/,
    );
    const servers = {
      FACESEARCH_MODE: 'distributed',
      REDIS_URL: 'redis://127.0.0.1:6379',
      S3_ENDPOINT: 'http://127.0.0.1:9000',
      S3_ACCESS_KEY: 'a',
      S3_SECRET_KEY: 'b',
      QDRANT_URL: 'http://127.0.0.1:6333',
      DETECTOR_GRPC_URL: '127.0.0.1:50051, 127.0.0.1:50052',
    };
    const c = loadConfig({ ...servers, EMBEDDER_GRPC_URL: 'dns:///embedder:50051' });
    expect(c.detectorGrpcUrls).toEqual(['127.0.0.1:50051', '127.0.0.1:50052']);
    expect(c.embedderGrpcUrls).toEqual(['dns:///embedder:50051']);
    expect(c.queue).toBe('bullmq');
    // Without an embedder address the detectors embed too (Detector.Analyze).
    expect(loadConfig(servers).embedderGrpcUrls).toEqual([]);
    expect(() => loadConfig({ DETECTOR_GRPC_URL: 'http://detector' })).toThrow(
      /DETECTOR_GRPC_URL: expected a comma-separated/,
    );
  });
});

describe('AuthService', () => {
  it('bootstraps the default app with the configured key, once', async () => {
    const auth = new AuthService(s.repo, {
      adminApiKey: 'admin-key-0123456789',
      defaultAppApiKey: 'default-key-0123456789',
    });
    expect((await auth.bootstrap()).generatedKey).toBeNull();
    await auth.bootstrap();
    expect((await s.repo.listApps({ limit: 10 })).items.map((a) => a.app_id)).toEqual([DEFAULT_APP_ID]);
    expect(await s.repo.listKeys(DEFAULT_APP_ID)).toHaveLength(1);
    expect(await auth.authenticate('default-key-0123456789')).toMatchObject({ kind: 'app', appId: DEFAULT_APP_ID });
    expect(await auth.authenticate('admin-key-0123456789')).toEqual({ kind: 'admin' });
    await expectError(auth.authenticate('nope'), 'unauthorized', 401);
    await expectError(auth.authenticate(undefined), 'unauthorized', 401);
  });

  it('generates a default-app key at the first start when none is configured, and only then', async () => {
    const auth = new AuthService(s.repo, { adminApiKey: null, defaultAppApiKey: null });
    const first = await auth.bootstrap();
    expect(first.generatedKey?.key).toMatch(/^fsk_/);
    expect(await auth.authenticate(first.generatedKey?.key)).toMatchObject({ kind: 'app', appId: DEFAULT_APP_ID });
    expect((await auth.bootstrap()).generatedKey).toBeNull();
    expect(await s.repo.listKeys(DEFAULT_APP_ID)).toHaveLength(1);
  });

  it('issues fsk_ keys stored as hashes, and revokes them', async () => {
    const auth = new AuthService(s.repo, { adminApiKey: null, defaultAppApiKey: null });
    const { key } = await auth.createApp({ app_id: 'shop' });
    expect(key.key).toMatch(/^fsk_[A-Za-z0-9_-]{32}$/);
    const stored = await s.repo.listKeys('shop');
    expect(stored[0].key_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(key.key);
    expect(await auth.authenticate(key.key)).toMatchObject({ kind: 'app', appId: 'shop' });
    await auth.revokeKey('shop', key.key_id);
    await expectError(auth.authenticate(key.key), 'unauthorized');
    await expectError(auth.createApp({ app_id: 'shop' }), 'app_exists', 409);
    await expectError(auth.revokeKey('shop', 'missing'), 'key_not_found', 404);
  });

  it('trusts a valid key for keyCacheMs; a revocation through it counts at once, through another after the time', async () => {
    const lookups = { n: 0 };
    const counted = new Proxy(s.repo, {
      get(target, prop, receiver) {
        if (prop === 'findKeyByHash') {
          return (hash: string) => {
            lookups.n++;
            return target.findKeyByHash(hash);
          };
        }
        return Reflect.get(target, prop, receiver);
      },
    });
    const here = new AuthService(counted, { adminApiKey: null, defaultAppApiKey: null, keyCacheMs: 60_000 });
    const elsewhere = new AuthService(s.repo, { adminApiKey: null, defaultAppApiKey: null });
    const { key } = await here.createApp({ app_id: 'cached' });
    const second = await here.createKey('cached');
    lookups.n = 0;
    for (let i = 0; i < 3; i++) expect(await here.authenticate(key.key)).toMatchObject({ appId: 'cached' });
    expect(lookups.n).toBe(1);
    await expectError(here.authenticate('fsk_unknown'), 'unauthorized', 401);
    await expectError(here.authenticate('fsk_unknown'), 'unauthorized', 401);
    expect(lookups.n).toBe(3); // unknown keys are never remembered

    // Revoked through this service: refused at the next request.
    await here.revokeKey('cached', key.key_id);
    await expectError(here.authenticate(key.key), 'unauthorized');

    // Revoked through another gateway: still trusted here until the entry expires.
    expect(await here.authenticate(second.key)).toMatchObject({ keyId: second.key_id });
    await elsewhere.revokeKey('cached', second.key_id);
    expect(await here.authenticate(second.key)).toMatchObject({ keyId: second.key_id });
    const now = Date.now();
    const clock = vi.spyOn(Date, 'now').mockReturnValue(now + 60_001);
    try {
      await expectError(here.authenticate(second.key), 'unauthorized');
    } finally {
      clock.mockRestore();
    }

    // keyCacheMs 0 (the default of AuthOptions): every request asks.
    const third = await here.createKey('cached');
    const uncached = new AuthService(counted, { adminApiKey: null, defaultAppApiKey: null });
    lookups.n = 0;
    await uncached.authenticate(third.key);
    await uncached.authenticate(third.key);
    expect(lookups.n).toBe(2);
  });
});

describe('LibraryService', () => {
  it('enrols the largest face, creating group and user, storing image and vector', async () => {
    const r = await s.library.enrol('a', 'g', 'alice', {
      image: fakeImage({ person: 'alice', size: 80 }, { person: 'bob', size: 120 }),
      user_info: 'Alice',
    });
    const stored = await s.vectors.retrieve('a', [r.face.face_id]);
    expect(stored[0].user_id).toBe('alice');
    expect(r.face.box.width).toBe(120); // the largest face
    expect(s.blobs.blobs.has(r.face.image_key)).toBe(true);
    expect((await s.library.getUser('a', 'g', 'alice')).user_info).toBe('Alice');
    expect(await s.library.getGroup('a', 'g')).toBeTruthy();
  });

  it('applies quality control and refuses images without faces', async () => {
    await expectError(
      s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'x', level: 'LOW' }), quality_control: 'NORMAL' }),
      'face_quality_too_low',
      422,
    );
    await s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'x', level: 'LOW' }), quality_control: 'LOW' });
    await expectError(s.library.enrol('a', 'g', 'u', { image: fakeImage() }), 'no_face_detected', 422);
    await expectError(
      s.library.enrol('a', 'g', 'u', { image: new TextEncoder().encode('junk') }),
      'image_corrupt',
      422,
    );
    await expectError(
      s.library.enrol('a', 'bad id', 'u', { image: fakeImage({ person: 'x' }) }),
      'invalid_request',
      400,
    );
  });

  it('limits faces per user; REPLACE swaps them', async () => {
    s = setup({ maxFacesPerUser: 2 });
    await s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u', variant: 1 }) });
    await s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u', variant: 2 }) });
    await expectError(
      s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u', variant: 3 }) }),
      'too_many_faces',
      409,
    );
    const r = await s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u', variant: 3 }), mode: 'REPLACE' });
    expect(r.replaced_face_ids).toHaveLength(2);
    expect((await s.library.listFaces('a', 'g', 'u')).map((f) => f.face_id)).toEqual([r.face.face_id]);
    await s.deletesDone();
    expect(s.vectors.points.size).toBe(1);
    expect(s.blobs.blobs.size).toBe(1);
  });

  it('copies a user with new face ids; deletes remove vectors and images', async () => {
    const { face } = await s.library.enrol('a', 'g1', 'u', { image: fakeImage({ person: 'u' }), user_info: 'info' });
    await s.library.createGroup('a', 'g2');
    const copy = await s.library.copyUser('a', 'g1', 'u', 'g2');
    expect(copy.faces).toHaveLength(1);
    expect(copy.faces[0].face_id).not.toBe(face.face_id);
    expect(copy.user.user_info).toBe('info');
    expect(s.vectors.points.size).toBe(2);
    await expectError(s.library.copyUser('a', 'g1', 'u', 'missing'), 'group_not_found', 404);

    await s.library.deleteUser('a', 'g1', 'u');
    await s.deletesDone();
    expect(s.vectors.points.size).toBe(1);
    expect([...s.blobs.blobs.keys()].every((k) => k.includes('/g2/'))).toBe(true);
    await expectError(s.library.getUser('a', 'g1', 'u'), 'user_not_found', 404);

    const res = await s.library.deleteGroup('a', 'g2');
    expect(res.deleted_faces).toBe(1);
    await s.deletesDone();
    expect(s.vectors.points.size).toBe(0);
    expect(s.blobs.blobs.size).toBe(0);
  });

  it('leaves nothing in the target group when an image cannot be copied', async () => {
    await s.library.enrol('a', 'g1', 'u', { image: fakeImage({ person: 'u' }) });
    await s.library.enrol('a', 'g1', 'u', { image: fakeImage({ person: 'u', variant: 2 }) });
    await s.library.createGroup('a', 'g2');
    // The image of the face copied last lost out of band: the first one's copy is made, then must go again.
    const faces = await s.repo.listFaces('a', 'g1', 'u');
    await s.blobs.delete(faces[faces.length - 1].image_key);
    const blobsBefore = [...s.blobs.blobs.keys()].sort();
    await expectError(s.library.copyUser('a', 'g1', 'u', 'g2'), 'blob_not_found', 404);
    expect(await s.repo.getUser('a', 'g2', 'u')).toBeNull();
    expect([...s.blobs.blobs.keys()].sort()).toEqual(blobsBefore);
    expect(s.vectors.points.size).toBe(2);
  });

  it('takes a copy back when its target group is deleted while it is written', async () => {
    await s.library.enrol('a', 'g1', 'u', { image: fakeImage({ person: 'u' }) });
    await s.library.enrol('a', 'g1', 'u', { image: fakeImage({ person: 'u', variant: 2 }) });
    await s.library.createGroup('a', 'g2');
    const source = { blobs: [...s.blobs.blobs.keys()].sort(), points: s.vectors.points.size };
    const addFace = s.repo.addFace.bind(s.repo);
    let deleted = false;
    s.repo.addFace = async (face) => {
      const added = await addFace(face);
      if (face.group_id === 'g2' && !deleted) {
        deleted = true;
        await s.library.deleteGroup('a', 'g2'); // lands between the copy's writes
      }
      return added;
    };
    await expectError(s.library.copyUser('a', 'g1', 'u', 'g2'), 'group_not_found', 404);
    await s.deletesDone();
    expect(await s.repo.getGroup('a', 'g2')).toBeNull();
    expect(await s.repo.getUser('a', 'g2', 'u')).toBeNull();
    expect(await s.repo.listFaces('a', 'g2', 'u')).toEqual([]);
    expect(s.vectors.points.size).toBe(source.points);
    expect([...s.blobs.blobs.keys()].sort()).toEqual(source.blobs);
    // The group made again starts empty.
    await s.library.createGroup('a', 'g2');
    expect((await s.library.listUsers('a', 'g2', { limit: 10 })).items).toEqual([]);
  });

  it('takes an enrol back when its group is deleted while the face is written', async () => {
    await s.library.createGroup('a', 'g');
    const upsertUser = s.repo.upsertUser.bind(s.repo);
    s.repo.upsertUser = async (user) => {
      const stored = await upsertUser(user);
      if (user.group_id === 'g') await s.library.deleteGroup('a', 'g'); // lands between the enrol's writes
      return stored;
    };
    await expectError(s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u' }) }), 'group_not_found', 404);
    s.repo.upsertUser = upsertUser;
    await s.deletesDone();
    expect(await s.repo.getGroup('a', 'g')).toBeNull();
    expect(await s.repo.getUser('a', 'g', 'u')).toBeNull();
    expect(await s.repo.listFaces('a', 'g', 'u')).toEqual([]);
    expect(s.vectors.points.size).toBe(0);
    expect(s.blobs.blobs.size).toBe(0);
    // Made again, the group starts empty, and an enrol into it keeps its face and image.
    const again = await s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u' }) });
    await s.deletesDone();
    expect((await s.repo.listFaces('a', 'g', 'u')).map((f) => f.face_id)).toEqual([again.face.face_id]);
    expect(s.blobs.blobs.has(again.face.image_key)).toBe(true);
  });

  it('leaves one face after two REPLACE enrols at once: the later one', async () => {
    await s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u' }) });
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(
        [2, 3].map((variant) =>
          s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u', variant }), mode: 'REPLACE' }),
        ),
      );
      await s.deletesDone();
      const faces = await s.repo.listFaces('a', 'g', 'u');
      expect(faces, `round ${round}`).toHaveLength(1);
      expect(results.map((r) => r.face.face_id)).toContain(faces[0].face_id);
      expect(s.vectors.points.size).toBe(1);
      expect([...s.blobs.blobs.keys()]).toEqual([faces[0].image_key]);
    }
  });

  it('deletes one face only within its own group and user', async () => {
    const { face } = await s.library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u' }) });
    await s.library.enrol('a', 'g', 'v', { image: fakeImage({ person: 'v' }) });
    await expectError(s.library.deleteFace('a', 'g', 'v', face.face_id), 'face_not_found', 404);
    await s.library.deleteFace('a', 'g', 'u', face.face_id);
    await s.deletesDone();
    expect(s.vectors.points.size).toBe(1);
  });

  it('keeps apps apart', async () => {
    await s.library.createGroup('a', 'g');
    await expectError(s.library.getGroup('b', 'g'), 'group_not_found', 404);
    await s.library.createGroup('b', 'g');
    await expectError(s.library.createGroup('a', 'g'), 'group_exists', 409);
  });
});

describe('RecognitionService', () => {
  beforeEach(async () => {
    for (const person of ['alice', 'bob', 'carol']) {
      await s.library.enrol('a', 'staff', person, {
        image: fakeImage({ person, variant: 1 }),
        user_info: person.toUpperCase(),
      });
      await s.library.enrol('a', 'staff', person, { image: fakeImage({ person, variant: 2 }) });
    }
  });

  it('lets the engine take the images of detect, compare and search; enrolment keeps its image', async () => {
    s.analyzer.handedOver.length = 0;
    await s.recognition.detect(fakeImage({ person: 'bob', variant: 3 }));
    await s.recognition.compare('a', {
      image_a: fakeImage({ person: 'bob', variant: 3 }),
      image_b: fakeImage({ person: 'bob', variant: 4 }),
    });
    await s.recognition.search('a', { image: fakeImage({ person: 'bob', variant: 3 }), group_ids: ['staff'] });
    expect(s.analyzer.handedOver).toEqual([true, true, true, true]);
    // Enrolment stores the image after analysing it: never handed over.
    await s.library.enrol('a', 'staff', 'dave', { image: fakeImage({ person: 'dave' }) });
    expect(s.analyzer.handedOver.at(-1)).toBe(false);
  });

  it('finds the right person once (faces of one user collapse) with a score', async () => {
    const r = await s.recognition.search('a', {
      image: fakeImage({ person: 'bob', variant: 3 }),
      group_ids: ['staff'],
    });
    expect(r.results).toHaveLength(1);
    const m = r.results[0].matches;
    expect(m).toHaveLength(1);
    expect(m[0]).toMatchObject({ group_id: 'staff', user_id: 'bob', user_info: 'BOB' });
    expect(m[0].score).toBeGreaterThanOrEqual(80);
  });

  it('answers an explicit empty match list for an unknown person', async () => {
    const r = await s.recognition.search('a', { image: fakeImage({ person: 'mallory' }), group_ids: ['staff'] });
    expect(r.results[0].matches).toEqual([]);
    const loose = await s.recognition.search('a', {
      image: fakeImage({ person: 'mallory' }),
      group_ids: ['staff'],
      match_threshold: 0,
      top_k: 2,
    });
    expect(loose.results[0].matches).toHaveLength(2);
  });

  it('searches every face for M:N', async () => {
    const r = await s.recognition.search('a', {
      image: fakeImage(
        { person: 'alice', variant: 4, size: 150 },
        { person: 'carol', variant: 4, size: 90 },
        { person: 'zed', size: 50 },
      ),
      group_ids: ['staff'],
      max_faces: 3,
    });
    expect(r.face_num).toBe(3);
    expect(r.results.map((x) => x.matches[0]?.user_id ?? null)).toEqual(['alice', 'carol', null]);
  });

  it("searches an M:N photo's faces at once and answers in the detector's order", async () => {
    // The first face's search is the slowest, the last's the fastest.
    let inFlight = 0;
    let most = 0;
    let delay = 60;
    const search = s.vectors.search.bind(s.vectors);
    vi.spyOn(s.vectors, 'search').mockImplementation(async (...args) => {
      most = Math.max(most, ++inFlight);
      const ms = delay;
      delay -= 20;
      await new Promise((r) => setTimeout(r, ms));
      inFlight--;
      return search(...args);
    });
    try {
      const r = await s.recognition.search('a', {
        image: fakeImage(
          { person: 'alice', variant: 4, size: 150 },
          { person: 'carol', variant: 4, size: 90 },
          { person: 'bob', variant: 4, size: 50 },
        ),
        group_ids: ['staff'],
        max_faces: 3,
      });
      expect(r.results.map((x) => x.matches[0]?.user_id)).toEqual(['alice', 'carol', 'bob']);
      expect(most).toBe(3);
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('trusts the face records: a vector without its record is not a match', async () => {
    const probe = () =>
      s.recognition.search('a', { image: fakeImage({ person: 'alice', variant: 4 }), group_ids: ['staff'] });
    expect((await probe()).results[0].matches[0]?.user_id).toBe('alice');
    // A record deleted while its vector stayed (the vector delete failed), or not written yet (an import between
    // its vector write and its record write).
    for (const face of await s.library.listFaces('a', 'staff', 'alice')) await s.repo.deleteFace('a', face.face_id);
    expect(s.vectors.points.size).toBeGreaterThan(0);
    expect((await probe()).results[0].matches.map((m) => m.user_id)).not.toContain('alice');
  });

  it('refuses unknown groups and another app', async () => {
    await expectError(
      s.recognition.search('a', { image: fakeImage({ person: 'bob' }), group_ids: ['nope'] }),
      'group_not_found',
      404,
    );
    await expectError(
      s.recognition.search('b', { image: fakeImage({ person: 'bob' }), group_ids: ['staff'] }),
      'group_not_found',
      404,
    );
  });

  it('compares two images or an image with an enrolled face', async () => {
    const same = await s.recognition.compare('a', {
      image_a: fakeImage({ person: 'bob', variant: 5 }),
      image_b: fakeImage({ person: 'bob', variant: 6 }),
    });
    expect(same).toMatchObject({ match: true, threshold: 80 });
    const diff = await s.recognition.compare('a', {
      image_a: fakeImage({ person: 'bob' }),
      image_b: fakeImage({ person: 'alice' }),
    });
    expect(diff.match).toBe(false);
    const [face] = await s.library.listFaces('a', 'staff', 'carol');
    const byId = await s.recognition.compare('a', {
      image_a: fakeImage({ person: 'carol', variant: 7 }),
      face_id_b: face.face_id,
    });
    expect(byId.match).toBe(true);
    expect(byId.face_b.face_id).toBe(face.face_id);
    await expectError(
      s.recognition.compare('b', { image_a: fakeImage({ person: 'carol' }), face_id_b: face.face_id }),
      'face_not_found',
      404,
    );
    await expectError(
      s.recognition.compare('a', { image_a: fakeImage(), image_b: fakeImage({ person: 'x' }) }),
      'no_face_detected',
      422,
    );
  });

  it("analyses compare's two images at once, and looks groups up during a search's analysis", async () => {
    // Every analysis and group lookup takes 30 ms here, so what overlaps shows in the order of events.
    const events: string[] = [];
    let inFlight = 0;
    let most = 0;
    const analyze = s.analyzer.analyze.bind(s.analyzer);
    vi.spyOn(s.analyzer, 'analyze').mockImplementation(async (...args) => {
      most = Math.max(most, ++inFlight);
      events.push('analysis starts');
      try {
        await new Promise((r) => setTimeout(r, 30));
        return await analyze(...args);
      } finally {
        inFlight--;
        events.push('analysis ends');
      }
    });
    const getGroup = s.repo.getGroup.bind(s.repo);
    vi.spyOn(s.repo, 'getGroup').mockImplementation(async (...args) => {
      events.push('group lookup starts');
      await new Promise((r) => setTimeout(r, 30));
      events.push('group lookup ends');
      return getGroup(...args);
    });

    const same = await s.recognition.compare('a', {
      image_a: fakeImage({ person: 'bob', variant: 5 }),
      image_b: fakeImage({ person: 'bob', variant: 6 }),
    });
    expect(same.match).toBe(true);
    expect(most).toBe(2);

    events.length = 0;
    await s.recognition.search('a', { image: fakeImage({ person: 'bob', variant: 3 }), group_ids: ['staff'] });
    expect(events).toEqual(['group lookup starts', 'analysis starts', 'group lookup ends', 'analysis ends']);
    vi.restoreAllMocks();
  });

  it('reports the first problem of a request in its order, whatever finishes first', async () => {
    // image_a before image_b, even when image_b's error is known first (an empty image fails at once).
    const a = await expectError(
      s.recognition.compare('a', { image_a: fakeImage(), image_b: new Uint8Array(0) }),
      'no_face_detected',
    );
    expect(a.message).toContain('image_a');
    await expectError(s.recognition.compare('a', { image_a: fakeImage(), face_id_b: 'missing' }), 'no_face_detected');
    await expectError(s.recognition.compare('a', { image_a: fakeImage() }), 'invalid_request', 400);
    // A missing group before anything about the image; the first missing group of the list.
    const g = await expectError(
      s.recognition.search('a', { image: fakeImage(), group_ids: ['staff', 'nope', 'nada'] }),
      'group_not_found',
    );
    expect(g.message).toContain('nope');
  });
});

describe('ImportService', () => {
  it('imports items in parallel with per-item results; bad items do not block the others', async () => {
    s.startWorkers(2);
    const job = await s.imports.create('a', {
      group_id: 'g',
      items: [
        { user_id: 'alice', name: 'alice.jpg', source: { kind: 'bytes', data: fakeImage({ person: 'alice' }) } },
        { user_id: 'bob', source: { kind: 'bytes', data: new TextEncoder().encode('junk') } },
        { user_id: 'carol', source: { kind: 'bytes', data: fakeImage() } },
        { user_id: 'dave', source: { kind: 'bytes', data: fakeImage({ person: 'dave' }) } },
      ],
    });
    expect(job).toMatchObject({ status: 'queued', total: 4, progress: 0 });
    await waitFor(async () => (await s.imports.get('a', job.import_id)).status === 'completed');
    const done = await s.imports.get('a', job.import_id);
    expect(done).toMatchObject({ total: 4, succeeded: 2, failed: 2, pending: 0, progress: 1 });
    const failed = await s.imports.listItems('a', job.import_id, 'failed', { limit: 10 });
    expect(failed.items.map((i) => [i.user_id, i.error?.code, i.attempts])).toEqual([
      ['bob', 'image_corrupt', 1],
      ['carol', 'no_face_detected', 1],
    ]);
    const ok = await s.imports.listItems('a', job.import_id, 'succeeded', { limit: 10 });
    expect(ok.items[0]).toMatchObject({ user_id: 'alice', name: 'alice.jpg' });
    expect((await s.library.listFaces('a', 'g', 'alice'))[0].face_id).toBe(ok.items[0].face_id);
    // item images are dropped once finished; face images stay
    expect([...s.blobs.blobs.keys()].every((k) => k.startsWith('faces/'))).toBe(true);
    await expectError(s.imports.get('b', job.import_id), 'import_not_found', 404);
    await expectError(s.imports.cancel('a', job.import_id), 'import_finished', 409);
  });

  it('stores each upload as its face image: a successful item is neither copied nor deleted', async () => {
    const calls: string[] = [];
    const copy = s.blobs.copy.bind(s.blobs);
    const remove = s.blobs.delete.bind(s.blobs);
    s.blobs.copy = async (from, to) => {
      calls.push(`copy ${from}`);
      return copy(from, to);
    };
    s.blobs.delete = async (key) => {
      calls.push(`delete ${key}`);
      return remove(key);
    };
    s.startWorkers(2);
    const job = await s.imports.create('a', {
      group_id: 'g',
      // Keyed: the upload's key carries the request's attempt suffix, and still ends up as the face's image.
      idempotency_key: 'k1',
      items: [
        { user_id: 'alice', source: { kind: 'bytes', data: fakeImage({ person: 'alice' }) } },
        { user_id: 'carol', source: { kind: 'bytes', data: fakeImage() } },
      ],
    });
    await waitFor(async () => (await s.imports.get('a', job.import_id)).status === 'completed');
    expect(await s.imports.get('a', job.import_id)).toMatchObject({ succeeded: 1, failed: 1 });
    const [face] = await s.library.listFaces('a', 'g', 'alice');
    expect(face.image_key.startsWith(`faces/a/g/alice/${face.face_id}-`)).toBe(true);
    expect(calls.filter((c) => c.startsWith('copy') || c.includes('/alice/'))).toEqual([]);
    // The failed item's upload went with it; the face's image is all that is left.
    expect([...s.blobs.blobs.keys()]).toEqual([face.image_key]);
    await s.library.deleteUser('a', 'g', 'alice');
    await s.deletesDone();
    expect([...s.blobs.blobs.keys()]).toEqual([]);
  });

  it('uses uploaded objects of the same app only', async () => {
    const uploads = new UploadService(s.blobs, { signingSecret: 'secret-secret-secret' });
    const ticket = await uploads.create('a');
    await expectError(
      s.imports.create('a', {
        group_id: 'g',
        items: [{ user_id: 'u', source: { kind: 'object', key: ticket.object_key } }],
      }),
      'upload_not_found',
      400,
    );
    await uploads.store(ticket.object_key, fakeImage({ person: 'u' }));
    await expectError(
      s.imports.create('b', {
        group_id: 'g',
        items: [{ user_id: 'u', source: { kind: 'object', key: ticket.object_key } }],
      }),
      'upload_not_found',
    );
    s.startWorkers(1);
    const job = await s.imports.create('a', {
      group_id: 'g',
      items: [{ user_id: 'u', source: { kind: 'object', key: ticket.object_key } }],
    });
    await waitFor(async () => (await s.imports.get('a', job.import_id)).status === 'completed');
    expect(await s.blobs.exists(ticket.object_key)).toBe(false);
  });

  it('signs and checks upload tokens', async () => {
    const uploads = new UploadService(s.blobs, { signingSecret: 'secret-secret-secret' });
    const token = uploads.sign('uploads/a/x', new Date(Date.now() + 60_000));
    uploads.verify('uploads/a/x', token);
    expect(() => uploads.verify('uploads/a/y', token)).toThrowError(/invalid/);
    expect(() => uploads.verify('uploads/a/x', uploads.sign('uploads/a/x', new Date(Date.now() - 1000)))).toThrowError(
      /expired/,
    );
    expect(() => uploads.verify('uploads/a/x', undefined)).toThrowError(FaceSearchError);
  });

  it('cancels queued items', async () => {
    const job = await s.imports.create('a', {
      group_id: 'g',
      items: [1, 2, 3].map((i) => ({
        user_id: `u${i}`,
        source: { kind: 'bytes' as const, data: fakeImage({ person: `u${i}` }) },
      })),
    });
    const cancelled = await s.imports.cancel('a', job.import_id);
    expect(cancelled.status).toBe('cancelled');
    expect((await s.imports.listItems('a', job.import_id, 'cancelled', { limit: 10 })).items).toHaveLength(3);
    expect((await s.queue.counts()).waiting).toBe(0);
    expect(s.blobs.blobs.size).toBe(0);
  });

  it('resumes unfinished items after a restart', async () => {
    // First "process": the import is recorded and queued, but nothing consumes the queue before it dies.
    const job = await importPeople(['x', 'y']);
    await s.queue.close();
    // Second "process": same stores, a new queue.
    const queue = new MemoryJobQueue<ImportJob>('imports', { attempts: 2, backoffMs: 1, logger: silent });
    const imports = new ImportService(s.repo, s.blobs, queue, s.library, { maxItems: 100, maxFacesPerUser: 20 });
    s.queue = queue;
    s.detection.start(queue, 1);
    s.embedding.start(s.embedQueue, 1);
    s.indexing.start(s.indexQueue, 8);
    expect(await imports.resume()).toEqual({ imports: 1, items: 2 });
    await waitFor(async () => (await imports.get('a', job.import_id)).status === 'completed');
    expect((await imports.get('a', job.import_id)).succeeded).toBe(2);
  });

  it('handles a duplicate delivery once', async () => {
    const job = await s.imports.create('a', {
      group_id: 'g',
      items: [{ user_id: 'x', source: { kind: 'bytes', data: fakeImage({ person: 'x' }) } }],
    });
    const data = { app_id: 'a', import_id: job.import_id, index: 0 };
    const ctx = { attempt: 1, maxAttempts: 2 };
    // Each stage queues the next one's job; run them by hand, twice each, and the detection again at the end.
    await s.detection.handle(data, ctx);
    const [embedJob] = await drain(s.embedQueue);
    expect(embedJob.crop_key).toBe(`crops/a/${job.import_id}/0`);
    expect(s.blobs.blobs.has(embedJob.crop_key)).toBe(true);
    await s.embedding.handle(embedJob);
    expect(s.blobs.blobs.has(embedJob.crop_key)).toBe(false); // dropped once the index job is queued
    await s.embedding.handle(embedJob); // redelivered after that: nothing left to do
    const [queued, ...more] = await drain(s.indexQueue);
    expect(more).toEqual([]);
    expect(indexJobVector(queued)).toHaveLength(64);
    await s.indexing.writeBatch([queued, queued]);
    await s.indexing.writeBatch([queued]);
    await s.detection.handle(data, ctx);
    await s.embedding.handle(embedJob);
    expect(await drain(s.embedQueue)).toEqual([]);
    expect(await drain(s.indexQueue)).toEqual([]);
    expect(await s.imports.get('a', job.import_id)).toMatchObject({ status: 'completed', succeeded: 1, total: 1 });
    expect(await s.library.listFaces('a', 'g', 'x')).toHaveLength(1);
    expect(s.vectors.points.size).toBe(1);
    expect(await s.repo.getFace('a', `${job.import_id}_0`)).not.toBeNull();
  });

  it('writes vectors in batches, and a failed batch falls back to one job at a time', async () => {
    const upserts: number[] = [];
    const upsert = s.vectors.upsert.bind(s.vectors);
    s.vectors.upsert = async (points) => {
      upserts.push(points.length);
      if (points.some((p) => p.payload.user_id === 'poison')) throw new Error('vector store refused a point');
      return upsert(points);
    };
    s.startWorkers(4);
    const people = ['p1', 'p2', 'p3', 'poison', 'p5', 'p6'];
    const job = await importPeople(people);
    await waitFor(async () => (await s.imports.get('a', job.import_id)).status === 'completed');
    expect(await s.imports.get('a', job.import_id)).toMatchObject({ succeeded: 5, failed: 1 });
    const failed = await s.imports.listItems('a', job.import_id, 'failed', { limit: 10 });
    expect(failed.items.map((i) => [i.user_id, i.error?.code])).toEqual([['poison', 'internal']]);
    expect(Math.max(...upserts)).toBeGreaterThan(1); // several jobs went in one upsert
    expect(s.vectors.points.size).toBe(5);
    // The poisoned item's face image was removed with it; the others keep theirs.
    expect([...s.blobs.blobs.keys()].filter((k) => k.includes('/poison/'))).toEqual([]);
    expect([...s.blobs.blobs.keys()].filter((k) => k.startsWith('faces/'))).toHaveLength(5);
  });
});

describe('import stages: detect -> embed -> index', () => {
  it("sends the detection stage's reads together: the import, the item and the face before, the group and the user's faces after", async () => {
    // Each read waits 20 ms here; what is sent together is in flight together.
    let inFlight = 0;
    const batches: string[][] = [];
    let current: string[] = [];
    for (const method of ['getImport', 'getImportItem', 'getFace', 'getGroup', 'listFaces'] as const) {
      const original = (s.repo[method] as (...a: unknown[]) => Promise<unknown>).bind(s.repo);
      vi.spyOn(s.repo, method).mockImplementation((async (...args: unknown[]) => {
        if (inFlight++ === 0) {
          current = [];
          batches.push(current);
        }
        current.push(method);
        try {
          await new Promise((r) => setTimeout(r, 20));
          return await original(...args);
        } finally {
          inFlight--;
        }
      }) as never);
    }
    try {
      const job = await importPeople(['p1']);
      batches.length = 0;
      // The stage alone (no workers, nothing polling), as a worker would call it.
      await s.detection.handle({ app_id: 'a', import_id: job.import_id, index: 0 }, { attempt: 1, maxAttempts: 2 });
      expect(batches.map((b) => [...b].sort())).toEqual([
        ['getFace', 'getImport', 'getImportItem'],
        ['getGroup', 'listFaces'],
      ]);
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('passes each item through all three queues, with only the crop key in the embed job', async () => {
    const seen = { embed: [] as EmbedJob[], index: [] as IndexJob[] };
    const addEmbed = s.embedQueue.add.bind(s.embedQueue);
    s.embedQueue.add = async (jobs) => {
      seen.embed.push(...jobs.map((j) => j.data));
      return addEmbed(jobs);
    };
    const addIndex = s.indexQueue.add.bind(s.indexQueue);
    s.indexQueue.add = async (jobs) => {
      seen.index.push(...jobs.map((j) => j.data));
      return addIndex(jobs);
    };
    s.startWorkers(2);
    const job = await importPeople(['p1', 'p2', 'p3']);
    await waitFor(async () => (await s.imports.get('a', job.import_id)).status === 'completed');
    expect(await s.imports.get('a', job.import_id)).toMatchObject({ succeeded: 3, failed: 0 });
    expect(seen.embed.map((j) => j.crop_key).sort()).toEqual([0, 1, 2].map((i) => `crops/a/${job.import_id}/${i}`));
    // No bytes in the jobs: JSON of numbers and strings only, no crop.
    for (const j of seen.embed) expect(JSON.stringify(j).length).toBeLessThan(2000);
    expect(seen.index).toHaveLength(3);
    expect(s.analyzer.embedCalls).toBe(3);
    // The crops are gone; the face images stay.
    expect([...s.blobs.blobs.keys()].filter((k) => k.startsWith('crops/'))).toEqual([]);
    expect([...s.blobs.blobs.keys()].filter((k) => k.startsWith('faces/'))).toHaveLength(3);
    const hits = await s.recognition.search('a', { image: fakeImage({ person: 'p2', variant: 1 }), group_ids: ['g'] });
    expect(hits.results[0].matches[0]).toMatchObject({ user_id: 'p2' });
  });

  it('index jobs carry the vector as base64 Float32; number jobs still index; a job without one fails alone', async () => {
    const job = await importPeople(['p1', 'p2', 'p3']);
    for (const index of [0, 1, 2]) {
      await s.detection.handle({ app_id: 'a', import_id: job.import_id, index }, { attempt: 1, maxAttempts: 2 });
    }
    for (const embedJob of await drain(s.embedQueue)) await s.embedding.handle(embedJob);
    const [p1, p2, p3] = (await drain(s.indexQueue)).sort((x, y) => x.index - y.index);
    expect(p1.vector).toBeUndefined();
    expect(JSON.stringify(p1).length).toBeLessThan(4000);
    expect(indexJobVector(p1)).toEqual(personVector('p1'));
    // As queued by an earlier version, and a job whose vector was lost.
    const older: IndexJob = { ...p2, vector_f32: undefined, vector: Array.from(indexJobVector(p2)) };
    const broken: IndexJob = { ...p3, vector_f32: undefined };
    s.indexing.start(s.indexQueue, 64);
    await s.indexQueue.add([p1, older, broken].map((data) => ({ id: data.face_id, data })));
    await waitFor(async () => (await s.imports.get('a', job.import_id)).status === 'completed');
    expect(await s.imports.get('a', job.import_id)).toMatchObject({ succeeded: 2, failed: 1 });
    const failed = await s.imports.listItems('a', job.import_id, 'failed', { limit: 10 });
    expect(failed.items.map((i) => [i.user_id, i.error?.code])).toEqual([['p3', 'invalid_request']]);
    const hits = await s.recognition.search('a', { image: fakeImage({ person: 'p2', variant: 1 }), group_ids: ['g'] });
    expect(hits.results[0].matches[0]).toMatchObject({ user_id: 'p2' });
  });

  it('an embedding error fails only its item, with its code, and leaves no crop or face image behind', async () => {
    failEmbeddingOf('poison');
    s.startWorkers(2);
    const job = await importPeople(['p1', 'poison', 'p3']);
    await waitFor(async () => (await s.imports.get('a', job.import_id)).status === 'completed');
    expect(await s.imports.get('a', job.import_id)).toMatchObject({ succeeded: 2, failed: 1 });
    const failed = await s.imports.listItems('a', job.import_id, 'failed', { limit: 10 });
    expect(failed.items.map((i) => [i.user_id, i.error?.code])).toEqual([['poison', 'engine_error']]);
    expect([...s.blobs.blobs.keys()].filter((k) => k.startsWith('crops/') || k.includes('/poison/'))).toEqual([]);
    expect(s.vectors.points.size).toBe(2);
  });

  it('a cancelled item that was already detected drops its crop and face image in the embed stage', async () => {
    const job = await s.imports.create('a', {
      group_id: 'g',
      items: [{ user_id: 'x', source: { kind: 'bytes', data: fakeImage({ person: 'x' }) } }],
    });
    await s.detection.handle({ app_id: 'a', import_id: job.import_id, index: 0 }, { attempt: 1, maxAttempts: 2 });
    const [embedJob] = await drain(s.embedQueue);
    await s.imports.cancel('a', job.import_id);
    await s.repo.finishImportItem(job.import_id, 0, { status: 'cancelled', attempts: 1 }, new Date().toISOString());
    await s.embedding.handle(embedJob);
    expect(await drain(s.indexQueue)).toEqual([]);
    expect([...s.blobs.blobs.keys()]).toEqual([]);
  });
});

describe('UploadHandoff: uploads reach the detection stage of the same process from memory', () => {
  it('holds uploads up to its byte bound, gives each out once, and lets unclaimed ones expire', () => {
    let now = 0;
    const handoff = new UploadHandoff(10, 1000, () => now);
    expect(handoff.offer('a', new Uint8Array(6))).toBe(true);
    expect(handoff.offer('b', new Uint8Array(5))).toBe(false); // over the bound: read from the store instead
    expect(handoff.offer('a', new Uint8Array(1))).toBe(false); // already held
    now = 500;
    expect(handoff.offer('c', new Uint8Array(4))).toBe(true);
    expect(handoff.heldBytes).toBe(10);
    expect(handoff.take('a')?.length).toBe(6);
    expect(handoff.take('a')).toBeUndefined();
    expect(handoff.heldBytes).toBe(4);
    now = 1600; // 'c' is 1100 ms old
    expect(handoff.offer('d', new Uint8Array(10))).toBe(true);
    expect(handoff.take('c')).toBeUndefined();
    expect(handoff.heldBytes).toBe(10);
  });

  /** The import service and detection stage of one process, sharing a handoff; counts the uploads read back. */
  function startWithHandoff(maxBytes: number) {
    const handoff = new UploadHandoff(maxBytes);
    const reads: string[] = [];
    const get = s.blobs.get.bind(s.blobs);
    s.blobs.get = async (key) => {
      reads.push(key);
      return get(key);
    };
    const imports = new ImportService(s.repo, s.blobs, s.queue, s.library, {
      maxItems: 100,
      maxFacesPerUser: 20,
      handoff,
    });
    const detection = new ImportDetectStage(s.repo, s.blobs, s.analyzer, s.embedQueue, {
      maxFacesPerUser: 20,
      inline: { embedder: s.analyzer, indexQueue: s.indexQueue },
      handoff,
    });
    return { handoff, reads, imports, detection };
  }
  const items = (people: string[]) =>
    people.map((p) => ({ user_id: p, source: { kind: 'bytes' as const, data: fakeImage({ person: p }) } }));

  it('the detection stage reads no upload back while they fit; the rest come from the blob store', async () => {
    const one = fakeImage({ person: 'p1' }).byteLength;
    const { handoff, reads, imports, detection } = startWithHandoff(2 * one + 1);
    const job = await imports.create('a', { group_id: 'g', items: items(['p1', 'p2', 'p3']) });
    expect(handoff.heldBytes).toBe(2 * one);
    detection.start(s.queue, 1);
    s.indexing.start(s.indexQueue, 64);
    await waitFor(async () => (await imports.get('a', job.import_id)).status === 'completed');
    expect(await imports.get('a', job.import_id)).toMatchObject({ succeeded: 3, failed: 0 });
    const uploads = (await s.repo.listImportItems(job.import_id, {}, { limit: 10, cursor: null })).items;
    expect(reads).toEqual([uploads[2].image_key]);
    expect(handoff.heldBytes).toBe(0);
    // What the stage took from memory is what was stored: the faces' images are the uploads.
    for (const p of ['p1', 'p2', 'p3']) expect(await s.library.listFaces('a', 'g', p)).toHaveLength(1);
  });

  it('a retried item reads its upload from the blob store', async () => {
    const { handoff, reads, imports, detection } = startWithHandoff(1 << 20);
    const detectAligned = s.analyzer.detectAligned.bind(s.analyzer);
    let failures = 1;
    s.analyzer.detectAligned = async (...args) => {
      if (failures-- > 0) throw new FaceSearchError('engine_unavailable', 'busy', 503, true);
      return detectAligned(...args);
    };
    const job = await imports.create('a', { group_id: 'g', items: items(['p1']) });
    detection.start(s.queue, 1);
    s.indexing.start(s.indexQueue, 64);
    await waitFor(async () => (await imports.get('a', job.import_id)).status === 'completed');
    const [item] = (await s.repo.listImportItems(job.import_id, {}, { limit: 10, cursor: null })).items;
    expect(item).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(reads).toEqual([item.image_key]);
    // A duplicate delivery of the finished item has nothing to do, and lets go of what is held under its key.
    handoff.offer(item.image_key, new Uint8Array(8));
    await detection.handle({ app_id: 'a', import_id: job.import_id, index: 0 }, { attempt: 1, maxAttempts: 2 });
    expect(handoff.heldBytes).toBe(0);
  });

  it('cancelled items, and items that could not be queued, let go of their uploads', async () => {
    const { handoff, imports } = startWithHandoff(1 << 20);
    const job = await imports.create('a', { group_id: 'g', items: items(['q1', 'q2']) });
    expect(handoff.heldBytes).toBe(2 * fakeImage({ person: 'q1' }).byteLength);
    await imports.cancel('a', job.import_id);
    expect(handoff.heldBytes).toBe(0);
    await s.queue.close();
    await expectError(imports.create('a', { group_id: 'g', items: items(['q3']) }), 'queue_closed');
    expect(handoff.heldBytes).toBe(0);
  });
});

describe('import with IMPORT_EMBED=inline: detect and embed in one stage -> index', () => {
  /** The detection stage embeds the crop itself; nothing consumes the embed queue. */
  function startInline() {
    const detection = new ImportDetectStage(s.repo, s.blobs, s.analyzer, s.embedQueue, {
      maxFacesPerUser: 20,
      inline: { embedder: s.analyzer, indexQueue: s.indexQueue },
    });
    detection.start(s.queue, 2);
    s.indexing.start(s.indexQueue, 64);
  }
  it('indexes every item with no embed job and no crop in the blob store', async () => {
    const embedJobs: EmbedJob[] = [];
    const putKeys: string[] = [];
    const addEmbed = s.embedQueue.add.bind(s.embedQueue);
    s.embedQueue.add = async (jobs) => {
      embedJobs.push(...jobs.map((j) => j.data));
      return addEmbed(jobs);
    };
    const put = s.blobs.put.bind(s.blobs);
    s.blobs.put = async (key, data, type) => {
      putKeys.push(key);
      return put(key, data, type);
    };
    startInline();
    const job = await importPeople(['p1', 'p2', 'p3']);
    await waitFor(async () => (await s.imports.get('a', job.import_id)).status === 'completed');
    expect(await s.imports.get('a', job.import_id)).toMatchObject({ succeeded: 3, failed: 0 });
    expect(embedJobs).toEqual([]);
    expect(putKeys.filter((k) => k.startsWith('crops/'))).toEqual([]);
    expect(s.analyzer.embedCalls).toBe(3);
    expect(s.vectors.points.size).toBe(3);
    expect([...s.blobs.blobs.keys()].filter((k) => k.startsWith('faces/'))).toHaveLength(3);
    const hits = await s.recognition.search('a', { image: fakeImage({ person: 'p3', variant: 1 }), group_ids: ['g'] });
    expect(hits.results[0].matches[0]).toMatchObject({ user_id: 'p3' });
  });

  it('an embedding error fails only its item, with its code, and leaves no face image behind', async () => {
    failEmbeddingOf('poison');
    startInline();
    const job = await importPeople(['p1', 'poison', 'p3']);
    await waitFor(async () => (await s.imports.get('a', job.import_id)).status === 'completed');
    expect(await s.imports.get('a', job.import_id)).toMatchObject({ succeeded: 2, failed: 1 });
    const failed = await s.imports.listItems('a', job.import_id, 'failed', { limit: 10 });
    expect(failed.items.map((i) => [i.user_id, i.error?.code])).toEqual([['poison', 'engine_error']]);
    expect([...s.blobs.blobs.keys()].filter((k) => k.includes('/poison/'))).toEqual([]);
    expect(s.vectors.points.size).toBe(2);
  });
});

describe('deletes through the delete queue', () => {
  it('records go at once; vectors and images when the job runs, retried until the vector store is back', async () => {
    for (const p of ['alice', 'bob']) await s.library.enrol('a', 'g', p, { image: fakeImage({ person: p }) });
    const { face: extra } = await s.library.enrol('a', 'g', 'alice', {
      image: fakeImage({ person: 'alice', variant: 2 }),
    });
    let failures = 0;
    let down = true;
    const deleteWhere = s.vectors.deleteWhere.bind(s.vectors);
    const deleteFaces = s.vectors.deleteFaces.bind(s.vectors);
    const failing =
      <A extends unknown[]>(fn: (...args: A) => Promise<void>) =>
      async (...args: A) => {
        if (down) {
          failures++;
          throw new FaceSearchError('vector_store_unavailable', 'Qdrant is down', 503, true);
        }
        return fn(...args);
      };
    s.vectors.deleteWhere = failing(deleteWhere);
    s.vectors.deleteFaces = failing(deleteFaces);

    await s.library.deleteFace('a', 'g', 'alice', extra.face_id);
    await s.library.deleteUser('a', 'g', 'bob');
    // The API is consistent at once...
    await expectError(s.library.getUser('a', 'g', 'bob'), 'user_not_found', 404);
    await expectError(s.library.getFace('a', extra.face_id), 'face_not_found', 404);
    // ...while the vectors are still there, search does not return them.
    await waitFor(async () => failures >= 6); // two attempts a round: three rounds at least
    expect(s.vectors.points.size).toBe(3);
    for (const probe of [fakeImage({ person: 'bob', variant: 1 }), fakeImage({ person: 'alice', variant: 2 })]) {
      const found = await s.recognition.search('a', { image: probe, group_ids: ['g'], top_k: 5, match_threshold: 0 });
      const ids = found.results.flatMap((r) => r.matches.map((m) => m.face_id));
      expect(ids).not.toContain(extra.face_id);
      expect(found.results.flatMap((r) => r.matches.map((m) => m.user_id))).not.toContain('bob');
    }
    // Back up: the next round removes them, and the images with them.
    down = false;
    await s.deletesDone();
    await waitFor(async () => s.vectors.points.size === 1);
    expect([...s.vectors.points.values()].map((p) => p.payload.user_id)).toEqual(['alice']);
    expect([...s.blobs.blobs.keys()].filter((k) => k.includes('/bob/') || k.endsWith(extra.face_id))).toEqual([]);
  });

  it('deletes the vectors of a deleted group, and leaves a face enrolled again under the same id alone', async () => {
    const first = await s.library.enrol('a', 'g', 'u', {
      image: fakeImage({ person: 'u' }),
      idempotency_key: 'key-00001',
    });
    await s.library.enrol('a', 'h', 'v', { image: fakeImage({ person: 'v' }) });
    // Hold the delete job, enrol the same face again (same Idempotency-Key), then let the job run.
    s.deletes.close();
    await s.deleteQueue.close();
    const held = new MemoryJobQueue<DeleteJob>('deletes', { attempts: 2, backoffMs: 1, logger: silent });
    const library = new LibraryService(s.repo, s.vectors, s.blobs, s.analyzer, held, { maxFacesPerUser: 20 });
    await library.deleteFace('a', 'g', 'u', first.face.face_id);
    const again = await library.enrol('a', 'g', 'u', {
      image: fakeImage({ person: 'u' }),
      idempotency_key: 'key-00001',
    });
    expect(again.face.face_id).toBe(first.face.face_id);
    await library.deleteGroup('a', 'h');
    const stage = new DeleteStage(s.repo, s.vectors, s.blobs, held);
    stage.start(1);
    await waitFor(async () => (await held.counts()).completed === 3); // the face; the group's faces and images
    expect([...s.vectors.points.values()].map((p) => p.payload.group_id)).toEqual(['g']);
    expect(s.blobs.blobs.has(again.face.image_key)).toBe(true);
    expect([...s.blobs.blobs.keys()].filter((k) => k.startsWith('faces/a/h/'))).toEqual([]);
    stage.close();
    await held.close();
  });
});

describe('deletes and re-creation', () => {
  it('a user deleted and enrolled again before the delete job runs keeps its new face', async () => {
    s.deletes.close();
    await s.deleteQueue.close();
    const held = new MemoryJobQueue<DeleteJob>('deletes', { attempts: 2, backoffMs: 1, logger: silent });
    const library = new LibraryService(s.repo, s.vectors, s.blobs, s.analyzer, held, { maxFacesPerUser: 20 });
    const old = await library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u' }) });
    await library.deleteUser('a', 'g', 'u');
    const fresh = await library.enrol('a', 'g', 'u', { image: fakeImage({ person: 'u', variant: 2 }) });
    await library.deleteGroup('a', 'g');
    const back = await library.enrol('a', 'g', 'w', { image: fakeImage({ person: 'w' }) });
    const stage = new DeleteStage(s.repo, s.vectors, s.blobs, held);
    stage.start(1);
    await waitFor(async () => (await held.counts()).completed === 3); // u's face; g's faces; g's images
    // The old and the fresh face of u are gone (the group was deleted after); w, enrolled into the re-created
    // group before the jobs ran, keeps its vector and its image (the group's image prefix is left alone then).
    expect([...s.vectors.points.values()].map((p) => p.id)).toEqual([back.face.face_id]);
    expect(s.blobs.blobs.has(back.face.image_key)).toBe(true);
    expect(s.blobs.blobs.has(old.face.image_key)).toBe(false);
    expect(fresh.face.face_id).not.toBe(old.face.face_id);
    const found = await library.listFaces('a', 'g', 'w');
    expect(found.map((f) => f.face_id)).toEqual([back.face.face_id]);
    stage.close();
    await held.close();
  });
});

describe('deleting a group while an import into it runs', () => {
  const itemStatuses = async (importId: string) =>
    (await s.imports.listItems('a', importId, undefined, { limit: 10 })).items.map((i) => [i.user_id, i.status]);

  it('cancels the import: its waiting items are cancelled, nothing is left, no group comes back', async () => {
    const job = await importPeople(['p1', 'p2']);
    await s.library.deleteGroup('a', 'g');
    await s.deletesDone();
    expect((await s.imports.get('a', job.import_id)).status).toBe('cancelled');
    s.startWorkers(2);
    await waitFor(async () => (await s.queue.counts()).waiting + (await s.queue.counts()).active === 0);
    expect(await itemStatuses(job.import_id)).toEqual([
      ['p1', 'cancelled'],
      ['p2', 'cancelled'],
    ]);
    expect(await s.repo.getGroup('a', 'g')).toBeNull();
    expect(s.vectors.points.size).toBe(0);
    expect([...s.blobs.blobs.keys()]).toEqual([]);
  });

  // The two races the cancellation leaves: the group's records go while an item is past the cancelled check.
  it('cancels an item whose group is gone when it is detected, and does not bring the group back', async () => {
    const job = await importPeople(['p1', 'p2']);
    await s.repo.deleteGroup('a', 'g');
    s.startWorkers(2);
    await waitFor(async () => (await itemStatuses(job.import_id)).every(([, status]) => status === 'cancelled'));
    // Stopped at detection: no crop went on to be embedded.
    const embeds = await s.embedQueue.counts();
    expect(embeds.waiting + embeds.active + embeds.completed + embeds.failed).toBe(0);
    expect(await s.repo.getGroup('a', 'g')).toBeNull();
    expect(s.vectors.points.size).toBe(0);
    expect([...s.blobs.blobs.keys()]).toEqual([]);
  });

  it('cancels an item whose group is gone when it is indexed, and does not bring the group back', async () => {
    const job = await importPeople(['p1', 'p2']);
    s.detection.start(s.queue, 2);
    s.embedding.start(s.embedQueue, 2);
    await waitFor(async () => (await s.indexQueue.counts()).waiting === 2);
    await s.repo.deleteGroup('a', 'g');
    s.indexing.start(s.indexQueue, 64);
    await waitFor(async () => (await itemStatuses(job.import_id)).every(([, status]) => status === 'cancelled'));
    expect(await s.repo.getGroup('a', 'g')).toBeNull();
    expect(await s.repo.listFaces('a', 'g', 'p1')).toEqual([]);
    expect(s.vectors.points.size).toBe(0);
    expect([...s.blobs.blobs.keys()]).toEqual([]);
  });
});

describe('cancelling an import while its items finish', () => {
  it('keeps the upload of an item that finished before the cancel reached it', async () => {
    const job = await importPeople(['p1']);
    const stale = await s.repo.getImportItem(job.import_id, 0); // read as pending, as cancel() lists items
    s.startWorkers(1);
    await waitFor(async () => (await s.imports.get('a', job.import_id)).status === 'completed');
    expect(stale?.status).toBe('pending');
    const cancelled = await new ImportProgress(s.repo, s.blobs).cancel(stale as ImportItemRecord);
    expect(cancelled).toBe(false);
    const [face] = await s.repo.listFaces('a', 'g', 'p1');
    expect(s.blobs.blobs.has(face.image_key)).toBe(true);
  });

  it('takes back the faces of items cancelled while their batch was written: none stays without its image', async () => {
    const job = await importPeople(['p1', 'p2']);
    const addFace = s.repo.addFace.bind(s.repo);
    let cancelledOnce = false;
    s.repo.addFace = async (face) => {
      if (!cancelledOnce) {
        cancelledOnce = true;
        // What ImportService.cancel does to the items (its queue removal would wait on this very batch): each
        // pending item cancelled, letting go of its upload, which is its face's image.
        const progress = new ImportProgress(s.repo, s.blobs);
        for (let index = 0; index < 2; index++) {
          const item = await s.repo.getImportItem(job.import_id, index);
          if (item?.status === 'pending') await progress.cancel(item);
        }
      }
      return addFace(face);
    };
    s.startWorkers(2);
    const finished = async () =>
      (await s.imports.listItems('a', job.import_id, undefined, { limit: 10 })).items.filter(
        (i) => i.status === 'cancelled' || i.status === 'succeeded',
      );
    await waitFor(async () => (await finished()).length === 2);
    await waitFor(async () => (await s.indexQueue.counts()).active === 0);
    const items = await finished();
    // The item whose face was being written when the cancel came is cancelled; whatever succeeded keeps its image.
    expect(items.filter((i) => i.status === 'cancelled').length).toBeGreaterThanOrEqual(1);
    for (const item of items) {
      const faces = await s.repo.listFaces('a', 'g', item.user_id);
      if (item.status === 'cancelled') {
        expect(faces, `${item.user_id} cancelled`).toEqual([]);
      } else {
        expect(faces.length).toBe(1);
        expect(s.blobs.blobs.has(faces[0].image_key), `${item.user_id}'s image`).toBe(true);
      }
    }
    const faceIds = (await Promise.all(items.map((i) => s.repo.listFaces('a', 'g', i.user_id)))).flat();
    expect(s.vectors.points.size).toBe(faceIds.length);
    expect([...s.blobs.blobs.keys()].sort()).toEqual(faceIds.map((f) => f.image_key).sort());
  });
});

describe('MAX_FACES_PER_USER under concurrency', () => {
  /** Every face record has its vector and its image, and nothing else is left. */
  async function expectConsistent(appId: string, groupId: string, userId: string) {
    const faces = await s.repo.listFaces(appId, groupId, userId);
    expect(s.vectors.points.size).toBe(faces.length);
    for (const face of faces) expect(s.blobs.blobs.has(face.image_key), face.face_id).toBe(true);
    return faces;
  }

  it('holds for two imports into one user at once: the items over it fail with too_many_faces', async () => {
    s = setup({ maxFacesPerUser: 3 });
    const photos = (tag: string) =>
      Array.from({ length: 3 }, (_, i) => ({
        user_id: 'u',
        source: { kind: 'bytes' as const, data: fakeImage({ person: 'u', variant: i + (tag === 'b' ? 10 : 0) }) },
      }));
    const [a, b] = await Promise.all([
      s.imports.create('a', { group_id: 'g', items: photos('a') }),
      s.imports.create('a', { group_id: 'g', items: photos('b') }),
    ]);
    s.startWorkers(4);
    const settled = async (id: string) => ['completed', 'failed'].includes((await s.imports.get('a', id)).status);
    await waitFor(async () => (await settled(a.import_id)) && (await settled(b.import_id)));
    await waitFor(async () => (await s.indexQueue.counts()).active === 0);
    const faces = await expectConsistent('a', 'g', 'u');
    expect(faces).toHaveLength(3);
    const failed = [
      ...(await s.imports.listItems('a', a.import_id, 'failed', { limit: 10 })).items,
      ...(await s.imports.listItems('a', b.import_id, 'failed', { limit: 10 })).items,
    ];
    expect(failed.map((i) => i.error?.code)).toEqual(['too_many_faces', 'too_many_faces', 'too_many_faces']);
  });

  it('holds for two copies into one user at once: the one over it is refused and leaves nothing', async () => {
    s = setup({ maxFacesPerUser: 3 });
    for (const v of [1, 2]) await s.library.enrol('a', 'g1', 'u', { image: fakeImage({ person: 'u', variant: v }) });
    for (const v of [3, 4]) await s.library.enrol('a', 'g2', 'u', { image: fakeImage({ person: 'u', variant: v }) });
    await s.library.enrol('a', 'g3', 'u', { image: fakeImage({ person: 'u', variant: 5 }) });
    // Two copies of two faces each into a user holding one, limit 3: at most one can fit.
    const outcomes = await Promise.all(
      ['g1', 'g2'].map((from) =>
        s.library.copyUser('a', from, 'u', 'g3').then(
          () => 'copied',
          (err: { code?: string }) => err.code,
        ),
      ),
    );
    expect(outcomes.filter((o) => o === 'too_many_faces').length).toBeGreaterThanOrEqual(1);
    const target = await s.repo.listFaces('a', 'g3', 'u');
    expect(target.length).toBeLessThanOrEqual(3);
    const all = [...(await s.repo.listFaces('a', 'g1', 'u')), ...(await s.repo.listFaces('a', 'g2', 'u')), ...target];
    expect(s.vectors.points.size).toBe(all.length);
    expect([...s.blobs.blobs.keys()].sort()).toEqual(all.map((f) => f.image_key).sort());
  });
});

describe('MicroBatcher', () => {
  it('flushes at the size limit or after the wait, and settles each item with its batch', async () => {
    const flushed: number[][] = [];
    const batcher = new MicroBatcher<number>(
      async (items) => {
        flushed.push(items);
        if (items.includes(13)) throw new Error('unlucky');
      },
      { maxItems: 4, maxWaitMs: 30 },
    );
    const full = await Promise.allSettled([1, 2, 3, 4].map((n) => batcher.submit(n)));
    expect(full.every((r) => r.status === 'fulfilled')).toBe(true);
    expect(flushed).toEqual([[1, 2, 3, 4]]);
    const started = Date.now();
    const mixed = await Promise.allSettled([12, 13, 14].map((n) => batcher.submit(n)));
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(mixed.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // the failed batch, then each item alone
    expect(flushed.slice(1)).toEqual([[12, 13, 14], [12], [13], [14]]);
    await batcher.close();
    await expect(batcher.submit(1)).rejects.toThrow(/closed/);
  });
});

/** Takes every waiting job off a queue nobody consumes (a fake consumer that records and succeeds). */
async function drain<T>(queue: MemoryJobQueue<T>): Promise<T[]> {
  const waiting = (queue as unknown as { waiting: Map<string, { data: T }> }).waiting;
  const out = [...waiting.values()].map((e) => e.data);
  waiting.clear();
  return out;
}
