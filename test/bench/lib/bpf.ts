// The collector's own BPF programs and maps, told apart from those of other
// collectors on the same machine (tests, stale pins) by the file descriptors
// of its dke-loader processes, and read with bpftool.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from './util';

export interface BpfObjects {
  progIds: number[];
  mapIds: number[];
}

/** Programs and maps whose fds `pid` holds (from /proc/<pid>/fdinfo). */
export function bpfObjectsOf(pid: number): BpfObjects {
  const progs = new Set<number>();
  const maps = new Set<number>();
  let fds: string[] = [];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return { progIds: [], mapIds: [] };
  }
  for (const fd of fds) {
    let target = '';
    let info = '';
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (!target.startsWith('anon_inode:bpf')) continue;
      info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const prog = /^prog_id:\s+(\d+)/m.exec(info);
    const map = /^map_id:\s+(\d+)/m.exec(info);
    if (prog) progs.add(Number(prog[1]));
    if (map) maps.add(Number(map[1]));
  }
  return { progIds: [...progs].sort((a, b) => a - b), mapIds: [...maps].sort((a, b) => a - b) };
}

function bpftoolJson<T>(args: string[]): T {
  return JSON.parse(execFileSync('bpftool', [...args, '--json'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as T;
}

interface BpftoolProg {
  id: number;
  name: string;
  type: string;
  run_time_ns?: number;
  run_cnt?: number;
  /** Runs the kernel skipped because the program was already running on that CPU (tracing programs). */
  recursion_misses?: number;
}

export interface ProgStat {
  id: number;
  name: string;
  runTimeNs: number;
  runCnt: number;
}

export function allPrograms(): BpftoolProg[] {
  return bpftoolJson<BpftoolProg[]>(['prog', 'show']);
}

export function progStats(ids: readonly number[]): ProgStat[] {
  const want = new Set(ids);
  return allPrograms()
    .filter((p) => want.has(p.id))
    .map((p) => ({ id: p.id, name: p.name, runTimeNs: p.run_time_ns ?? 0, runCnt: p.run_cnt ?? 0 }));
}

/** Our collector's programs are named dke_*; any other instance of them is someone else's collector. */
/**
 * Runs of our programs the kernel skipped because the same program was
 * already running on that CPU (a softirq interrupting it in process context):
 * events the collector never sees and no telemetry of its own can count.
 * Only the programs that missed any, by name.
 */
export function recursionMisses(ids: readonly number[]): Record<string, number> {
  const want = new Set(ids);
  const out: Record<string, number> = {};
  for (const p of allPrograms()) if (want.has(p.id) && p.recursion_misses) out[p.name] = (out[p.name] ?? 0) + p.recursion_misses;
  return out;
}

/** "none" or "dke_tcp_set_state 1788" */
export function missesText(m: Record<string, number>): string {
  const e = Object.entries(m).filter(([, v]) => v > 0);
  return e.length ? e.map(([k, v]) => `${k} ${v}`).join(', ') : 'none';
}

export function foreignCollectorPrograms(ownIds: readonly number[]): number {
  const own = new Set(ownIds);
  return allPrograms().filter((p) => p.name.startsWith('dke_') && !own.has(p.id)).length;
}

interface BpftoolMap {
  id: number;
  name: string;
  type: string;
  max_entries: number;
  bytes_memlock: number;
}

export interface MapInfo {
  id: number;
  name: string;
  type: string;
  maxEntries: number;
  memlockBytes: number;
}

export function mapInfo(ids: readonly number[]): MapInfo[] {
  const want = new Set(ids);
  return bpftoolJson<BpftoolMap[]>(['map', 'show'])
    .filter((m) => want.has(m.id))
    .map((m) => ({ id: m.id, name: m.name, type: m.type, maxEntries: m.max_entries, memlockBytes: m.bytes_memlock }));
}

/** Entries in a map right now (a full dump; fine for a one-off reading). */
export function mapEntries(id: number): number {
  return bpftoolJson<unknown[]>(['map', 'dump', 'id', String(id)]).length;
}

let telemetryNamesCache: string[] | undefined;

/**
 * Names of the netflow telemetry array's slots (enum dke_telemetry in
 * bpf/netflow.h), taken from the loader's own table (kTelemetryNames in
 * native/loader/net_loader.cc) so the benchmark keeps no copy of its own.
 */
export function telemetryNames(): string[] {
  if (telemetryNamesCache) return telemetryNamesCache;
  const file = path.join(repoRoot(), 'native/loader/net_loader.cc');
  const m = /kTelemetryNames\s*\[[^\]]*\]\s*=\s*\{([^}]*)\}/.exec(fs.readFileSync(file, 'utf8'));
  if (!m) throw new Error(`cannot find kTelemetryNames in ${file}: the benchmark reads the telemetry slot names from there`);
  telemetryNamesCache = [...m[1]!.matchAll(/"([^"]*)"/g)].map((x) => x[1]!);
  return telemetryNamesCache;
}

/** Counters by name, summed over CPUs. */
export type Telemetry = Record<string, number>;

/** Counters that mean something was lost or skipped (the rest count work, e.g. dns_packets). */
export function isLoss(name: string): boolean {
  return /_full$|_failed$|_skipped$|_shed$|_gaps$/.test(name);
}

/** Only the loss counters that are not 0, e.g. {flow_map_full: 12}. */
export function losses(t: Telemetry | undefined): Record<string, number> {
  return Object.fromEntries(Object.entries(t ?? {}).filter(([k, v]) => isLoss(k) && v !== 0));
}

export function readTelemetry(mapId: number): Telemetry {
  const names = telemetryNames();
  const rows = bpftoolJson<{ formatted?: { key: number; values?: { cpu: number; value: number }[]; value?: number } }[]>(['map', 'dump', 'id', String(mapId)]);
  const out: Telemetry = Object.fromEntries(names.filter(Boolean).map((n) => [n, 0]));
  for (const r of rows) {
    const f = r.formatted;
    if (!f) continue;
    const name = names[f.key];
    if (!name) continue;
    out[name] = f.values ? f.values.reduce((acc, v) => acc + Number(v.value), 0) : Number(f.value ?? 0);
  }
  return out;
}

export function telemetryDelta(after: Telemetry, before: Telemetry): Telemetry {
  return Object.fromEntries(Object.keys(after).map((n) => [n, after[n]! - (before[n] ?? 0)]));
}

const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

/**
 * Runs `fn` with kernel.bpf_stats_enabled=1 and always puts back what was
 * there. The sysctl is machine-wide; keeping it on only for this phase keeps
 * its own cost (two clock reads per program run) out of every other number.
 */
export async function withBpfStats<T>(fn: () => Promise<T>): Promise<T> {
  const before = fs.readFileSync(STATS_SYSCTL, 'utf8').trim();
  const restore = (): void => {
    try {
      fs.writeFileSync(STATS_SYSCTL, before);
    } catch {
      /* reported by the caller's result if it matters */
    }
  };
  process.once('exit', restore);
  fs.writeFileSync(STATS_SYSCTL, '1');
  try {
    return await fn();
  } finally {
    restore();
    process.removeListener('exit', restore);
  }
}
