// The loader children's capabilities: which each loader needs and why,
// checking that it has them (one readable sentence if not), narrowing itself
// to them, and dying with its parent. The daemon side (src/daemon/privileges.ts)
// hands down the union of what the enabled loaders need.
import fs from 'node:fs';
import { loadAddon } from './native';
import { LoaderFatal } from './plugins/types';

/** Capability numbers (linux/capability.h). */
export const CAP = {
  DAC_READ_SEARCH: 2,
  SETGID: 6,
  SETUID: 7,
  NET_ADMIN: 12,
  NET_RAW: 13,
  SYS_ADMIN: 21,
  SYS_RESOURCE: 24,
  PERFMON: 38,
  BPF: 39,
} as const;
export type CapName = keyof typeof CAP;

/** What each loader child (by LoaderSpec.plugin) needs to load and attach its programs. */
export const LOADER_CAPABILITIES: Record<string, readonly CapName[]> = {
  // tp_btf programs (BPF, PERFMON); cgroup_skb for UDP flows and dnsflow (NET_ADMIN).
  net: ['BPF', 'PERFMON', 'NET_ADMIN'],
  // A uretprobe on readline: the uprobe PMU refuses CAP_PERFMON alone
  // (perf_event_open EACCES without CAP_SYS_ADMIN, measured on Linux 6.18).
  bash: ['BPF', 'PERFMON', 'SYS_ADMIN'],
};

/**
 * The capabilities `loader` keeps on this kernel: its own set, CAP_SYS_RESOURCE
 * where the process may hold it (BPF memory counts against RLIMIT_MEMLOCK
 * before Linux 5.11), and CAP_SYS_ADMIN instead of CAP_BPF + CAP_PERFMON
 * before Linux 5.8. An unknown loader gets what all of them get.
 */
export function loaderCapabilities(loader: string, capLastCap = readCapLastCap()): CapName[] {
  const own = LOADER_CAPABILITIES[loader] ?? Object.values(LOADER_CAPABILITIES).flat();
  let caps: CapName[] = [...own, 'SYS_RESOURCE'];
  if (capLastCap < CAP.BPF) caps = [...caps.filter((c) => c !== 'BPF' && c !== 'PERFMON'), 'SYS_ADMIN'];
  return [...new Set(caps)];
}

function readCapLastCap(): number {
  try {
    return Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim()) || 40;
  } catch {
    return 40;
  }
}

export function effectiveCapabilities(status = fs.readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/** Throws a LoaderFatal naming what is missing when this process cannot load `loader`'s programs. */
export function checkBpfPrivileges(loader = 'net'): void {
  const eff = effectiveCapabilities();
  const required = loaderCapabilities(loader).filter((c) => c !== 'SYS_RESOURCE');
  const missing = required.filter((c) => (eff & (1n << BigInt(CAP[c]))) === 0n);
  if (missing.length === 0) return;
  const uid = process.getuid?.();
  const names = (cs: readonly string[]): string => cs.map((c) => `CAP_${c}`).join(', ');
  throw new LoaderFatal(
    'PRIVILEGE',
    `loading the ${loader} eBPF programs needs root (or ${names(required)}) but this process (uid ${uid}) lacks ${names(missing)}: run the collector as root` +
      (uid !== 0 ? '; under systemd add them to CapabilityBoundingSet= and AmbientCapabilities=' : ''),
  );
}

/**
 * Keeps only what `loader` needs (the daemon hands every loader the union for
 * all enabled plugins). A loader running as root (--user root) is left alone.
 */
export function narrowToLoader(loader: string): void {
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return;
  const keepCaps = loaderCapabilities(loader).map((c) => CAP[c]);
  loadAddon().dropPrivileges({ uid, gid: process.getgid?.() ?? uid, keepCaps, keepEffective: true });
}

const STARTED_BY = process.ppid;

/**
 * The kernel kills this loader the moment its parent dies, even if the event
 * loop is busy and the IPC 'disconnect' never gets handled: no orphan keeps
 * programs attached that nobody reads.
 */
export function dieWithParent(): void {
  const ppid = loadAddon().setParentDeathSignal(9 /* SIGKILL */);
  // The parent died before the signal was armed: it will never come.
  if (ppid !== STARTED_BY) process.exit(0);
}
