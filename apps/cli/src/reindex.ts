import { FaceSearchError } from '@facesearch/common';

export interface ReindexCommandOptions {
  url: string;
  /** The admin key (ADMIN_API_KEY of the service). */
  key: string;
  all: boolean;
  json: boolean;
  pollMs: number;
  stdout: NodeJS.WritableStream;
}

export interface ReindexSummary {
  status: string;
  model_id: string;
  total: number;
  processed: number;
  reindexed: number;
  skipped: number;
  failed: number;
  errors: Array<{ app_id: string; face_id: string; code: string; message: string }>;
  error: { code: string; message: string } | null;
}

/**
 * Drives POST /v1/admin/reindex on a running service and follows it to the end, printing progress.
 * Exit code: 0 all faces current, 1 some faces failed (listed), 2 the run could not start or stopped.
 */
export async function reindexService(o: ReindexCommandOptions): Promise<{ exitCode: number; summary: ReindexSummary }> {
  if (!o.key) throw new FaceSearchError('usage', 'reindex needs the admin key: --key KEY or FACESEARCH_ADMIN_KEY');
  const base = o.url.replace(/\/+$/, '');
  const call = async (method: string, body?: unknown): Promise<ReindexSummary> => {
    let res: Response;
    try {
      res = await fetch(`${base}/v1/admin/reindex`, {
        method,
        headers: { authorization: `Bearer ${o.key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (err) {
      throw new FaceSearchError('connection_failed', `Cannot reach ${base}: ${(err as Error).message}`, 503);
    }
    const payload = (await res.json().catch(() => ({}))) as ReindexSummary & {
      error?: { code: string; message: string };
    };
    if (!res.ok) {
      const e = payload.error ?? { code: `http_${res.status}`, message: res.statusText };
      throw new FaceSearchError(e.code, e.message, res.status);
    }
    return payload;
  };
  let state = await call('POST', { all: o.all });
  let last = '';
  while (state.status === 'running') {
    const line = `reindex ${state.processed}/${state.total}: ${state.reindexed} re-embedded, ${state.skipped} current, ${state.failed} failed`;
    if (!o.json && line !== last) o.stdout.write(`${line}\n`);
    last = line;
    await new Promise((r) => setTimeout(r, o.pollMs));
    state = await call('GET');
  }
  if (!o.json) {
    o.stdout.write(
      `reindex ${state.status} (model ${state.model_id}): ${state.reindexed} re-embedded, ${state.skipped} already current, ${state.failed} failed of ${state.total}\n`,
    );
    for (const e of state.errors) o.stdout.write(`  ${e.app_id}/${e.face_id}: ${e.code} ${e.message}\n`);
    if (state.error) o.stdout.write(`  stopped: ${state.error.code} ${state.error.message}\n`);
  }
  const exitCode = state.status !== 'completed' ? 2 : state.failed > 0 ? 1 : 0;
  return { exitCode, summary: state };
}
