// CPU time and memory of processes, straight from /proc.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let clkTck: number | undefined;
/** Clock ticks per second of the utime/stime fields (USER_HZ, 100 on Linux). */
export function clockTicks(): number {
  clkTck ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return clkTck;
}

export interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime of the process (all its threads, living and exited), seconds. */
  cpuSeconds: number;
  /** cutime + cstime: children it has waited for, seconds. */
  childrenCpuSeconds: number;
}

/** Parses /proc/<pid>/stat text; comm may hold spaces and parentheses, so fields count from the last ')'. */
export function parseStat(text: string, ticks: number): ProcStat {
  const close = text.lastIndexOf(')');
  const pid = Number(text.slice(0, text.indexOf(' ')));
  // fields[0] is field 3 (state) of proc(5)
  const f = text.slice(close + 2).trim().split(/\s+/).map(Number);
  return {
    pid,
    ppid: f[1]!,
    cpuSeconds: (f[11]! + f[12]!) / ticks,
    childrenCpuSeconds: (f[13]! + f[14]!) / ticks,
  };
}

export function procStat(pid: number): ProcStat | undefined {
  try {
    return parseStat(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'), clockTicks());
  } catch {
    return undefined; // gone
  }
}

/** Resident set size in bytes (VmRSS), 0 when the process is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Live child processes of `pid`. */
export function childrenOf(pid: number): number[] {
  try {
    // Needs CONFIG_PROC_CHILDREN; every thread lists its own children.
    const tasks = fs.readdirSync(`/proc/${pid}/task`);
    const kids = new Set<number>();
    for (const t of tasks) {
      const text = fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      for (const k of text.split(/\s+/)) if (k) kids.add(Number(k));
    }
    return [...kids];
  } catch {
    const kids: number[] = [];
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      if (procStat(Number(d))?.ppid === pid) kids.push(Number(d));
    }
    return kids;
  }
}

/**
 * CPU seconds of a process and all its descendants so far, including
 * children that already exited and were waited for (a restarted loader).
 */
export function treeCpuSeconds(pid: number): number {
  const st = procStat(pid);
  if (!st) return NaN;
  let total = st.cpuSeconds + st.childrenCpuSeconds;
  for (const k of childrenOf(pid)) {
    const t = treeCpuSeconds(k);
    if (Number.isFinite(t)) total += t;
  }
  return total;
}

/** RSS of a process and its live descendants, bytes. */
export function treeRssBytes(pid: number): number {
  return rssBytes(pid) + childrenOf(pid).reduce((acc, k) => acc + treeRssBytes(k), 0);
}

/** Load averages (1, 5, 15 min). */
export function loadAverage(): number[] {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

export interface CpuCounters {
  busy: number;
  total: number;
}

/**
 * Share of all CPUs that was busy (not idle/iowait) since `since`, from
 * /proc/stat; without `since` it just returns the counters to start from.
 */
export function machineBusyPercent(since?: CpuCounters): CpuCounters & { percent: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const busy = total - f[3]! - f[4]!;
  const percent = since ? ((busy - since.busy) / Math.max(1, total - since.total)) * 100 : NaN;
  return { busy, total, percent };
}
