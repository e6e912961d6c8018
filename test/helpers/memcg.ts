// Memory cgroups for the tests and the bench: where the memory controller's
// hierarchy is, what a cgroup is charged, and starting a command inside one
// (as a service manager starts a service in its own).
import fs from 'node:fs';

/** The memory controller's hierarchy: its own (cgroup v1) or the unified one; undefined when neither. */
export function memcgRoot(): { dir: string; v1: boolean } | undefined {
  const mounts = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '));
  const v1 = mounts.find((m) => m[2] === 'cgroup' && m[3]?.split(',').includes('memory'));
  if (v1) return { dir: v1[1], v1: true };
  const v2 = mounts.find((m) => m[2] === 'cgroup2');
  if (v2 && fs.readFileSync(`${v2[1]}/cgroup.controllers`, 'utf8').split(/\s+/).includes('memory')) return { dir: v2[1], v1: false };
  return undefined;
}

/** Kernel memory charged to the memory cgroup at `dir` (slab objects, where socket storage lives). */
export function slabBytes(dir: string, v1: boolean): number {
  if (v1) return Number(fs.readFileSync(`${dir}/memory.kmem.usage_in_bytes`, 'utf8'));
  return Number(/^slab (\d+)$/m.exec(fs.readFileSync(`${dir}/memory.stat`, 'utf8'))?.[1] ?? NaN);
}

/** `command` prefixed so that it runs in the cgroup at `dir` from its first instruction (same pid). */
export function inCgroup(dir: string, command: string[]): string[] {
  return ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', dir, ...command];
}

/**
 * `command` prefixed so that it sees the cgroup hierarchy at `dir` read-only
 * (a mount namespace of its own), as under systemd's ProtectControlGroups=yes.
 */
export function withReadOnlyCgroups(dir: string, command: string[]): string[] {
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -o remount,bind,ro "$0" && exec "$@"', dir, ...command];
}
