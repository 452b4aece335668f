// Shared helpers of the bench:* scripts (not run by itself): photos, percentiles, process memory, the machine,
// an API client, the embedded gateway and the distributed stack as child processes, the raw compute rate.
import { execFileSync, fork, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { availableParallelism, cpus, freemem, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const require = createRequire(join(ROOT, 'package.json'));
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const round = (x, digits = 1) => (x == null ? null : Math.round(x * 10 ** digits) / 10 ** digits);

export function log(line) {
  process.stdout.write(`${line}\n`);
}

// ---------------------------------------------------------------- photos

/** The real photos: ../shared/testdata faces/ and multi/, else the npm group photos in .fixtures/. */
export function listPhotos() {
  const testdata = resolve(ROOT, '..', 'shared', 'testdata');
  const files = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(jpe?g|png|webp)$/i.test(name)) files.push(path);
    }
  };
  if (existsSync(join(testdata, 'faces'))) {
    walk(join(testdata, 'faces'));
    walk(join(testdata, 'multi'));
    return { source: '../shared/testdata faces/ + multi/', files };
  }
  walk(join(ROOT, '.fixtures'));
  if (files.length === 0) throw new Error('no photos: neither ../shared/testdata nor .fixtures/ (run pnpm install)');
  return { source: '.fixtures (npm group photos)', files };
}

/** Identity of a photo: its folder under faces/, else its file name. */
export function identityOf(path) {
  const parts = path.split('/');
  return parts.at(-2) === 'multi' || parts.at(-2) === '.fixtures' ? parts.at(-1).replace(/\.\w+$/, '') : parts.at(-2);
}

// ---------------------------------------------------------------- statistics

export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** p50/p95/p99/mean/max of a list of milliseconds, rounded to 0.1 ms. */
export function latencyStats(values) {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return {
    n: s.length,
    p50: round(percentile(s, 50)),
    p95: round(percentile(s, 95)),
    p99: round(percentile(s, 99)),
    mean: round(mean),
    max: round(s.at(-1)),
  };
}

export const median = (values) =>
  percentile(
    [...values].sort((a, b) => a - b),
    50,
  );

// ---------------------------------------------------------------- machine and memory

export function machine() {
  return {
    date: new Date().toISOString(),
    cores: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    mem_total_gb: round(totalmem() / 2 ** 30),
    mem_free_gb: round(freemem() / 2 ** 30),
    node: process.version,
    loadavg: loadavg().map((x) => round(x, 2)),
  };
}

export const loadNow = () => loadavg().map((x) => round(x, 2));

/** Resident memory of a process in MiB (VmRSS from /proc), or null when it is gone. */
export function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

/** Samples the RSS of named processes every `everyMs` and keeps each one's peak. */
export class RssSampler {
  constructor(pids, everyMs = 250) {
    this.pids = pids;
    this.peak = {};
    this.timer = setInterval(() => this.sample(), everyMs);
    this.sample();
  }
  sample() {
    for (const [name, pid] of Object.entries(this.pids)) {
      const v = rssMiB(pid);
      if (v != null && !(this.peak[name] >= v)) this.peak[name] = v;
    }
  }
  stop() {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}

/** CPU time (user + system) a process has used so far, in seconds, or null when it is gone. */
export function cpuSeconds(pid) {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th, in ticks.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/** CPU seconds each named process used between two cpuSeconds snapshots. */
export function cpuUsedSince(before, pids) {
  return Object.fromEntries(
    Object.entries(pids).map(([name, pid]) => {
      const now = cpuSeconds(pid);
      return [name, now == null || before[name] == null ? null : round(now - before[name], 2)];
    }),
  );
}

export function snapshotCpu(pids) {
  return Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid)]));
}

export function snapshotRss(pids) {
  return Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, rssMiB(pid)]));
}

export function formatRss(rss) {
  return Object.entries(rss)
    .map(([name, mib]) => `${name} ${mib ?? '-'}`)
    .join(', ');
}

/**
 * Redis's own count of the commands it ran, per command (`INFO commandstats`). A Lua script is one `evalsha` call,
 * and the commands it runs count again under their own names (so do their microseconds: Redis's CPU is better read
 * from its process).
 */
export function redisCommandCalls(redisUrl) {
  const { hostname, port } = new URL(redisUrl);
  const text = execFileSync('redis-cli', ['-h', hostname, '-p', port, 'INFO', 'commandstats'], { encoding: 'utf8' });
  const calls = {};
  for (const line of text.split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (m) calls[m[1]] = Number(m[2]);
  }
  return calls;
}

/** Commands (a script's own commands included) and scripts per item between two redisCommandCalls snapshots. */
export function redisCommandsPerItem(before, after, items) {
  let commands = 0;
  let scripts = 0;
  for (const [name, now] of Object.entries(after)) {
    const ran = now - (before[name] ?? 0);
    commands += ran;
    if (name === 'evalsha' || name === 'eval') scripts += ran;
  }
  return { commands: round(commands / items, 1), scripts: round(scripts / items, 1) };
}

// ---------------------------------------------------------------- ports

export async function freePort() {
  const server = createServer();
  await new Promise((r, j) => server.once('error', j).listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

async function portFree(port) {
  const server = createServer();
  try {
    await new Promise((r, j) => server.once('error', j).listen(port, '127.0.0.1', r));
    await new Promise((r) => server.close(r));
    return true;
  } catch {
    return false;
  }
}

/** A base port with `count` consecutive free ports after it, in 20000-29999 (random start). */
export async function freePortBlock(count) {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 9000);
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = await portFree(p);
    if (ok) return base;
  }
  throw new Error(`no block of ${count} free ports found`);
}

// ---------------------------------------------------------------- HTTP API

/**
 * The benches' HTTP client: node:http with keep-alive and the multipart body built here in one buffer. undici's
 * fetch with a FormData body cost ~2 ms more per request on this machine (BENCHMARKS.md, session 6), client CPU
 * on the cores the service uses, counted in every latency; `client: 'fetch'` keeps the old client to compare.
 */
export class Api {
  constructor(base, key, { client = 'http' } = {}) {
    this.base = base;
    this.key = key;
    this.client = client;
  }
  /** `meta`, when given, receives the answer's Server-Timing header (`meta.serverTiming`). */
  async request(method, path, body, meta) {
    const headers = { authorization: `Bearer ${this.key}` };
    let payload = body;
    // fetch encodes a FormData itself.
    if (body instanceof FormData && this.client !== 'fetch') payload = await MultipartBody.fromFormData(body);
    if (payload instanceof MultipartBody) {
      headers['content-type'] = `multipart/form-data; boundary=${payload.boundary}`;
      payload = payload.data;
    } else if (body !== undefined && !(body instanceof FormData)) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const url = `${this.base}${path}`;
    const {
      status,
      headers: answerHeaders,
      text,
    } = this.client === 'fetch'
      ? await fetchSend(url, method, headers, payload)
      : await httpSend(url, method, headers, payload, apiAgent);
    if (meta) meta.serverTiming = answerHeaders['server-timing'] ?? null;
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = { raw: text };
    }
    if (status < 200 || status >= 300) {
      const err = new Error(
        `${method} ${path}: HTTP ${status} ${json?.error?.code ?? ''} ${json?.error?.message ?? text.slice(0, 200)}`,
      );
      err.status = status;
      err.body = json;
      throw err;
    }
    return json;
  }
}

const apiAgent = new HttpAgent({ keepAlive: true });

/**
 * A multipart/form-data body in one buffer, built from string fields and files ({ field, name, data, type }) with
 * one copy of each file (a FormData of Blobs costs three here: ~0.3 ms of client CPU per photo on the cores the
 * service uses).
 */
export class MultipartBody {
  constructor(fields, files) {
    this.boundary = `----bench${Math.random().toString(16).slice(2)}`;
    const parts = [];
    for (const [name, value] of fields) {
      parts.push(
        Buffer.from(`--${this.boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`),
      );
    }
    for (const file of files) {
      parts.push(
        Buffer.from(
          `--${this.boundary}\r\nContent-Disposition: form-data; name="${file.field}"; filename="${file.name}"\r\n` +
            `Content-Type: ${file.type || 'application/octet-stream'}\r\n\r\n`,
        ),
        file.data,
        Buffer.from('\r\n'),
      );
    }
    parts.push(Buffer.from(`--${this.boundary}--\r\n`));
    this.data = Buffer.concat(parts);
  }

  static async fromFormData(form) {
    const fields = [];
    const files = [];
    for (const [field, value] of form.entries()) {
      if (typeof value === 'string') fields.push([field, value]);
      else files.push({ field, name: value.name, data: Buffer.from(await value.arrayBuffer()), type: value.type });
    }
    return new MultipartBody(fields, files);
  }
}

/** The same over undici's fetch (`--client fetch`); resolves to { status, headers, text }. */
async function fetchSend(url, method, headers, body) {
  const res = await fetch(url, { method, headers, body });
  return { status: res.status, headers: Object.fromEntries(res.headers), text: await res.text() };
}

/** One request over node:http, the body in one write; resolves to { status, headers, text }. */
function httpSend(url, method, headers, body, agent) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method,
        agent,
        headers: body === undefined ? headers : { ...headers, 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export const imageType = (name) => (/\.png$/i.test(name) ? 'image/png' : 'image/jpeg');

export function imageBlob(data, name) {
  return new Blob([data], { type: imageType(name) });
}

/** Creates the group, ignoring "already exists". */
export async function ensureGroup(api, groupId) {
  try {
    await api.request('POST', '/v1/groups', { group_id: groupId });
  } catch (err) {
    if (err.status !== 409) throw err;
  }
}

const MIN_POLL_MS = 10;
const POLL_MS_PER_ITEM_LEFT = 5;

/**
 * Submits items (`{ user_id, name, data }`) as multipart imports of `chunk` files each, then polls until every
 * import is finished. Returns { seconds, succeeded, failed, failures: {code: n}, importIds }.
 */
export async function runImport(api, groupId, items, { chunk = 50, pollMs = 200, timeoutMs = 30 * 60_000 } = {}) {
  const start = performance.now();
  const importIds = [];
  for (let i = 0; i < items.length; i += chunk) {
    const part = items.slice(i, i + chunk);
    const body = new MultipartBody(
      [
        ['group_id', groupId],
        ['items', JSON.stringify(part.map((it) => ({ user_id: it.user_id, file: it.name })))],
      ],
      part.map((it) => ({ field: 'files', name: it.name, data: it.data, type: imageType(it.name) })),
    );
    const job = await api.request('POST', '/v1/imports', body);
    importIds.push(job.import_id);
  }
  const submittedSeconds = (performance.now() - start) / 1000;
  const deadline = Date.now() + timeoutMs;
  const done = new Map();
  // The imports finish about in the order they were sent: polling the oldest unfinished one (and the next at once
  // when it is done) times the end as precisely as polling all, for a fraction of the requests.
  for (const id of importIds) {
    for (;;) {
      if (Date.now() > deadline) throw new Error(`imports not finished after ${timeoutMs / 1000} s`);
      const job = await api.request('GET', `/v1/imports/${id}`);
      if (!['queued', 'running'].includes(job.status)) {
        done.set(id, job);
        break;
      }
      // Polled more often as it nears its end: every 200 ms it was read ~100 ms late on average, ~1 % of a
      // 400-item run here; a dozen more cheap requests cost less than that.
      const left = job.total - job.succeeded - job.failed;
      await sleep(Math.min(pollMs, Math.max(MIN_POLL_MS, left * POLL_MS_PER_ITEM_LEFT)));
    }
  }
  const seconds = (performance.now() - start) / 1000;
  let succeeded = 0;
  let failed = 0;
  const failures = {};
  for (const [id, job] of done) {
    succeeded += job.succeeded;
    failed += job.failed;
    if (job.failed > 0) {
      const page = await api.request('GET', `/v1/imports/${id}/items?status=failed&limit=1000`);
      for (const item of page.items) failures[item.error?.code ?? '?'] = (failures[item.error?.code ?? '?'] ?? 0) + 1;
    }
  }
  return { seconds, submittedSeconds, succeeded, failed, failures, importIds };
}

// ---------------------------------------------------------------- services as child processes

const ADMIN_KEY = 'bench-admin-key-0123456789';
const APP_KEY = 'bench-default-app-key-0123456789';

async function waitReady(url, isAlive, timeoutMs, describe) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(3000) });
      if (res.ok) return;
    } catch {
      // not yet
    }
    if (!isAlive()) throw new Error(`${describe} exited during start-up`);
    if (Date.now() > deadline) throw new Error(`${describe} not ready after ${timeoutMs / 1000} s`);
    await sleep(300);
  }
}

/**
 * The embedded default: the gateway as a child process on a free port, with a temp DATA_DIR (removed by stop()).
 */
export async function startEmbedded({ env = {}, label = 'embedded', client } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'facesearch-bench-'));
  const port = await freePort();
  const child = spawn(process.execPath, [join(ROOT, 'apps/gateway/dist/main.js')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      FACESEARCH_MODE: 'embedded',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
      ADMIN_API_KEY: ADMIN_KEY,
      DEFAULT_APP_API_KEY: APP_KEY,
      // The product's default log level unless the caller sets one (logs go to /dev/null here).
      ...(process.env.LOG_LEVEL ? { LOG_LEVEL: process.env.LOG_LEVEL } : {}),
      // Profiling (profile-hook.cjs, gc-hook.cjs) reaches the gateway too.
      ...(process.env.PROFILE_DIR ? { PROFILE_DIR: process.env.PROFILE_DIR } : {}),
      ...(process.env.GC_DIR ? { GC_DIR: process.env.GC_DIR } : {}),
      ...(process.env.NODE_OPTIONS ? { NODE_OPTIONS: process.env.NODE_OPTIONS } : {}),
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const alive = () => child.exitCode === null && child.signalCode === null;
  const stop = async () => {
    if (alive()) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await new Promise((r) => child.once('exit', r));
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await waitReady(url, alive, 120_000, `${label} gateway`);
  } catch (err) {
    await stop();
    throw new Error(`${err.message}\n${stderr}`);
  }
  return {
    mode: 'embedded',
    url,
    api: new Api(url, APP_KEY, { client }),
    dataDir,
    pids: () => ({ gateway: child.pid }),
    stop,
  };
}

function parseEnvFile(path) {
  const env = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^export (\w+)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2].replace(/^'(.*)'$/, '$1');
  }
  return env;
}

function readPid(file) {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && existsSync(`/proc/${pid}`) ? pid : null;
  } catch {
    return null;
  }
}

/**
 * The local distributed stack through scripts/stack/up.sh, in its own STACK_DIR (a temp folder) and on free
 * ports, with `detectors` detector and `embedders` embedder workers and one indexer. stop() runs stack/down.sh
 * (apps, then Redis/Qdrant/S3, whose data it removes) and deletes the folder.
 */
export async function startStack({ detectors = 2, embedders = 2, env = {}, client, cpuList } = {}) {
  const stackDir = mkdtempSync(join(tmpdir(), 'facesearch-bench-stack-'));
  // Servers, gateway, then each worker's gRPC port and its metrics port.
  const base = await freePortBlock(9 + 2 * (detectors + embedders));
  const stackEnv = {
    ...process.env,
    STACK_DIR: stackDir,
    PORT: String(base),
    REDIS_PORT: String(base + 1),
    QDRANT_HTTP_PORT: String(base + 2),
    QDRANT_GRPC_PORT: String(base + 3),
    S3_PORT: String(base + 4),
    CEPH_MON_PORT: String(base + 5),
    GRPC_BASE_PORT: String(base + 8),
    METRICS_BASE_PORT: String(base + 8 + detectors + embedders),
    DETECTORS: String(detectors),
    EMBEDDERS: String(embedders),
    SKIP_BUILD: '1',
    ADMIN_API_KEY: ADMIN_KEY,
    DEFAULT_APP_API_KEY: APP_KEY,
    ...env,
  };
  const stop = async () => {
    try {
      execFileSync('bash', [join(ROOT, 'scripts/stack/down.sh')], { env: stackEnv, stdio: 'ignore', timeout: 120_000 });
    } catch (err) {
      log(`warning: stack/down.sh failed: ${err.message}`);
    }
    rmSync(stackDir, { recursive: true, force: true });
  };
  try {
    // `cpuList`: every server and app starts confined to these CPUs (processes and threads inherit the mask).
    const [command, args] = cpuList
      ? ['taskset', ['-c', cpuList, 'bash', join(ROOT, 'scripts/stack/up.sh')]]
      : ['bash', [join(ROOT, 'scripts/stack/up.sh')]];
    execFileSync(command, args, {
      env: stackEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 300_000,
    });
  } catch (err) {
    const out = `${err.stdout ?? ''}${err.stderr ?? ''}`.slice(-3000);
    await stop();
    throw new Error(`stack/up.sh failed: ${err.message}\n${out}`);
  }
  const services = parseEnvFile(join(stackDir, 'services.env'));
  const url = `http://127.0.0.1:${base}`;
  const pids = () => {
    const out = {};
    const apps = join(stackDir, 'apps');
    for (const f of readdirSync(apps)
      .filter((f) => f.endsWith('.pid'))
      .sort()) {
      const pid = readPid(join(apps, f));
      if (pid) out[f.replace(/\.pid$/, '')] = pid;
    }
    for (const [name, file] of [
      ['redis', 'redis/redis.pid'],
      ['qdrant', 'qdrant/qdrant.pid'],
      ['radosgw', 'ceph/run/client.rgw.a.pid'],
      ['ceph-osd', 'ceph/run/osd.0.pid'],
      ['ceph-mon', 'ceph/run/mon.a.pid'],
    ]) {
      const pid = readPid(join(stackDir, file));
      if (pid) out[name] = pid;
    }
    return out;
  };
  // stack/up.sh numbers the workers' metrics ports in this order.
  const metricsBase = Number(stackEnv.METRICS_BASE_PORT);
  const workers = [
    ...Array.from({ length: embedders }, (_, i) => `embedder-${i + 1}`),
    ...Array.from({ length: detectors }, (_, i) => `detector-${i + 1}`),
    'indexer-1',
  ];
  const metricsUrls = Object.fromEntries(workers.map((w, i) => [w, `http://127.0.0.1:${metricsBase + i}/metrics`]));
  return {
    mode: `distributed ${detectors}d+${embedders}e+1i`,
    url,
    api: new Api(url, APP_KEY, { client }),
    metricsUrls,
    stackDir,
    services,
    qdrantCollection: env.QDRANT_COLLECTION ?? 'faces',
    pids,
    stop,
  };
}

/**
 * Each worker's job figures from its /metrics: per process and queue, the attempts that succeeded and their summed
 * seconds (facesearch_job_duration_seconds), and per gRPC method the calls answered and their seconds.
 */
export async function workerJobFigures(metricsUrls) {
  const out = {};
  for (const [worker, url] of Object.entries(metricsUrls)) {
    let text;
    try {
      text = await (await fetch(url)).text();
    } catch {
      continue;
    }
    const figures = {};
    for (const line of text.split('\n')) {
      const m =
        /^(facesearch_job_duration_seconds|facesearch_grpc_server_duration_seconds)_(sum|count)\{(.*)\} (\S+)$/.exec(
          line,
        );
      if (!m) continue;
      const labels = Object.fromEntries([...m[3].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      const key = labels.queue ? `${labels.queue} ${labels.outcome}` : `grpc ${labels.method} ${labels.code}`;
      figures[key] ??= { count: 0, seconds: 0 };
      figures[key][m[2] === 'sum' ? 'seconds' : 'count'] += Number(m[4]);
    }
    out[worker] = figures;
  }
  return out;
}

/** `after - before` of workerJobFigures, with the mean ms per job; entries without new jobs are left out. */
export function jobFiguresSince(before, after) {
  const out = {};
  for (const [worker, figures] of Object.entries(after)) {
    for (const [key, { count, seconds }] of Object.entries(figures)) {
      const prev = before[worker]?.[key] ?? { count: 0, seconds: 0 };
      const n = count - prev.count;
      if (n <= 0) continue;
      out[worker] ??= {};
      out[worker][key] = { jobs: n, mean_ms: round(((seconds - prev.seconds) / n) * 1000, 1) };
    }
  }
  return out;
}

const qdrantAgent = new HttpAgent({ keepAlive: true, maxSockets: 4 });

/**
 * One Qdrant REST call over node:http (keep-alive, body in one write; undici's fetch added ~40 ms per query here,
 * BENCHMARKS.md, Problems 2): the transport query latencies are timed with. Resolves to the answer's `result`.
 */
export async function qdrantCall(url, method, path, body) {
  const data = body === undefined ? '' : JSON.stringify(body);
  const res = await httpSend(`${url}${path}`, method, { 'content-type': 'application/json' }, data, qdrantAgent);
  if (res.status !== 200) throw new Error(`Qdrant ${method} ${path}: HTTP ${res.status} ${res.text.slice(0, 300)}`);
  return JSON.parse(res.text).result;
}

/**
 * Writes synthetic faces 0..n-1 of `gen` (synthetic.mjs) into each named collection as the project's adapter would
 * (point id, payload with its `scope`), all in one group; `call` is qdrantCall bound to a server. Two uploads in
 * flight; returns once Qdrant has taken every batch (indexing goes on: see waitQdrantIndexed).
 */
export async function putSyntheticPoints(
  call,
  collections,
  gen,
  n,
  { app = 'default', group = 'g', model = 'm' } = {},
) {
  const adapters = require(join(ROOT, 'libs/adapters/dist/index.js'));
  const scope = adapters.qdrantScope(app, group, model);
  let next = 0;
  const upload = async () => {
    while (next < n) {
      const from = next;
      next = Math.min(n, next + 1000);
      const points = [];
      for (let j = from; j < next; j++) {
        const p = gen.point(j);
        points.push({
          id: adapters.qdrantPointId(app, `syn${j}`),
          vector: Array.from(p.vector),
          payload: {
            app_id: app,
            group_id: group,
            user_id: `u${p.identity}`,
            face_id: `syn${j}`,
            model_id: model,
            scope,
          },
        });
      }
      for (const collection of collections)
        await call('PUT', `/collections/${collection}/points?wait=false`, { points });
    }
  };
  await Promise.all([upload(), upload()]);
}

/**
 * Recall against Qdrant's own exact search: `exact` holds each probe's exact top 10 point ids (asked of
 * `collection`), `found(points, i)` how many of them the first 10 points of an answer to probe i hold.
 */
export async function qdrantExactTop10(call, collection, probes) {
  const exact = [];
  for (const query of probes) {
    const answer = await call('POST', `/collections/${collection}/points/query`, {
      query,
      limit: 10,
      params: { exact: true },
    });
    exact.push(answer.points.map((p) => p.id));
  }
  const found = (points, i) => {
    const ids = new Set(points.slice(0, 10).map((p) => p.id));
    return exact[i].filter((id) => ids.has(id)).length;
  };
  return { exact, found };
}

/**
 * Waits until a collection is green and its indexed vector count has stopped changing (Qdrant builds the graph in the
 * background after an upload), and is at least `minIndexed`; returns the collection info. `getInfo` fetches
 * `GET /collections/<name>`'s result.
 */
export async function waitQdrantIndexed(getInfo, timeoutSeconds, minIndexed = 0) {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let last = -1;
  let stable = 0;
  for (;;) {
    const info = await getInfo();
    const indexed = info.indexed_vectors_count ?? 0;
    stable = info.status === 'green' && indexed === last && indexed >= minIndexed ? stable + 1 : 0;
    last = indexed;
    if (stable >= 2) return info;
    if (Date.now() > deadline) throw new Error(`collection not indexed after ${timeoutSeconds} s: ${info.status}`);
    await sleep(1000);
  }
}

/** The S3 server's credentials, region and bucket in startS3 (services/up.sh's defaults, set explicitly). */
export const S3_DEFAULTS = {
  accessKey: 'facesearch',
  secretKey: 'facesearch-secret',
  region: 'us-east-1',
  bucket: 'facesearch',
};

/**
 * One server alone (scripts/services/up.sh qdrant|redis|s3) in its own temp STACK_DIR on free ports. stop() runs
 * services/down.sh for it (which removes its data) and deletes the folder.
 */
async function startAlone(service) {
  const stackDir = mkdtempSync(join(tmpdir(), `facesearch-bench-${service}-`));
  const base = await freePortBlock(2);
  const ports = {
    qdrant: { QDRANT_HTTP_PORT: String(base), QDRANT_GRPC_PORT: String(base + 1) },
    redis: { REDIS_PORT: String(base) },
    s3: {
      S3_PORT: String(base),
      CEPH_MON_PORT: String(base + 1),
      S3_ACCESS_KEY: S3_DEFAULTS.accessKey,
      S3_SECRET_KEY: S3_DEFAULTS.secretKey,
      S3_REGION: S3_DEFAULTS.region,
      S3_BUCKET: S3_DEFAULTS.bucket,
    },
  }[service];
  const env = { ...process.env, STACK_DIR: stackDir, ...ports };
  const stop = () => {
    try {
      execFileSync('bash', [join(ROOT, 'scripts/services/down.sh'), service], { env, stdio: 'ignore' });
    } catch {
      // best effort
    }
    rmSync(stackDir, { recursive: true, force: true });
  };
  try {
    execFileSync('bash', [join(ROOT, 'scripts/services/up.sh'), service], { env, stdio: 'ignore', timeout: 120_000 });
  } catch (err) {
    stop();
    throw err;
  }
  const pidOf = (file) => Number(readFileSync(join(stackDir, file), 'utf8').trim());
  if (service === 's3') {
    // radosgw answers S3; the OSD stores and the monitor keeps the cluster map: all three work per request.
    const pids = { radosgw: 'client.rgw.a', 'ceph-osd': 'osd.0', 'ceph-mon': 'mon.a' };
    for (const [name, id] of Object.entries(pids)) pids[name] = pidOf(`ceph/run/${id}.pid`);
    return { url: `http://127.0.0.1:${base}`, pid: pids.radosgw, pids, stop };
  }
  const pid = pidOf(`${service}/${service}.pid`);
  const url = service === 'qdrant' ? `http://127.0.0.1:${base}` : `redis://127.0.0.1:${base}`;
  return { url, pid, stop };
}

/** A Qdrant server alone: { url, pid, stop }. */
export const startQdrant = () => startAlone('qdrant');

/** A Redis server alone: { url, pid, stop }. */
export const startRedis = () => startAlone('redis');

/** An S3 server alone (Ceph radosgw, as the stack's): { url, pid (radosgw), pids (each Ceph daemon), stop }. */
export const startS3 = () => startAlone('s3');

/** Runs `stop` on SIGINT/SIGTERM and exits, so an interrupted run leaves no process behind. */
export function stopOnSignals(stop) {
  let stopping = false;
  const handler = async (signal) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: cleaning up`);
    try {
      await stop();
    } finally {
      process.exit(130);
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

// ---------------------------------------------------------------- raw compute

export function loadEngine() {
  const engine = require(join(ROOT, 'libs/face-engine/dist/index.js'));
  return engine;
}

/**
 * The raw compute rate: decode + detect + align + embed (FaceEngine.analyze, one ONNX thread) in a tight loop,
 * one process per core, each taking every `cores`-th image of `files` (repeated as listed), started with
 * `nodeFlags` (default none). Returns images/s and faces/s over the wall time of the slowest worker.
 */
export async function rawComputeRate(
  files,
  { cores = availableParallelism(), cpuList, maxFaces = 1, nodeFlags = [], ...engineOptions } = {},
) {
  const worker = join(ROOT, 'scripts/bench/raw-worker.mjs');
  const children = Array.from({ length: cores }, () =>
    fork(worker, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: nodeFlags }),
  );
  try {
    // `cpuList`: the loop confined to these CPUs, as the workers it is compared with (before the engine starts threads).
    if (cpuList) for (const c of children) pinToCpus(c.pid, cpuList);
    const ready = children.map(
      (c) =>
        new Promise((ok, fail) => {
          c.once('message', ok);
          c.once('exit', (code) => fail(new Error(`raw worker exited with ${code}`)));
        }),
    );
    for (const [i, c] of children.entries())
      c.send({ files: files.filter((_, j) => j % cores === i), maxFaces, engineOptions });
    await Promise.all(ready);
    const start = performance.now();
    const results = await Promise.all(
      children.map(
        (c) =>
          new Promise((ok) => {
            c.once('message', ok);
            c.send('go');
          }),
      ),
    );
    const seconds = (performance.now() - start) / 1000;
    const images = results.reduce((s, r) => s + r.images, 0);
    const faces = results.reduce((s, r) => s + r.faces, 0);
    return {
      cores,
      images,
      faces,
      seconds: round(seconds, 2),
      // What the processes used: the loop also idles (each process decodes, then runs the models).
      cpu_seconds: round(
        results.reduce((s, r) => s + r.cpu_seconds, 0),
        2,
      ),
      images_per_s: round(images / seconds, 2),
      faces_per_s: round(faces / seconds, 2),
    };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

/** Confines a running process and all its threads to `cpuList` (a taskset list such as `0` or `0-1`). */
export function pinToCpus(pid, cpuList) {
  execFileSync('taskset', ['-a', '-p', '-c', cpuList, String(pid)], { stdio: 'ignore' });
}
