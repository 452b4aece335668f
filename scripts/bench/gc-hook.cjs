// Garbage-collection pauses of every app process (main thread) of a run, by kind, written at exit:
//   mkdir -p /tmp/gc && GC_DIR=/tmp/gc NODE_OPTIONS="--require $PWD/scripts/bench/gc-hook.cjs" \
//     node scripts/bench/import.mjs --mode embedded --images 400
//   cat /tmp/gc/gateway-<pid>.json   -> {"minor":{"n":23,"ms":106.8},"incremental":{"n":8,"ms":135.3},...}
// Only apps/*/dist/main.js processes are observed; the file is written when the process exits normally.
const { PerformanceObserver } = require('node:perf_hooks');
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { isMainThread } = require('node:worker_threads');

const app = /apps\/(\w+)\/dist\/main\.js$/.exec(process.argv[1] ?? '')?.[1];
if (isMainThread && app && process.env.GC_DIR) {
  const KINDS = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' };
  const pauses = {};
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = KINDS[entry.detail?.kind] ?? String(entry.detail?.kind);
      pauses[kind] ??= { n: 0, ms: 0 };
      pauses[kind].n++;
      pauses[kind].ms = Math.round((pauses[kind].ms + entry.duration) * 10) / 10;
    }
  }).observe({ entryTypes: ['gc'] });
  process.on('exit', () =>
    writeFileSync(join(process.env.GC_DIR, `${app}-${process.pid}.json`), JSON.stringify(pauses)),
  );
}
