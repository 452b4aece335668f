import { readFileSync } from 'node:fs';
import os from 'node:os';

/**
 * The CPUs this process may use: the cores it may run on (affinity), capped by its cgroup's CPU quota rounded down
 * (at least 1), as libuv 1.49+ and Rust's available_parallelism() count them. Node 20's availableParallelism()
 * (libuv 1.46) sees only the affinity, so in a container limited with `docker run --cpus 2` or a Kubernetes CPU
 * limit on a 32-core host it answers 32: sized by it, each replica would start an engine thread (and its ONNX
 * sessions) per host core and make them take turns on its 2 CPUs' worth of time.
 */
export function availableCpus(): number {
  const limit = cgroupCpuLimit();
  return Math.max(1, Math.min(os.availableParallelism(), limit ?? Number.POSITIVE_INFINITY));
}

/** How cgroupCpuLimit reads /proc/self/cgroup, /proc/self/mountinfo and cgroup files; tests give fake contents. */
export interface CgroupFiles {
  /** A file's text, or null when it cannot be read. */
  read(path: string): string | null;
}

const realFiles: CgroupFiles = {
  read(path) {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return null;
    }
  },
};

/**
 * The CPU quota of this process's cgroup and its ancestors (the smallest), in whole CPUs (at least 1), from cgroup v2
 * `cpu.max` or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`; null when there is none or it cannot be read (not
 * Linux, no cgroup file system).
 */
export function cgroupCpuLimit(files: CgroupFiles = realFiles): number | null {
  const cgroup = files.read('/proc/self/cgroup');
  const mountinfo = files.read('/proc/self/mountinfo');
  if (!cgroup || !mountinfo) return null;
  let smallest = Number.POSITIVE_INFINITY;
  for (const { version, path, mountPoint } of cpuCgroupDirs(cgroup, mountinfo)) {
    for (let d = path; ; d = parentOf(d)) {
      const quota = version === 2 ? quotaV2(files.read(`${d}/cpu.max`)) : quotaV1(files, d);
      if (quota !== null) smallest = Math.min(smallest, quota);
      if (d === mountPoint || d === '/') break;
    }
  }
  return Number.isFinite(smallest) ? Math.max(1, Math.floor(smallest)) : null;
}

/** "200000 100000" -> 2 CPUs; "max 100000" -> none. */
function quotaV2(text: string | null): number | null {
  const [quota, period] = (text ?? '').trim().split(/\s+/);
  const q = Number(quota);
  const p = Number(period ?? 100_000);
  return quota && quota !== 'max' && q > 0 && p > 0 ? q / p : null;
}

/** cpu.cfs_quota_us -1: none. */
function quotaV1(files: CgroupFiles, dir: string): number | null {
  const q = Number(files.read(`${dir}/cpu.cfs_quota_us`)?.trim());
  const p = Number(files.read(`${dir}/cpu.cfs_period_us`)?.trim());
  return q > 0 && p > 0 ? q / p : null;
}

const parentOf = (dir: string) => dir.slice(0, Math.max(0, dir.lastIndexOf('/'))) || '/';

/**
 * The directories of this process's CPU cgroup: per mounted hierarchy (v2, or v1 with the `cpu` controller), the
 * mount point joined with the process's path inside the hierarchy, less the part the mount does not show (in a
 * container, its own cgroup is usually the mount's root).
 */
function cpuCgroupDirs(cgroup: string, mountinfo: string): Array<{ version: 1 | 2; path: string; mountPoint: string }> {
  const paths = new Map<string, string>(); // "v2" or a v1 controller -> the process's path
  for (const line of cgroup.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === '') paths.set('v2', m[2] as string);
    for (const controller of (m[1] as string).split(',')) if (controller) paths.set(controller, m[2] as string);
  }
  const out: Array<{ version: 1 | 2; path: string; mountPoint: string }> = [];
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mount-point options [optional fields] - fstype source super-options
    const [before, after] = line.split(' - ');
    if (!before || !after) continue;
    const fields = before.split(' ');
    const [fstype, , superOptions = ''] = after.split(' ');
    const root = fields[3];
    const mountPoint = fields[4];
    if (!root || !mountPoint) continue;
    const version = fstype === 'cgroup2' ? 2 : fstype === 'cgroup' && superOptions.split(',').includes('cpu') ? 1 : 0;
    if (version === 0) continue;
    const path = paths.get(version === 2 ? 'v2' : 'cpu');
    if (path === undefined) continue;
    // The mount shows the hierarchy from `root` down; a path outside it is not visible here.
    if (path !== root && !path.startsWith(root === '/' ? '/' : `${root}/`)) continue;
    const inside = root === '/' ? path : path.slice(root.length);
    out.push({ version, path: inside === '/' || inside === '' ? mountPoint : `${mountPoint}${inside}`, mountPoint });
  }
  return out;
}
