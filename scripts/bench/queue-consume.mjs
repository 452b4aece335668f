#!/usr/bin/env node
// node scripts/bench/queue-consume.mjs [--jobs 1000] [--gaps 40,4] [--batch 50] [--concurrency 64]
//
// What a job costs Redis from add to done, by how the jobs arrive: a real Redis (scripts/services/up.sh redis in a
// temp folder, free port) and the project's BullMqJobQueue with a worker of --concurrency (the indexer's default)
// whose handler does nothing. Runs: one job at a time with --gaps ms between adds (the pace of a detector feeding the
// indexer in bench:import: one item every ~40 ms), then --batch jobs per add() as fast as they are taken (a saturated
// queue: a stack near its capacity). Per job: Redis's CPU (from /proc) and the commands it ran (INFO commandstats, a
// Lua script's own commands included). After `pnpm build`. Prints lines, then one JSON.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  cpuSeconds,
  log,
  machine,
  redisCommandCalls,
  redisCommandsPerItem,
  require,
  ROOT,
  round,
  startRedis,
  stopOnSignals,
} from './lib.mjs';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '1000' },
    gaps: { type: 'string', default: '40,4' },
    batch: { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '64' },
  },
});
const jobs = Number(values.jobs);
const gaps = values.gaps.split(',').map(Number);
const batch = Number(values.batch);
const concurrency = Number(values.concurrency);
if (!(jobs > 0) || !gaps.every((g) => g >= 0) || !(batch > 0) || !(concurrency > 0)) {
  console.error('--jobs, --batch, --concurrency: > 0; --gaps: ms >= 0');
  process.exit(2);
}

const { BullMqJobQueue } = require(join(ROOT, 'libs/adapters/dist/index.js'));
const redis = await startRedis();
stopOnSignals(async () => redis.stop());
const report = { benchmark: 'queue-consume', machine: machine(), jobs, concurrency, runs: [] };
log(`queue-consume: ${jobs} jobs per run, worker concurrency ${concurrency}; Redis ${redis.url} (pid ${redis.pid})`);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const job = (i) => ({ id: `job-${i}`, data: { app_id: 'bench', import_id: 'bench-import', index: i } });

/** Adds `jobs` jobs with `feed`, waits until the worker finished them all; Redis's cost per job. */
async function run(label, feed) {
  const queue = new BullMqJobQueue(`consume-${report.runs.length}`, { redisUrl: redis.url, prefix: 'bench' });
  let done = 0;
  let allDone;
  const finished = new Promise((resolve) => {
    allDone = resolve;
  });
  try {
    const calls = redisCommandCalls(redis.url);
    const cpu = cpuSeconds(redis.pid);
    const start = performance.now();
    queue.process(
      async () => {
        done += 1;
        if (done === jobs) allDone();
      },
      { concurrency },
    );
    await feed(queue);
    await finished;
    const result = {
      run: label,
      seconds: round((performance.now() - start) / 1000, 2),
      redis_cpu_us_per_job: round(((cpuSeconds(redis.pid) - cpu) * 1e6) / jobs, 0),
      ...redisCommandsPerItem(calls, redisCommandCalls(redis.url), jobs),
    };
    report.runs.push(result);
    log(
      `${label.padEnd(28)} ${result.seconds} s; per job: Redis CPU ${result.redis_cpu_us_per_job} us, ` +
        `${result.commands} commands, ${result.scripts} scripts`,
    );
    await queue.obliterate();
  } finally {
    await queue.close();
  }
}

try {
  for (const gap of gaps) {
    await run(`one at a time, ${gap} ms apart`, async (queue) => {
      for (let i = 0; i < jobs; i++) {
        await queue.add([job(i)]);
        await sleep(gap);
      }
    });
  }
  await run(`${batch} per add, saturated`, async (queue) => {
    for (let i = 0; i < jobs; i += batch) {
      await queue.add(Array.from({ length: Math.min(batch, jobs - i) }, (_, k) => job(i + k)));
    }
  });
} finally {
  redis.stop();
}
console.log(JSON.stringify(report));
