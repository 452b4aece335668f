#!/usr/bin/env node
// node scripts/bench/queue-add.mjs [--backlogs 0,10000,100000] [--adds 20] [--batch 50]
//
// What queueing items costs on Redis when the queue already holds a backlog of waiting jobs (an import admitted
// while MAX_QUEUED_ITEMS allows up to 100k waiting): a real Redis (scripts/services/up.sh redis in a temp folder, free
// port) and the project's BullMqJobQueue, nothing consuming the queue. For each backlog size: that many jobs are
// queued first, then --adds calls of add() with --batch new ids each (as one POST /v1/imports of --batch photos
// does), then the same calls again with ids the queue holds: the oldest waiting ones (a restart or a client's retry
// queueing unfinished items again). Per call: wall ms (p50, p95); per item: Redis's CPU (from /proc) and the commands it ran (INFO
// commandstats, a Lua script's own commands included). Prints lines, then one JSON.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  cpuSeconds,
  latencyStats,
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
    backlogs: { type: 'string', default: '0,10000,100000' },
    adds: { type: 'string', default: '20' },
    batch: { type: 'string', default: '50' },
  },
});
const backlogs = values.backlogs.split(',').map(Number);
const adds = Number(values.adds);
const batch = Number(values.batch);
if (!backlogs.every((b) => Number.isInteger(b) && b >= 0) || !(adds > 0) || !(batch > 0)) {
  console.error('--backlogs: whole numbers >= 0; --adds, --batch: > 0');
  process.exit(2);
}

const { BullMqJobQueue } = require(join(ROOT, 'libs/adapters/dist/index.js'));
const redis = await startRedis();
stopOnSignals(async () => redis.stop());
const report = { benchmark: 'queue-add', machine: machine(), adds, batch, runs: [] };
log(`queue-add: ${adds} x add() of ${batch} items per backlog; Redis ${redis.url} (pid ${redis.pid})`);

const jobData = (i) => ({ app_id: 'bench', import_id: 'bench-import', index: i });

/** Times `adds` calls of add() of `batch` jobs each (ids from `idOf`), one after another. */
async function timeAdds(queue, idOf) {
  const ms = [];
  const calls = redisCommandCalls(redis.url);
  const cpu = cpuSeconds(redis.pid);
  for (let call = 0; call < adds; call++) {
    const jobs = Array.from({ length: batch }, (_, k) => ({ id: idOf(call * batch + k), data: jobData(k) }));
    const start = performance.now();
    await queue.add(jobs);
    ms.push(performance.now() - start);
  }
  const items = adds * batch;
  return {
    ms_per_call: latencyStats(ms),
    redis_cpu_ms_per_item: round(((cpuSeconds(redis.pid) - cpu) * 1000) / items, 3),
    ...redisCommandsPerItem(calls, redisCommandCalls(redis.url), items),
  };
}

try {
  for (const backlog of backlogs) {
    const queue = new BullMqJobQueue(`bench-${backlog}`, { redisUrl: redis.url, prefix: 'bench' });
    try {
      const fill = performance.now();
      for (let i = 0; i < backlog; i += 1000) {
        const n = Math.min(1000, backlog - i);
        await queue.add(Array.from({ length: n }, (_, k) => ({ id: `backlog-${i + k}`, data: jobData(k) })));
      }
      const fillSeconds = round((performance.now() - fill) / 1000, 1);
      const fresh = await timeAdds(queue, (i) => `new-${i}`);
      // Ids it holds: the oldest waiting ones (deepest in the waiting list) when there are enough, else those just added.
      const again = await timeAdds(queue, (i) => (backlog >= adds * batch ? `backlog-${i}` : `new-${i}`));
      const counts = await queue.counts();
      const run = {
        backlog,
        fill_seconds: fillSeconds,
        new_ids: fresh,
        held_ids: again,
        waiting_after: counts.waiting,
      };
      report.runs.push(run);
      for (const [what, r] of [
        ['new ids ', fresh],
        ['held ids', again],
      ]) {
        log(
          `backlog ${String(backlog).padStart(6)}: ${what}: add() of ${batch} p50 ${r.ms_per_call.p50} ms, p95 ${r.ms_per_call.p95} ms; ` +
            `per item Redis CPU ${r.redis_cpu_ms_per_item} ms, ${r.commands} commands, ${r.scripts} scripts`,
        );
      }
      await queue.obliterate();
    } finally {
      await queue.close();
    }
  }
} finally {
  redis.stop();
}
console.log(JSON.stringify(report));
