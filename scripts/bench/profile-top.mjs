#!/usr/bin/env node
// Busy time of a .cpuprofile (from profile-hook.cjs or --cpu-prof) and its top functions by self and inclusive time.
// Usage: node scripts/bench/profile-top.mjs FILE [N]
import { readFileSync } from 'node:fs';

const [file, count = '25'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node scripts/bench/profile-top.mjs FILE.cpuprofile [N]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const time = new Map();
for (const [i, id] of profile.samples.entries()) time.set(id, (time.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));

const label = (n) =>
  `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*node_modules\/(\.pnpm\/)?/, '').replace(/^file:\/\/.*?\/(apps|libs)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
const self = new Map();
const inclusive = new Map();
let total = 0;
for (const n of profile.nodes) {
  const t = time.get(n.id) ?? 0;
  if (!t) continue;
  total += t;
  self.set(label(n), (self.get(label(n)) ?? 0) + t);
  const seen = new Set();
  for (let cur = n.id; cur !== undefined; cur = parent.get(cur)) {
    const k = label(byId.get(cur));
    if (!seen.has(k)) inclusive.set(k, (inclusive.get(k) ?? 0) + t);
    seen.add(k);
  }
}
const idle = self.get('(idle) :0') ?? 0;
const ms = (us) => `${(us / 1000).toFixed(0).padStart(7)} ms`;
const top = (m) =>
  [...m.entries()]
    .filter(([k]) => !k.startsWith('(idle)') && !k.startsWith('(root)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, Number(count));
console.log(`${file}: ${ms(total)} sampled, ${ms(total - idle)} busy`);
console.log('self time:');
for (const [k, v] of top(self)) console.log(`${ms(v)}  ${k}`);
console.log('inclusive time:');
for (const [k, v] of top(inclusive)) console.log(`${ms(v)}  ${k}`);
