import { MemoryJobQueue, SqliteLibraryRepository } from '@facesearch/adapters';
import type { VectorHit, VectorQuery } from '@facesearch/common';
import { beforeEach, describe, expect, it } from 'vitest';
import { type DeleteJob, LibraryService, RecognitionService, type SearchInput } from '../src';
import { FakeAnalyzer, fakeImage, MemoryBlobStore, MemoryVectorStore } from './fakes';

const MAX_FACES_PER_USER = 20;

/** Records every search's limit. */
class CountingVectorStore extends MemoryVectorStore {
  limits: number[] = [];
  override search(vector: Float32Array, q: VectorQuery): Promise<VectorHit[]> {
    this.limits.push(q.limit);
    return super.search(vector, q);
  }
}

/** The same points, always searched with top_k x MAX_FACES_PER_USER hits: the service's former behaviour. */
class FullLimitVectorStore extends MemoryVectorStore {
  constructor(
    private readonly of: MemoryVectorStore,
    private readonly topK: number,
  ) {
    super();
  }
  override search(vector: Float32Array, q: VectorQuery): Promise<VectorHit[]> {
    return this.of.search(vector, { ...q, limit: Math.min(1000, this.topK * MAX_FACES_PER_USER) });
  }
}

describe('RecognitionService.search: hit count asked of the vector store', () => {
  let repo: SqliteLibraryRepository;
  let vectors: CountingVectorStore;
  let library: LibraryService;
  const analyzer = new FakeAnalyzer();
  const options = { cosineThreshold: 0.45, maxFacesPerUser: MAX_FACES_PER_USER };

  beforeEach(() => {
    repo = new SqliteLibraryRepository(':memory:');
    vectors = new CountingVectorStore();
    const silent = { error() {}, warn() {} };
    const deletes = new MemoryJobQueue<DeleteJob>('deletes', { attempts: 1, backoffMs: 1, logger: silent });
    library = new LibraryService(repo, vectors, new MemoryBlobStore(), analyzer, deletes, {
      maxFacesPerUser: MAX_FACES_PER_USER,
    });
  });

  /** `faces` faces of `user`, all variants of `person` (several users may share a person: near-duplicate hits). */
  async function enrol(user: string, person: string, faces: number): Promise<void> {
    for (let v = 1; v <= faces; v++) {
      await library.enrol('a', 'g', user, { image: fakeImage({ person, variant: v }), user_info: user });
    }
  }

  /** Searches with the two-step hit count and with the former single full-size search; both must agree. */
  async function searchBoth(input: Omit<SearchInput, 'image' | 'group_ids'> & { person: string }) {
    const request = { image: fakeImage({ person: input.person, variant: 99 }), group_ids: ['g'], ...input };
    vectors.limits = [];
    const result = await new RecognitionService(repo, vectors, analyzer, options).search('a', request);
    const limits = [...vectors.limits];
    const reference = await new RecognitionService(
      repo,
      new FullLimitVectorStore(vectors, input.top_k ?? 5),
      analyzer,
      options,
    ).search('a', request);
    expect(result).toEqual(reference);
    return { result, limits };
  }

  it('asks for top_k x 4 hits once when they hold top_k users', async () => {
    for (let u = 0; u < 12; u++) await enrol(`u${u}`, `p${u}`, 2);
    const { result, limits } = await searchBoth({ person: 'p3', top_k: 5, match_threshold: 0 });
    expect(limits).toEqual([20]);
    expect(result.results[0].matches).toHaveLength(5);
    expect(result.results[0].matches[0].user_id).toBe('u3');
  });

  it('asks again with top_k x MAX_FACES_PER_USER when a full first page holds fewer than top_k users', async () => {
    // u0 has 20 faces close to the probe, so the first 20 hits are all u0.
    await enrol('u0', 'p0', 20);
    for (let u = 1; u < 8; u++) await enrol(`u${u}`, `p${u}`, 1);
    const { result, limits } = await searchBoth({ person: 'p0', top_k: 5, match_threshold: 0 });
    expect(limits).toEqual([20, 100]);
    expect(result.results[0].matches.map((m) => m.user_id)[0]).toBe('u0');
    expect(result.results[0].matches).toHaveLength(5);
  });

  it('does not ask again when the threshold ended the matches', async () => {
    // Three faces of one person above the threshold, then only strangers below it.
    await enrol('u0', 'p0', 3);
    for (let u = 1; u < 40; u++) await enrol(`u${u}`, `p${u}`, 1);
    const second = await searchBoth({ person: 'p0', top_k: 5 });
    expect(second.limits).toEqual([20]);
    expect(second.result.results[0].matches.map((m) => m.user_id)).toEqual(['u0']);
  });

  it('does not ask again when the store returned fewer hits than asked (the whole group)', async () => {
    await enrol('u0', 'p0', 6);
    await enrol('u1', 'p1', 6);
    const { result, limits } = await searchBoth({ person: 'p0', top_k: 5, match_threshold: 0 });
    expect(limits).toEqual([20]);
    expect(result.results[0].matches.map((m) => m.user_id)).toEqual(['u0', 'u1']);
  });

  it('asks for the full count at once when MAX_FACES_PER_USER is at most 4', async () => {
    for (let u = 0; u < 3; u++) await enrol(`u${u}`, `p${u}`, 1);
    vectors.limits = [];
    await new RecognitionService(repo, vectors, analyzer, { ...options, maxFacesPerUser: 3 }).search('a', {
      image: fakeImage({ person: 'p0', variant: 99 }),
      group_ids: ['g'],
      top_k: 5,
    });
    expect(vectors.limits).toEqual([15]);
  });
});
