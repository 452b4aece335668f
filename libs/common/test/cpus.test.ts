import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { availableCpus, type CgroupFiles, cgroupCpuLimit, loadConfig } from '@facesearch/common';
import { describe, expect, it } from 'vitest';

/** A fake /proc/self/cgroup, /proc/self/mountinfo and the cgroup files under them. */
function fake(cgroup: string, mounts: string[], tree: Record<string, string>): CgroupFiles {
  const files: Record<string, string> = {
    ...tree,
    '/proc/self/cgroup': cgroup,
    '/proc/self/mountinfo': mounts.join('\n'),
  };
  return { read: (path) => files[path] ?? null };
}

const V2_ROOT_MOUNT = '30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate';
const V1_CPU_MOUNT = '31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct';
const V1_CPUSET_MOUNT = '32 25 0:28 / /sys/fs/cgroup/cpuset rw,nosuid shared:10 - cgroup cgroup rw,cpuset';

describe('cgroupCpuLimit', () => {
  it('reads a container limit from cgroup v2 cpu.max (docker --cpus 2), rounding a fraction down to at least 1', () => {
    expect(cgroupCpuLimit(fake('0::/\n', [V2_ROOT_MOUNT], { '/sys/fs/cgroup/cpu.max': '200000 100000\n' }))).toBe(2);
    expect(cgroupCpuLimit(fake('0::/\n', [V2_ROOT_MOUNT], { '/sys/fs/cgroup/cpu.max': '250000 100000\n' }))).toBe(2);
    expect(cgroupCpuLimit(fake('0::/\n', [V2_ROOT_MOUNT], { '/sys/fs/cgroup/cpu.max': '50000 100000\n' }))).toBe(1);
  });

  it('has no limit for "max", a missing file or no cgroup file system', () => {
    expect(cgroupCpuLimit(fake('0::/\n', [V2_ROOT_MOUNT], { '/sys/fs/cgroup/cpu.max': 'max 100000\n' }))).toBeNull();
    expect(cgroupCpuLimit(fake('0::/\n', [V2_ROOT_MOUNT], {}))).toBeNull();
    expect(cgroupCpuLimit({ read: () => null })).toBeNull();
  });

  it("takes the smallest quota along the process's cgroup path (a pod's limit above its container's)", () => {
    const files = fake('0::/kubepods/pod1/ctr\n', [V2_ROOT_MOUNT], {
      '/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': 'max 100000',
      '/sys/fs/cgroup/kubepods/pod1/cpu.max': '300000 100000',
      '/sys/fs/cgroup/kubepods/cpu.max': '800000 100000',
    });
    expect(cgroupCpuLimit(files)).toBe(3);
  });

  it('reads cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us of the cpu controller (-1: none)', () => {
    const cgroup = '12:cpuset:/\n4:cpu,cpuacct:/docker/abc\n0::/\n';
    const mounts = [V1_CPUSET_MOUNT, V1_CPU_MOUNT];
    const dir = '/sys/fs/cgroup/cpu,cpuacct/docker/abc';
    const limited = { [`${dir}/cpu.cfs_quota_us`]: '400000\n', [`${dir}/cpu.cfs_period_us`]: '100000\n' };
    expect(cgroupCpuLimit(fake(cgroup, mounts, limited))).toBe(4);
    const unlimited = { [`${dir}/cpu.cfs_quota_us`]: '-1\n', [`${dir}/cpu.cfs_period_us`]: '100000\n' };
    expect(cgroupCpuLimit(fake(cgroup, mounts, unlimited))).toBeNull();
  });

  it("finds the container's own cgroup at the mount's root when the mount shows only that part", () => {
    // Inside a container without a cgroup namespace the path names the host's hierarchy; the mount's root is it.
    const mount = '40 35 0:27 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu';
    const files = fake('3:cpu:/docker/abc\n', [mount], {
      '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '200000',
      '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000',
    });
    expect(cgroupCpuLimit(files)).toBe(2);
  });
});

describe('availableCpus', () => {
  it('is at least 1 and at most the cores this process may run on', () => {
    const n = availableCpus();
    expect(n).toBeGreaterThanOrEqual(1);
    expect(n).toBeLessThanOrEqual(os.availableParallelism());
  });

  // A real cgroup: needs root and the cgroup v1 cpu controller mounted writable (as on this project's dev VM).
  const V1_CPU = '/sys/fs/cgroup/cpu';
  const canLimit = (() => {
    try {
      accessSync(join(V1_CPU, 'cgroup.procs'), constants.W_OK);
      return process.getuid?.() === 0;
    } catch {
      return false;
    }
  })();
  it.skipIf(!canLimit)(
    'counts 1 in a real cgroup with a 1-CPU quota (skipped unless root with a writable cgroup v1 cpu hierarchy)',
    () => {
      const dir = join(V1_CPU, `facesearch-test-${process.pid}`);
      mkdirSync(dir);
      try {
        writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(100_000)); // one period's worth: 1 CPU
        const common = join(__dirname, '../dist/index.js');
        const script = `const c = require(${JSON.stringify(common)}); console.log(c.availableCpus(), require('os').availableParallelism())`;
        // The shell moves itself into the cgroup, then becomes node.
        const run = spawnSync('sh', ['-c', `echo $$ > ${dir}/cgroup.procs && exec node -e "$0"`, script], {
          encoding: 'utf8',
        });
        expect(run.stderr).toBe('');
        const [cpus, affinity] = run.stdout.trim().split(' ').map(Number);
        expect(cpus).toBe(1);
        expect(affinity).toBe(os.availableParallelism());
      } finally {
        rmdirSync(dir);
      }
    },
  );

  it('sizes ENGINE_WORKERS=auto', () => {
    expect(loadConfig({ ENGINE_WORKERS: 'auto' }).engineWorkers).toBe(availableCpus());
  });
});
