import { randomUUID } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import {
  QdrantVectorStore,
  type QdrantVectorStoreOptions,
  qdrantPointId,
  qdrantScope,
  SCAN_ALWAYS_KB,
} from '@facesearch/adapters';
import { describe, expect, it } from 'vitest';
import { DIM, describeVectorStoreContract } from './vectors.contract';

const url = process.env.QDRANT_URL;
const skip = url ? undefined : 'QDRANT_URL is not set (start Qdrant, e.g. scripts/services/up.sh qdrant)';

/** Each test gets its own collection, dropped afterwards. */
async function dropCollection(name: string): Promise<void> {
  await fetch(`${url}/collections/${name}`, { method: 'DELETE' });
}

/** A JSON PUT straight to Qdrant's REST API (what an older version or an operator would have written). */
function qdrantPut(path: string, body: unknown): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

/** The plans of the queries a recording proxy saw: `filtered 5`, `unfiltered 12`. */
const plansOf = (queries: Array<Record<string, unknown>>) =>
  queries.map((q) => `${q.filter ? 'filtered' : 'unfiltered'} ${q.limit}`);

/** A store on a fresh collection made with `options`, dropped afterwards. */
function onNewCollection(options: Partial<QdrantVectorStoreOptions>) {
  return async () => {
    const collection = `contract_${randomUUID().replace(/-/g, '')}`;
    const store = new QdrantVectorStore({ url: url as string, collection, ...options });
    await store.init(DIM);
    return {
      store,
      reopen: async () => new QdrantVectorStore({ url: url as string, collection }),
      cleanup: () => dropCollection(collection),
    };
  };
}

describeVectorStoreContract('QdrantVectorStore', onNewCollection({ batchSize: 128 }), skip);
// The defaults scan int8 copies and rescore with the float vectors; the same contract over a collection with a graph
// and float vectors only (the defaults before session 15, and what larger collections may be given).
describeVectorStoreContract(
  'QdrantVectorStore (HNSW graph m 32, float vectors)',
  onNewCollection({ quantization: 'none', hnsw: { m: 32 } }),
  skip,
);
// And over float16 vectors: a half-precision float keeps about three decimal digits of each component (scores over
// 512 of them stayed within 1e-4 of float32's in bench qdrant-datatype).
describeVectorStoreContract('QdrantVectorStore (float16 vectors)', onNewCollection({ datatype: 'float16' }), skip, {
  scoreDigits: 3,
  vectorDigits: 3,
});

describe.skipIf(!url)('QdrantVectorStore specifics', () => {
  it('creates the collection with cosine distance and payload indexes (scope as tenant)', async () => {
    const collection = `contract_${randomUUID().replace(/-/g, '')}`;
    try {
      const warnings: string[] = [];
      const logger = { warn: (_: object, msg: string) => warnings.push(msg) };
      await new QdrantVectorStore({ url: url as string, collection, logger }).init(DIM);
      await new QdrantVectorStore({ url: url as string, collection, logger }).init(DIM);
      expect(warnings).toEqual([]);
      const info = (await (await fetch(`${url}/collections/${collection}`)).json()).result;
      expect(info.config.params.vectors).toMatchObject({ size: DIM, distance: 'Cosine' });
      expect(info.payload_schema.scope).toMatchObject({ data_type: 'keyword', params: { is_tenant: true } });
      for (const field of ['app_id', 'group_id', 'user_id', 'model_id'])
        expect(info.payload_schema[field]?.data_type).toBe('keyword');
    } finally {
      await dropCollection(collection);
    }
  });

  it('stores the vectors of a new collection as float16 when asked, and leaves an existing one as it is', async () => {
    const [half, plain] = [`contract_${randomUUID().replace(/-/g, '')}`, `contract_${randomUUID().replace(/-/g, '')}`];
    const vectorsOf = async (collection: string) =>
      (await (await fetch(`${url}/collections/${collection}`)).json()).result.config.params.vectors;
    try {
      await new QdrantVectorStore({ url: url as string, collection: half, datatype: 'float16' }).init(DIM);
      await new QdrantVectorStore({ url: url as string, collection: plain }).init(DIM);
      expect(await vectorsOf(half)).toMatchObject({ size: DIM, distance: 'Cosine', datatype: 'float16' });
      expect((await vectorsOf(plain)).datatype ?? 'float32').toBe('float32');
      // Opening the float32 collection with the option changes nothing.
      await new QdrantVectorStore({ url: url as string, collection: plain, datatype: 'float16' }).init(DIM);
      expect((await vectorsOf(plain)).datatype ?? 'float32').toBe('float32');
    } finally {
      for (const collection of [half, plain]) await dropCollection(collection);
    }
  });

  it('gives points written before `scope` existed their scope at init, so searches find them', async () => {
    const collection = `contract_${randomUUID().replace(/-/g, '')}`;
    try {
      await new QdrantVectorStore({ url: url as string, collection }).init(DIM);
      // As an older version wrote them: the five fields, no scope.
      const old = (faceId: string, groupId: string, modelId: string, x: number) => ({
        id: qdrantPointId('a', faceId),
        vector: Array.from({ length: DIM }, (_, i) => (i === 0 ? 1 : i === 1 ? x : 0)),
        payload: { app_id: 'a', group_id: groupId, user_id: `u-${faceId}`, face_id: faceId, model_id: modelId },
      });
      const points = [old('f1', 'g1', 'm', 0), old('f2', 'g2', 'm', 0.1), old('f3', 'g1', 'm2', 0.2)];
      const put = await qdrantPut(`/collections/${collection}/points?wait=true`, { points });
      expect(put.status).toBe(200);
      const store = new QdrantVectorStore({ url: url as string, collection });
      const vector = new Float32Array(DIM);
      vector[0] = 1;
      const search = (groupIds: string[], modelId = 'm') =>
        store.search(vector, { app_id: 'a', group_ids: groupIds, model_id: modelId, limit: 10 });
      await store.init(DIM);
      expect((await search(['g1', 'g2'])).map((h) => h.face_id)).toEqual(['f1', 'f2']);
      expect((await search(['g1'], 'm2')).map((h) => h.face_id)).toEqual(['f3']);
      const scroll = await fetch(`${url}/collections/${collection}/points/scroll`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ limit: 10, with_payload: ['scope'] }),
      });
      const scopes = (await scroll.json()).result.points.map((p: { payload: { scope: string } }) => p.payload.scope);
      expect(scopes.sort()).toEqual([
        qdrantScope('a', 'g1', 'm'),
        qdrantScope('a', 'g1', 'm2'),
        qdrantScope('a', 'g2', 'm'),
      ]);
      await store.close();
    } finally {
      await dropCollection(collection);
    }
  });

  it('creates the collection with the HNSW graph asked for (default none: every search scans)', async () => {
    const hnswOf = async (collection: string) =>
      (await (await fetch(`${url}/collections/${collection}`)).json()).result.config.hnsw_config;
    const byDefault = `contract_${randomUUID().replace(/-/g, '')}`;
    const custom = `contract_${randomUUID().replace(/-/g, '')}`;
    try {
      await new QdrantVectorStore({ url: url as string, collection: byDefault }).init(DIM);
      expect(await hnswOf(byDefault)).toMatchObject({ m: 0, ef_construct: 256, full_scan_threshold: SCAN_ALWAYS_KB });
      // No graph: whatever threshold is asked for, Qdrant must never try to walk one.
      const noGraph = `contract_${randomUUID().replace(/-/g, '')}`;
      try {
        await new QdrantVectorStore({
          url: url as string,
          collection: noGraph,
          hnsw: { m: 0, full_scan_threshold_kb: 20_000 },
        }).init(DIM);
        expect(await hnswOf(noGraph)).toMatchObject({ m: 0, full_scan_threshold: SCAN_ALWAYS_KB });
      } finally {
        await dropCollection(noGraph);
      }
      const graph = `contract_${randomUUID().replace(/-/g, '')}`;
      try {
        await new QdrantVectorStore({ url: url as string, collection: graph, hnsw: { m: 32 } }).init(DIM);
        expect(await hnswOf(graph)).toMatchObject({ m: 32, ef_construct: 256, full_scan_threshold: 60_000 });
      } finally {
        await dropCollection(graph);
      }
      await new QdrantVectorStore({
        url: url as string,
        collection: custom,
        hnsw: { m: 8, ef_construct: 64, full_scan_threshold_kb: 20_000 },
      }).init(DIM);
      expect(await hnswOf(custom)).toMatchObject({ m: 8, ef_construct: 64, full_scan_threshold: 20_000 });
      // An existing collection keeps its graph whatever the options say (changing it is an operator's PATCH).
      await new QdrantVectorStore({ url: url as string, collection: custom, hnsw: { m: 48, ef_construct: 512 } }).init(
        DIM,
      );
      expect(await hnswOf(custom)).toMatchObject({ m: 8, ef_construct: 64, full_scan_threshold: 20_000 });
    } finally {
      await dropCollection(byDefault);
      await dropCollection(custom);
    }
  });

  it('quantises a new collection by default (int8, not with none) and rescores every search of a quantised one', async () => {
    const proxy = await recordingProxy(new URL(url as string));
    const plain = `contract_${randomUUID().replace(/-/g, '')}`;
    const int8 = `contract_${randomUUID().replace(/-/g, '')}`;
    const patched = `contract_${randomUUID().replace(/-/g, '')}`;
    const quantizationOf = async (collection: string) =>
      (await (await fetch(`${url}/collections/${collection}`)).json()).result.config.quantization_config;
    const open = (collection: string, quantization?: 'none' | 'int8') =>
      new QdrantVectorStore({ url: proxy.url, collection, quantization });
    const stores: QdrantVectorStore[] = [];
    try {
      const unit = (i: number) => Array.from({ length: DIM }, (_, k) => (k === i ? 1 : 0.01));
      const point = (id: string, i: number) => ({
        id,
        vector: Float32Array.from(unit(i)),
        payload: { app_id: 'a', group_id: 'g', user_id: `u-${id}`, face_id: id, model_id: 'm' },
      });
      const searchOnce = async (store: QdrantVectorStore) => {
        await store.upsert([point('f1', 1), point('f2', 2)]);
        const hits = await store.search(Float32Array.from(unit(2)), {
          app_id: 'a',
          group_ids: ['g'],
          model_id: 'm',
          limit: 2,
        });
        return { best: hits[0]?.face_id, params: proxy.queries.at(-1)?.params };
      };
      stores.push(open(plain, 'none'), open(int8));
      for (const store of stores) await store.init(DIM);
      expect(await quantizationOf(plain)).toBeFalsy();
      expect(await quantizationOf(int8)).toMatchObject({ scalar: { type: 'int8', always_ram: true } });
      expect(await searchOnce(stores[0])).toEqual({ best: 'f2', params: { hnsw_ef: 256 } });
      const rescored = { hnsw_ef: 256, quantization: { rescore: true, oversampling: 2 } };
      expect(await searchOnce(stores[1])).toEqual({ best: 'f2', params: rescored });
      // Quantised by an operator's PATCH: what init finds decides, whatever the option says.
      await new QdrantVectorStore({ url: url as string, collection: patched, quantization: 'none' }).init(DIM);
      const patch = await fetch(`${url}/collections/${patched}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ quantization_config: { scalar: { type: 'int8', always_ram: true } } }),
      });
      expect(patch.status).toBe(200);
      stores.push(open(patched, 'none'));
      await stores[2].init(DIM);
      expect(await searchOnce(stores[2])).toEqual({ best: 'f2', params: rescored });
    } finally {
      for (const store of stores) await store.close();
      for (const collection of [plain, int8, patched]) await dropCollection(collection);
      await proxy.close();
    }
  });

  it('drops the filter when the searched scopes hold most of the collection, and keeps only their hits', async () => {
    const proxy = await recordingProxy(new URL(url as string));
    const collection = `contract_${randomUUID().replace(/-/g, '')}`;
    const store = new QdrantVectorStore({ url: proxy.url, collection });
    // Another process writing to the same collection: this store's list of scopes does not know its writes.
    const other = new QdrantVectorStore({ url: url as string, collection });
    try {
      await store.init(DIM);
      await other.init(DIM);
      const vector = (...xs: number[]) => Float32Array.from({ length: DIM }, (_, k) => xs[k] ?? 0.01);
      const point = (id: string, group: string, v: Float32Array, app = 'a') => ({
        id,
        vector: v,
        payload: { app_id: app, group_id: group, user_id: `u-${id}`, face_id: id, model_id: 'm' },
      });
      const probe = vector(0, 1, 1);
      const search = async (groups: string[], limit = 5) => {
        const before = proxy.queries.length;
        const hits = await store.search(probe, { app_id: 'a', group_ids: groups, model_id: 'm', limit });
        const asked = plansOf(proxy.queries.slice(before));
        return { faces: hits.map((h) => h.face_id), asked };
      };
      await store.upsert([point('f1', 'g', vector(1)), point('f2', 'g', vector(0, 1, 0.8))]);
      expect(await search(['g'])).toEqual({ faces: ['f2', 'f1'], asked: ['unfiltered 5'] });
      // f3 in g2, nearer the probe than f2, unknown to this store's list: the answer held every point, so its hits
      // in scope are the answer; the list is asked for again.
      await other.upsert([point('f3', 'g2', vector(0, 1, 1))]);
      expect(await search(['g'])).toEqual({ faces: ['f2', 'f1'], asked: ['unfiltered 5'] });
      // g holds 2 of the 3 points now: limit 5 / (2/3) x 1.5 = 12 hits asked for.
      expect(await search(['g'])).toEqual({ faces: ['f2', 'f1'], asked: ['unfiltered 12'] });
      expect(await search(['g', 'g2'])).toEqual({ faces: ['f3', 'f2', 'f1'], asked: ['unfiltered 5'] });
      // Another app's point, nearest of all: searches of app a never see it.
      await other.upsert([point('x1', 'g', probe, 'b')]);
      expect(await search(['g', 'g2'])).toEqual({ faces: ['f3', 'f2', 'f1'], asked: ['unfiltered 5'] });
      expect(await search(['g', 'g2'], 1)).toEqual({ faces: ['f3'], asked: ['unfiltered 2'] });
      // The nearest points out of scope (4 in g3, written by the other process): by this store's list g holds 2 of 4
      // points, the 3 hits asked for (1 / 0.5 x 1.5) are all out of scope and there are more points, so the search
      // runs again with the filter; a hit of g3 has the list asked for again.
      await other.upsert([0, 1, 2, 3].map((i) => point(`y${i}`, 'g3', vector(0, 1, 1, 0.01 * i))));
      expect(await search(['g'], 1)).toEqual({ faces: ['f2'], asked: ['unfiltered 3', 'filtered 1'] });
      // Now g holds 2 of 8 points: under the 0.45 share this collection's scopes (stored together) need to go
      // unfiltered, so the filter at once.
      expect(await search(['g'], 1)).toEqual({ faces: ['f2'], asked: ['filtered 1'] });
      expect(await search(['g2'], 1)).toEqual({ faces: ['f3'], asked: ['filtered 1'] });
    } finally {
      await store.close();
      await other.close();
      await dropCollection(collection);
      await proxy.close();
    }
  });

  it('keeps the filter below a quarter of the points where scopes are not stored together', async () => {
    const proxy = await recordingProxy(new URL(url as string));
    const collection = `contract_${randomUUID().replace(/-/g, '')}`;
    // A collection made before `scope` was its tenant key: a plain keyword index on it.
    await qdrantPut(`/collections/${collection}`, { vectors: { size: DIM, distance: 'Cosine' } });
    await qdrantPut(`/collections/${collection}/index?wait=true`, { field_name: 'scope', field_schema: 'keyword' });
    const warnings: string[] = [];
    const logger = { warn: (_: object, msg: string) => warnings.push(msg) };
    const store = new QdrantVectorStore({ url: proxy.url, collection, logger });
    try {
      await store.init(DIM);
      const info = (await (await fetch(`${url}/collections/${collection}`)).json()).result;
      expect(info.payload_schema.scope.params?.is_tenant ?? false).toBe(false);
      // The operator hears of it at start-up, and where to read how to move the collection.
      expect(warnings).toEqual([
        expect.stringMatching(new RegExp(`${collection} keeps its groups' points mixed.*README`)),
      ]);
      const points = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => ({
        id: `p${i}`,
        vector: Float32Array.from({ length: DIM }, (_, k) => (k === i ? 1 : 0.01)),
        payload: { app_id: 'a', group_id: i < 2 ? 'g' : 'h', user_id: `u${i}`, face_id: `p${i}`, model_id: 'm' },
      }));
      await store.upsert(points);
      const before = proxy.queries.length;
      const hits = await store.search(points[0].vector, { app_id: 'a', group_ids: ['g'], model_id: 'm', limit: 1 });
      expect(hits.map((h) => h.face_id)).toEqual(['p0']);
      // g holds 2 of 8 points, a quarter: unfiltered, 1 / 0.25 x 1.5 = 6 hits (where stored together: filtered).
      expect(plansOf(proxy.queries.slice(before))).toEqual(['unfiltered 6']);
    } finally {
      await store.close();
      await dropCollection(collection);
      await proxy.close();
    }
  });

  it('reports an unreachable server as a retryable 503', async () => {
    const store = new QdrantVectorStore({ url: 'http://127.0.0.1:9', collection: 'x', timeoutMs: 2000 });
    await expect(store.ping()).rejects.toMatchObject({
      code: 'vector_store_unavailable',
      status: 503,
      retryable: true,
    });
    await expect(store.init(DIM)).rejects.toMatchObject({ code: 'vector_store_unavailable' });
  });
});

/** An HTTP proxy to Qdrant that keeps the body of every query request (`queries`), to see what the store asks. */
async function recordingProxy(
  target: URL,
): Promise<{ url: string; queries: Array<Record<string, unknown>>; close: () => Promise<void> }> {
  const queries: Array<Record<string, unknown>> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.url?.endsWith('/points/query')) queries.push(JSON.parse(body.toString('utf8')));
      const upstream = http.request(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    queries,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A TCP proxy to Qdrant that can be cut off, so search/retrieve (node:http) meet an unreachable server. */
async function startProxy(target: URL): Promise<{ url: string; cut: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => s.destroy());
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    cut: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

describe.skipIf(!url)('QdrantVectorStore search/retrieve over node:http', () => {
  const payload = (faceId: string) => ({
    app_id: 'a',
    group_id: 'g',
    user_id: `u-${faceId}`,
    face_id: faceId,
    model_id: 'm',
  });
  const query = { app_id: 'a', group_ids: ['g'], model_id: 'm', limit: 10 };

  it('maps a Qdrant 4xx (collection gone) to vector_store_error 500, not retryable', async () => {
    const collection = `contract_${randomUUID().replace(/-/g, '')}`;
    const store = new QdrantVectorStore({ url: url as string, collection });
    try {
      await store.init(DIM);
      await dropCollection(collection);
      const vector = new Float32Array(DIM).fill(1);
      for (const call of [() => store.search(vector, query), () => store.retrieve('a', ['f1'])]) {
        const err = await call().catch((e: unknown) => e);
        expect(err).toMatchObject({ code: 'vector_store_error', status: 500 });
        expect((err as { retryable?: boolean }).retryable).not.toBe(true);
      }
    } finally {
      await store.close();
      await dropCollection(collection);
    }
  });

  it('reports a server cut off after init as a retryable 503, and recovers on a live connection', async () => {
    const collection = `contract_${randomUUID().replace(/-/g, '')}`;
    const proxy = await startProxy(new URL(url as string));
    const store = new QdrantVectorStore({ url: proxy.url, collection, timeoutMs: 2000 });
    try {
      await store.init(DIM);
      const vector = new Float32Array(DIM).fill(1);
      await store.upsert([{ id: 'f1', vector, payload: payload('f1') }]);
      expect((await store.search(vector, query)).map((h) => h.face_id)).toEqual(['f1']);
      expect((await store.retrieve('a', ['f1'])).map((r) => r.face_id)).toEqual(['f1']);
      await proxy.cut();
      for (const call of [() => store.search(vector, query), () => store.retrieve('a', ['f1'])]) {
        await expect(call()).rejects.toMatchObject({ code: 'vector_store_unavailable', status: 503, retryable: true });
      }
    } finally {
      await store.close();
      await proxy.cut().catch(() => undefined);
      await dropCollection(collection);
    }
  });

  it('times out a server that never answers as a retryable 503, a search within one timeout in all', async () => {
    // Reads (so it notices the client hanging up) but never answers.
    const silent = net.createServer((socket) => socket.resume());
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    const timeoutMs = 1500;
    const hung = new QdrantVectorStore({ url: `http://127.0.0.1:${port}`, collection: 'x', timeoutMs });
    // init() would time out as well (REST client); search/retrieve only need the dimension.
    (hung as unknown as { dim: number }).dim = DIM;
    try {
      const started = performance.now();
      await expect(hung.search(new Float32Array(DIM).fill(1), query)).rejects.toMatchObject({
        code: 'vector_store_unavailable',
        status: 503,
        retryable: true,
      });
      // The scope lookup and the query share the deadline (each took a whole timeout before: 2x at least).
      expect(performance.now() - started).toBeLessThan(timeoutMs * 1.8);
      await expect(hung.retrieve('a', ['f1'])).rejects.toMatchObject({ code: 'vector_store_unavailable' });
    } finally {
      await hung.close();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

describe('QdrantVectorStore search params', () => {
  /** A stand-in Qdrant that records each query body and answers with no points. */
  async function recordingServer(): Promise<{
    url: string;
    bodies: Array<Record<string, unknown>>;
    close: () => Promise<void>;
  }> {
    const bodies: Array<Record<string, unknown>> = [];
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ result: { points: [] }, status: 'ok' }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      bodies,
      close: () => new Promise((resolve) => server.close(() => resolve())),
    };
  }

  it('searches with hnsw_ef 256 by default and with the configured hnsw_ef otherwise', async () => {
    const server = await recordingServer();
    const query = { app_id: 'a', group_ids: ['g'], model_id: 'm', limit: 10 };
    const stores = [
      new QdrantVectorStore({ url: server.url, collection: 'x' }),
      new QdrantVectorStore({ url: server.url, collection: 'x', searchParams: { hnsw_ef: 512 } }),
    ];
    try {
      for (const store of stores) {
        // search only needs the dimension (init would ask the stand-in for the collection).
        (store as unknown as { dim: number }).dim = DIM;
        await store.search(new Float32Array(DIM).fill(1), query);
      }
      // The stand-in cannot list the collection's scopes (its facet answer has no hits), so the filter is kept.
      const queries = server.bodies.filter((b) => b.query !== undefined);
      expect(queries.map((b) => b.params)).toEqual([{ hnsw_ef: 256 }, { hnsw_ef: 512 }]);
      // One filter condition (app, group and model in `scope`), not three; one scope as a plain match.
      expect(queries[0].filter).toEqual({ must: [{ key: 'scope', match: { value: 'a/g/m' } }] });
      await stores[0].search(new Float32Array(DIM).fill(1), { ...query, group_ids: ['g', 'h'] });
      const two = server.bodies.filter((b) => b.query !== undefined).at(-1);
      expect(two?.filter).toEqual({ must: [{ key: 'scope', match: { any: ['a/g/m', 'a/h/m'] } }] });
    } finally {
      for (const store of stores) await store.close();
      await server.close();
    }
  });
});

describe('qdrantPointId', () => {
  it('is a deterministic UUID v5 per (app, face)', () => {
    const id = qdrantPointId('app1', 'face-1');
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(qdrantPointId('app1', 'face-1')).toBe(id);
    expect(qdrantPointId('app2', 'face-1')).not.toBe(id);
    expect(qdrantPointId('app1', 'face-2')).not.toBe(id);
  });
});
