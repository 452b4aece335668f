/**
 * Runs the distributed apps as real node processes (built dist/) against the real Redis, Qdrant and S3 named by
 * REDIS_URL, QDRANT_URL and S3_* (scripts/services/up.sh writes them to .stack/services.env), each test run in
 * its own Redis prefix, Qdrant collection and S3 bucket.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { RedisLibraryRepository, S3BlobStore } from '@facesearch/adapters';

export const REPO = resolve(__dirname, '../../..');

/** Why the distributed tests cannot run here, or null. */
export function servicesSkipReason(): string | null {
  const missing = ['REDIS_URL', 'QDRANT_URL', 'S3_ENDPOINT', 'S3_ACCESS_KEY', 'S3_SECRET_KEY'].filter(
    (v) => !process.env[v],
  );
  return missing.length > 0
    ? `${missing.join(', ')} not set: start the servers with scripts/services/up.sh and source .stack/services.env`
    : null;
}

/** Ports this process handed out: a port is free again once its probe closes, before the app given it binds it. */
const handedOut = new Set<number>();

/** A free loopback port, never one handed out before (two apps were once given the same one and one failed). */
export async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    await new Promise<void>((r) => server.close(() => r()));
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** A fresh namespace on the shared servers: Redis key prefix, Qdrant collection and S3 bucket. */
export function isolatedEnv(runId: string): Record<string, string> {
  const env = process.env as Record<string, string>;
  return {
    FACESEARCH_MODE: 'distributed',
    REDIS_URL: env.REDIS_URL,
    REDIS_PREFIX: `test-${runId}`,
    QDRANT_URL: env.QDRANT_URL,
    QDRANT_COLLECTION: `test_${runId}`,
    S3_ENDPOINT: env.S3_ENDPOINT,
    S3_ACCESS_KEY: env.S3_ACCESS_KEY,
    S3_SECRET_KEY: env.S3_SECRET_KEY,
    S3_REGION: env.S3_REGION ?? 'us-east-1',
    S3_BUCKET: `test-${runId}`.toLowerCase(),
  };
}

/**
 * Deletes what a run left on the servers (best effort): the Redis keys under REDIS_PREFIX, the Qdrant collection,
 * every object in the S3 bucket and the bucket.
 */
export async function dropIsolated(env: Record<string, string>): Promise<void> {
  const repo = new RedisLibraryRepository(env.REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await repo.redis.scan(cursor, 'MATCH', `${env.REDIS_PREFIX}:*`, 'COUNT', 1000);
      if (keys.length > 0) await repo.redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } catch {
    // ignored
  } finally {
    await repo.close();
  }
  await fetch(`${env.QDRANT_URL}/collections/${env.QDRANT_COLLECTION}`, { method: 'DELETE' }).catch(() => undefined);
  const blobs = new S3BlobStore({
    endpoint: env.S3_ENDPOINT,
    accessKey: env.S3_ACCESS_KEY,
    secretKey: env.S3_SECRET_KEY,
    bucket: env.S3_BUCKET,
    region: env.S3_REGION ?? 'us-east-1',
  });
  const { client } = blobs as unknown as { client: S3Client };
  try {
    const names: string[] = [];
    for await (const o of client.listObjectsV2(env.S3_BUCKET, '', true)) if (o.name) names.push(o.name);
    for (let i = 0; i < names.length; i += 1000) await client.removeObjects(env.S3_BUCKET, names.slice(i, i + 1000));
    await client.removeBucket(env.S3_BUCKET);
  } catch {
    // ignored
  }
}

/** The part of the minio client that dropIsolated uses (the S3BlobStore's own client). */
interface S3Client {
  listObjectsV2(bucket: string, prefix: string, recursive: boolean): AsyncIterable<{ name?: string }>;
  removeObjects(bucket: string, names: string[]): Promise<unknown>;
  removeBucket(bucket: string): Promise<void>;
}

/** Compiles the apps (incremental: quick when nothing changed) so the processes run the current code. */
export function buildApps(): void {
  execFileSync('npx', ['tsc', '-b', 'apps/gateway', 'apps/detector', 'apps/embedder', 'apps/indexer'], {
    cwd: REPO,
    stdio: 'inherit',
  });
}

export interface AppProcess {
  name: string;
  child: ChildProcess;
  logFile: string;
  log(): string;
  exited: Promise<number | null>;
}

export type AppName = 'gateway' | 'detector' | 'embedder' | 'indexer';

export class ProcessGroup {
  readonly dir = mkdtempSync(join(tmpdir(), 'facesearch-stack-'));
  readonly apps: AppProcess[] = [];
  private readonly settings = new Map<string, { app: AppName; env: Record<string, string> }>();
  private restarts = 0;

  start(name: string, app: AppName, env: Record<string, string>): AppProcess {
    if (!this.settings.has(name)) this.settings.set(name, { app, env });
    const logFile = join(this.dir, `${name}.log`);
    const out = createWriteStream(logFile);
    const child = spawn(process.execPath, [join(REPO, 'apps', app, 'dist', 'main.js')], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const proc: AppProcess = { name, child, logFile, exited, log: () => readFileSync(logFile, 'utf8') };
    this.apps.push(proc);
    return proc;
  }

  /** Starts a process again with the settings it first started with (same gRPC port), under a new log name. */
  restart(name: string): AppProcess {
    const first = this.settings.get(name);
    if (!first) throw new Error(`${name} was never started`);
    this.restarts++;
    return this.start(`${name}~${this.restarts}`, first.app, first.env);
  }

  /** The apps' log lines (JSON) whose msg is `msg`. */
  lines(name: string, msg: string): Array<Record<string, unknown>> {
    const app = this.apps.find((a) => a.name === name);
    if (!app) return [];
    return app
      .log()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === msg);
  }

  tails(lines = 20): string {
    return this.apps.map((a) => `--- ${a.name}\n${a.log().split('\n').slice(-lines).join('\n')}`).join('\n');
  }

  /** SIGTERM to all (gateway first), SIGKILL to whatever is left after graceMs. Returns the exit codes. */
  async stop(graceMs = 20_000): Promise<Record<string, number | null>> {
    const codes: Record<string, number | null> = {};
    const order = ['gateway', 'indexer', 'detector', 'embedder'];
    const sorted = [...this.apps].sort(
      (a, b) => order.findIndex((o) => a.name.startsWith(o)) - order.findIndex((o) => b.name.startsWith(o)),
    );
    for (const app of sorted) {
      if (app.child.exitCode !== null || app.child.signalCode !== null) {
        codes[app.name] = app.child.exitCode;
        continue;
      }
      app.child.kill('SIGTERM');
      const timer = setTimeout(() => app.child.kill('SIGKILL'), graceMs);
      codes[app.name] = await app.exited;
      clearTimeout(timer);
    }
    return codes;
  }
}

/** Polls until `url` answers 200, failing early when one of the processes has exited. */
export async function waitReady(url: string, group: ProcessGroup, timeoutMs: number): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const dead = group.apps.filter((a) => a.child.exitCode !== null);
    if (dead.length > 0) throw new Error(`exited during start-up: ${dead.map((d) => d.name)}\n${group.tails()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
      last = await res.text();
      if (res.ok) return JSON.parse(last);
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`not ready after ${timeoutMs} ms: ${last}\n${group.tails()}`);
}

/**
 * The whole stack as processes: `embedders` embedders and `detectors` detectors (default 2 each), an indexer and a
 * gateway (using every detector and embedder), each on a free port, all with `common` settings. By default
 * detectors call no embedder: they hand crops on through the embed queue; with `importEmbed: 'inline'` they embed
 * import items through the embedders over gRPC. Resolves with the gateway's base URL, its readiness report and the
 * workers' gRPC addresses once it is ready.
 */
export async function startStack(
  group: ProcessGroup,
  common: Record<string, string>,
  options: {
    readyTimeoutMs: number;
    detectors?: number;
    embedders?: number;
    importEmbed?: 'queue' | 'inline';
  },
): Promise<{
  base: string;
  ready: unknown;
  detectors: string;
  embedders: string;
  /** Each worker's GET /metrics URL, by process name (detector-1, embedder-1, indexer-1, ...). */
  metrics: Record<string, string>;
}> {
  const nEmbedders = options.embedders ?? 2;
  const nDetectors = options.detectors ?? 2;
  const ports = await Promise.all(Array.from({ length: 1 + nEmbedders + nDetectors }, () => freePort()));
  const [gatewayPort, ...workerPorts] = ports;
  const embedderPorts = workerPorts.slice(0, nEmbedders);
  const detectorPorts = workerPorts.slice(nEmbedders);
  const embedders = embedderPorts.map((p) => `127.0.0.1:${p}`).join(',');
  const detectors = detectorPorts.map((p) => `127.0.0.1:${p}`).join(',');
  const metrics: Record<string, string> = {};
  const metricsPort = async (name: string) => {
    const port = await freePort();
    metrics[name] = `http://127.0.0.1:${port}/metrics`;
    return { METRICS_PORT: String(port) };
  };
  for (const [i, port] of embedderPorts.entries()) {
    const name = `embedder-${i + 1}`;
    group.start(name, 'embedder', {
      ...common,
      GRPC_PORT: String(port),
      ...(await metricsPort(name)),
    });
  }
  const inline = options.importEmbed === 'inline' ? { IMPORT_EMBED: 'inline', EMBEDDER_GRPC_URL: embedders } : {};
  for (const [i, port] of detectorPorts.entries()) {
    const name = `detector-${i + 1}`;
    group.start(name, 'detector', { ...common, GRPC_PORT: String(port), ...(await metricsPort(name)), ...inline });
  }
  group.start('indexer-1', 'indexer', { ...common, ...(await metricsPort('indexer-1')) });
  group.start('gateway', 'gateway', {
    ...common,
    PORT: String(gatewayPort),
    DETECTOR_GRPC_URL: detectors,
    EMBEDDER_GRPC_URL: embedders,
  });
  const base = `http://127.0.0.1:${gatewayPort}`;
  const ready = await waitReady(`${base}/health/ready`, group, options.readyTimeoutMs);
  return { base, ready, detectors, embedders, metrics };
}

/**
 * A TCP proxy in front of a server, to take it "down" for one client without touching the shared server:
 * down() drops every connection and refuses new ones; up() accepts again on the same port.
 */
export class SwitchableProxy {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;

  // The URL is read when the proxy goes up: a skipped suite (no servers configured) builds its proxies with ''.
  private constructor(private readonly targetUrl: string) {}

  static forUrl(url: string): SwitchableProxy {
    return new SwitchableProxy(url);
  }

  private target(): { host: string; port: number } {
    const u = new URL(this.targetUrl);
    return {
      host: u.hostname,
      port: Number(u.port || (u.protocol === 'https:' ? 443 : u.protocol === 'redis:' ? 6379 : 80)),
    };
  }

  /** The URL with host:port replaced by the proxy's. */
  rewrite(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString().replace(/\/$/, '');
  }

  async up(): Promise<void> {
    if (this.server) return;
    const target = this.target();
    const server = createServer((client) => {
      const upstream = connect(target.port, target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', resolve);
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}
