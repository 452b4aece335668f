/**
 * The embedded gateway end to end: real SQLite + sqlite-vec + files + in-process queue + the real face engine,
 * on the shared test photos (the user scenarios of scenarios.ts). Skipped (with the reason) when the photos or
 * the models are absent.
 */
import request from 'supertest';
import { afterAll, describe } from 'vitest';
import { ADMIN_KEY, DEFAULT_KEY, engineSkipReason, startTestGateway, type TestGateway } from './helpers';
import { describeServiceScenarios } from './scenarios';

const skipReason = engineSkipReason();
if (skipReason) console.warn(`[e2e-embedded] skipped: ${skipReason}`);

describe.skipIf(skipReason !== null)('embedded gateway with the real engine', () => {
  let gw: TestGateway | undefined;
  afterAll(async () => {
    await gw?.dispose();
  });

  describeServiceScenarios(
    'user scenarios',
    async () => {
      gw = await startTestGateway({ IMPORT_CONCURRENCY: '2' });
      return { http: request(gw.app.getHttpServer()), adminKey: ADMIN_KEY, defaultKey: DEFAULT_KEY };
    },
    { importTimeoutMs: 240_000 },
  );
});
