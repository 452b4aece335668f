/**
 * The queue pipeline of the distributed mode, on real servers: 2 detectors, 2 embedders, an indexer and a gateway,
 * each its own node process. Import items go imports -> detector -> embed (crop key only) -> embedder -> index ->
 * indexer, and both embedders take items from the embed queue (their log lines say so); the detectors call no
 * embedder (they get no EMBEDDER_GRPC_URL). Deletes of a face, a user and a group answer at once from the
 * records, and the indexer removes the vectors and images through the `deletes` queue.
 * Skipped (with the reason) without the servers, the test photos or the models.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { S3BlobStore } from '@facesearch/adapters';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApps, dropIsolated, isolatedEnv, ProcessGroup, servicesSkipReason, startStack } from './distributed';
import { engineSkipReason, photo, TESTDATA } from './helpers';

const skipReason = servicesSkipReason() ?? engineSkipReason();
if (skipReason) console.warn(`[pipeline-distributed] skipped: ${skipReason}`);

const ADMIN_KEY = 'pipe-admin-key-000000001';
const DEFAULT_KEY = 'pipe-default-key-0000001';
const auth = { 'x-api-key': DEFAULT_KEY };
const runId = () => `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.skipIf(skipReason !== null)(
  'distributed pipeline: imports through three queues, deletes through the indexer',
  () => {
    const group = new ProcessGroup();
    const env = isolatedEnv(runId());
    let http: ReturnType<typeof request>;
    let blobs: S3BlobStore;

    /** Points in this run's collection matching the payload filter, counted by Qdrant itself. */
    async function points(match: Record<string, string>): Promise<number> {
      const res = await fetch(`${env.QDRANT_URL}/collections/${env.QDRANT_COLLECTION}/points/count`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          exact: true,
          filter: { must: Object.entries(match).map(([key, value]) => ({ key, match: { value } })) },
        }),
      });
      if (!res.ok) throw new Error(`qdrant count: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { result: { count: number } }).result.count;
    }

    beforeAll(async () => {
      buildApps();
      const common = {
        ...env,
        ADMIN_API_KEY: ADMIN_KEY,
        DEFAULT_APP_API_KEY: DEFAULT_KEY,
        IMPORT_CONCURRENCY: '2',
        EMBED_CONCURRENCY: '1',
        SHUTDOWN_TIMEOUT_MS: '15000',
        // Debug: the workers' lines per item are read below.
        LOG_LEVEL: 'debug',
      };
      const { base: url } = await startStack(group, common, { readyTimeoutMs: 150_000 });
      for (const name of ['embedder-1', 'embedder-2']) {
        await waitUntil(() => group.lines(name, 'consuming the embed queue').length > 0, 30_000, `${name} consuming`);
      }
      http = request(url);
      blobs = new S3BlobStore({
        endpoint: env.S3_ENDPOINT,
        accessKey: env.S3_ACCESS_KEY,
        secretKey: env.S3_SECRET_KEY,
        bucket: env.S3_BUCKET,
        region: env.S3_REGION,
      });
    }, 240_000);

    afterAll(async () => {
      await group.stop();
      await blobs?.close();
      await dropIsolated(env);
    }, 60_000);

    it('imports every item through detector, both embedders (queue consumers) and the indexer', async () => {
      const items: Array<{ user_id: string; file: string }> = [];
      let req = http.post('/v1/imports').set(auth).field('group_id', 'bulk');
      const people = readdirSync(join(TESTDATA, 'faces')).sort().slice(0, 8);
      for (const person of people) {
        for (const f of readdirSync(join(TESTDATA, 'faces', person)).slice(0, 3)) {
          const name = `${person}__${f}`;
          items.push({ user_id: person, file: name });
          req = req.attach('files', photo(`faces/${person}/${f}`), name);
        }
      }
      for (const f of ['zero_bytes.jpg', 'text_renamed.jpg']) {
        items.push({ user_id: 'bad', file: `bad__${f}` });
        req = req.attach('files', photo(`bad/${f}`), `bad__${f}`);
      }
      const res = await req.field('items', JSON.stringify(items));
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const importId: string = res.body.import_id;
      let status = res.body;
      await waitUntil(
        async () => {
          status = (await http.get(`/v1/imports/${importId}`).set(auth)).body;
          return !['queued', 'running'].includes(status.status);
        },
        240_000,
        'the import',
      );
      expect(status).toMatchObject({ status: 'completed', total: items.length, pending: 0 });
      expect(status.succeeded).toBeGreaterThan((items.length - 2) * 0.8);
      const failed = (await http.get(`/v1/imports/${importId}/items?status=failed&limit=100`).set(auth)).body.items;
      expect(
        failed
          .filter((i: { name: string }) => i.name.startsWith('bad__'))
          .map((i: { error: { code: string } }) => i.error.code),
      ).toEqual(expect.arrayContaining([expect.stringMatching(/^image_/)]));

      // Every succeeded item was detected, embedded from the embed queue, and indexed; both embedders took items.
      const succeededItems = (await http.get(`/v1/imports/${importId}/items?status=succeeded&limit=100`).set(auth)).body
        .items as Array<{ index: number }>;
      const embedded = ['embedder-1', 'embedder-2'].map((e) =>
        group.lines(e, 'import item embedded').filter((l) => l.import_id === importId),
      );
      expect(embedded[0].length, 'embedder-1 consumed embed jobs').toBeGreaterThan(0);
      expect(embedded[1].length, 'embedder-2 consumed embed jobs').toBeGreaterThan(0);
      const embeddedIndexes = new Set([...embedded[0], ...embedded[1]].map((l) => l.index));
      for (const item of succeededItems) expect(embeddedIndexes.has(item.index), `item ${item.index}`).toBe(true);
      const detected = ['detector-1', 'detector-2'].reduce(
        (n, d) => n + group.lines(d, 'import item analysed').filter((l) => l.import_id === importId).length,
        0,
      );
      expect(detected).toBeGreaterThanOrEqual(succeededItems.length);
      const batches = group.lines('indexer-1', 'index batch written').map((l) => l.faces as number);
      expect(batches.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(succeededItems.length);
      expect(await points({ app_id: 'default', group_id: 'bulk' })).toBe(succeededItems.length);
      // No crop is left behind, and the queues are empty.
      for (let i = 0; i < items.length; i++) {
        expect(await blobs.exists(`crops/default/${importId}/${i}`), `crop ${i}`).toBe(false);
      }
      const metrics = (await http.get('/metrics')).text;
      for (const q of ['imports', 'embed', 'index', 'deletes']) {
        expect(metrics).toMatch(new RegExp(`facesearch_queue_depth\\{queue="${q}"\\} 0`));
      }
    }, 300_000);

    it('deletes a face, a user and a group at once in the API, and their vectors and images through the indexer', async () => {
      const enrol = async (g: string, u: string, file: string) => {
        const r = await http.post(`/v1/groups/${g}/users/${u}/faces`).set(auth).attach('image', photo(file), 'x.jpg');
        expect(r.status, JSON.stringify(r.body)).toBe(201);
        return r.body.face_id as string;
      };
      const obama1 = await enrol('del', 'obama', 'faces/obama/1.jpg');
      const obama2 = await enrol('del', 'obama', 'faces/obama/2.jpg');
      await enrol('del', 'biden', 'faces/biden/1.jpg');
      await enrol('gone', 'biden', 'faces/biden/2.jpg');
      expect(await points({ app_id: 'default', group_id: 'del' })).toBe(3);

      const before = group.lines('indexer-1', 'delete job done').length;
      expect((await http.delete(`/v1/groups/del/users/obama/faces/${obama2}`).set(auth)).status).toBeLessThan(300);
      expect((await http.delete('/v1/groups/del/users/biden').set(auth)).status).toBeLessThan(300);
      expect((await http.delete('/v1/groups/gone').set(auth)).status).toBeLessThan(300);
      // The records are gone at once; search never returns what was deleted.
      expect((await http.get('/v1/groups/del/users/biden').set(auth)).status).toBe(404);
      expect((await http.get('/v1/groups/gone').set(auth)).status).toBe(404);
      const search = await http
        .post('/v1/search')
        .set(auth)
        .field('group_ids', 'del')
        .field('top_k', '5')
        .field('match_threshold', '0')
        .attach('image', photo('faces/biden/2.jpg'), 'b.jpg');
      expect(search.status, JSON.stringify(search.body)).toBe(200);
      const found = search.body.results.flatMap(
        (r: { matches: Array<{ face_id: string; user_id: string }> }) => r.matches,
      );
      expect(found.map((m: { user_id: string }) => m.user_id)).not.toContain('biden');
      expect(found.map((m: { face_id: string }) => m.face_id)).not.toContain(obama2);

      // The indexer removes the vectors and the images.
      await waitUntil(
        () => group.lines('indexer-1', 'delete job done').length >= before + 4,
        60_000,
        'the indexer to run the four delete jobs',
      );
      const kinds = group
        .lines('indexer-1', 'delete job done')
        .slice(before)
        .map((l) => l.kind)
        .sort();
      // The face; the user's faces; the group's faces; the group's image folder.
      expect(kinds).toEqual(['faces', 'faces', 'faces', 'group_images']);
      expect(await points({ app_id: 'default', group_id: 'del' })).toBe(1);
      expect(await points({ app_id: 'default', group_id: 'del', user_id: 'obama', face_id: obama1 })).toBe(1);
      expect(await points({ app_id: 'default', group_id: 'gone' })).toBe(0);
      expect(await blobs.exists(`faces/default/del/obama/${obama2}`)).toBe(false);
      expect(await blobs.exists(`faces/default/del/obama/${obama1}`)).toBe(true);
    }, 120_000);
  },
);
