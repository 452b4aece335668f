#!/usr/bin/env node
// CPU seconds per thread of one process while a command runs, from /proc (Linux), for finding which threads a
// service's CPU beyond the model goes to:
//   node scripts/bench/thread-cpu.mjs --match gateway/dist/main.js -- node scripts/bench/import.mjs --images 400
// Samples every thread of the newest process whose command line contains --match every 250 ms, and prints, over
// the last busy stretch of that process (more than --busy cores on average per sample, default 0.6: the import
// after start-up), each thread's CPU seconds with its name and its id's offset from the process id. Node names
// every thread of its own `node`: offset 0 is the main thread; the first few after it (created at start) are V8's
// platform workers (garbage collection, compilation), then come libuv's thread pool (fs, sharp's calls) and the
// worker threads in the order they started; `libvips_worker` threads decode and resize images.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

const split = process.argv.indexOf('--');
const { values } = parseArgs({
  args: process.argv.slice(2, split < 0 ? undefined : split),
  options: { match: { type: 'string' }, busy: { type: 'string', default: '0.6' } },
});
const command = split < 0 ? [] : process.argv.slice(split + 1);
if (!values.match || command.length === 0) {
  console.error('usage: node scripts/bench/thread-cpu.mjs --match PATTERN [--busy CORES] -- COMMAND...');
  process.exit(2);
}
const TICKS_PER_S = 100; // USER_HZ on Linux

/** The newest process (highest pid) whose command line contains the pattern, other than this one. */
function findPid() {
  let found = null;
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!pid || pid === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(values.match) && !cmdline.includes('thread-cpu.mjs') && (!found || pid > found)) found = pid;
    } catch {
      // gone
    }
  }
  return found;
}

/** { tid: { name, ticks } } of every thread of pid now. */
function threads(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[tid] = { name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), ticks: +fields[11] + +fields[12] };
    } catch {
      // exited between listing and reading
    }
  }
  return out;
}

const samples = []; // { pid, t, threads }
const timer = setInterval(() => {
  const pid = findPid();
  if (!pid) return;
  try {
    samples.push({ pid, t: performance.now() / 1000, threads: threads(pid) });
  } catch {
    // the process exited
  }
}, 250);

const child = spawn(command[0], command.slice(1), { stdio: 'inherit' });
child.on('exit', (code) => {
  clearInterval(timer);
  report();
  process.exit(code ?? 1);
});

function report() {
  // The last process seen, and its last stretch of samples above --busy cores.
  const pid = samples.at(-1)?.pid;
  const mine = samples.filter((s) => s.pid === pid);
  const total = (s) => Object.values(s.threads).reduce((sum, t) => sum + t.ticks, 0);
  const busy = (i) => (total(mine[i]) - total(mine[i - 1])) / TICKS_PER_S / (mine[i].t - mine[i - 1].t);
  let end = mine.length - 1;
  while (end > 0 && busy(end) <= Number(values.busy)) end--;
  let start = end;
  while (start > 1 && busy(start - 1) > Number(values.busy)) start--;
  if (end <= 0) {
    console.error(`thread-cpu: no busy stretch of a process matching '${values.match}' was sampled`);
    return;
  }
  const [from, to] = [mine[start - 1], mine[end]];
  const seconds = to.t - from.t;
  const cores = availableParallelism();
  console.error(
    `\nthread-cpu: pid ${pid}, busy ${seconds.toFixed(2)} s (${(cores * seconds).toFixed(1)} core-s on ${cores} cores)`,
  );
  let sum = 0;
  const rows = Object.entries(to.threads)
    .map(([tid, t]) => ({
      offset: Number(tid) - pid,
      name: t.name,
      s: (t.ticks - (from.threads[tid]?.ticks ?? 0)) / TICKS_PER_S,
    }))
    .filter((r) => r.s >= 0.02)
    .sort((a, b) => a.offset - b.offset);
  for (const r of rows) {
    sum += r.s;
    console.error(`thread-cpu: ${String(r.offset).padStart(4)} ${r.name.padEnd(16)} ${r.s.toFixed(2)} s`);
  }
  console.error(`thread-cpu: all threads ${sum.toFixed(2)} s`);
}
