// The loaders' capabilities: which each loader needs and why. The daemon
// (src/daemon/privileges.ts) hands down the union of what the enabled loaders
// need; each dke-loader narrows itself to its own (native/loader/main.cc) and
// says in one line what it lacks.
import fs from 'node:fs';

/** Capability numbers (linux/capability.h). */
export const CAP = {
  DAC_READ_SEARCH: 2,
  SETGID: 6,
  SETUID: 7,
  NET_ADMIN: 12,
  NET_RAW: 13,
  SYS_PTRACE: 19,
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
  // Finding bash in containers opens /proc/<pid>/exe and /proc/<pid>/root of
  // other users' shells: the kernel's ptrace access check (PTRACE_MODE_READ)
  // lets only CAP_SYS_PTRACE past a uid that is not ours (CAP_SYS_ADMIN and
  // CAP_DAC_READ_SEARCH do not; measured on Linux 6.18). The loader drops it
  // when --bash-path names the binaries (nothing is searched for then).
  bash: ['BPF', 'PERFMON', 'SYS_ADMIN', 'SYS_PTRACE'],
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

