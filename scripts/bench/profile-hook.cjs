// CPU profile of every app process (main thread) of a run, for finding where non-model time goes:
//   mkdir -p /tmp/prof && PROFILE_DIR=/tmp/prof NODE_OPTIONS="--require $PWD/scripts/bench/profile-hook.cjs" \
//     node scripts/bench/import.mjs --mode distributed --topologies 1x1/inline
//   node scripts/bench/profile-top.mjs /tmp/prof/detector-<pid>.cpuprofile
// (`--cpu-prof` itself is refused in NODE_OPTIONS.) Only apps/*/dist/main.js processes are profiled; the profile
// is written when the process exits normally (the stack stops them with SIGTERM, which they handle).
const inspector = require('node:inspector');
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { isMainThread } = require('node:worker_threads');

const app = /apps\/(\w+)\/dist\/main\.js$/.exec(process.argv[1] ?? '')?.[1];
if (isMainThread && app) {
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  session.post('Profiler.start');
  process.on('exit', () => {
    // The in-thread inspector session answers synchronously, so this still runs inside 'exit'.
    session.post('Profiler.stop', (err, result) => {
      if (!err) {
        const file = join(process.env.PROFILE_DIR ?? '/tmp', `${app}-${process.pid}.cpuprofile`);
        writeFileSync(file, JSON.stringify(result.profile));
      }
    });
  });
}
