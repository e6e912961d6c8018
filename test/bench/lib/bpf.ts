// The collector's own BPF programs and maps, told apart from those of other
// collectors on the same machine (tests, stale pins) by the file descriptors
// of our loader child, and read with bpftool.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

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

/** The netflow telemetry counters (enum dke_telemetry in bpf/netflow.h), summed over CPUs. */
export const TELEMETRY_NAMES = ['tcp_map_full', 'udp_map_full', 'owner_map_full', 'ringbuf_full', 'tcp_closed'] as const;
export type Telemetry = Record<(typeof TELEMETRY_NAMES)[number], number>;

export function readTelemetry(mapId: number): Telemetry {
  const rows = bpftoolJson<{ formatted?: { key: number; values: { cpu: number; value: number }[] } }[]>(['map', 'dump', 'id', String(mapId)]);
  const out = Object.fromEntries(TELEMETRY_NAMES.map((n) => [n, 0])) as Telemetry;
  for (const r of rows) {
    const f = r.formatted;
    if (!f) continue;
    const name = TELEMETRY_NAMES[f.key];
    if (name) out[name] = f.values.reduce((acc, v) => acc + Number(v.value), 0);
  }
  return out;
}

export function telemetryDelta(after: Telemetry, before: Telemetry): Telemetry {
  return Object.fromEntries(TELEMETRY_NAMES.map((n) => [n, after[n] - before[n]])) as Telemetry;
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
