// Bash lines -> DataKit logging points, as upstream shaped them: measurement
// `bash`, string fields pid/user/cmd/message, message
// "<RFC3339 time> pid:`<pid>` user:`<user>` cmd:`<cmd>`" (upstream's
// backquotes kept, so existing Pipeline/grok rules still match), plus
// status=info. A line cut at the kernel limit carries cmd_truncated=true; a
// shell in a container whose cgroup path names it carries a container_id tag.
import type { Point } from '../lineproto/point';
import { BashOrigins } from './origins';
import type { BashLineRecord } from './record';
import type { Redactor } from './redact';
import type { UserNames } from './users';

export const BASH_MEASUREMENT = 'bash';
export const BASH_INPUT = 'ebpf-bash';

export interface BashEntry {
  /** Wall-clock time the line was read, ns since the epoch. */
  timeNs: bigint;
  pid: number;
  user: string;
  /** The line after redaction. */
  cmd: string;
  truncated: boolean;
  /** The container the shell runs in, when its cgroup path names one. */
  containerId?: string;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** Go's time.RFC3339 in local time, as upstream printed it: 2006-01-02T15:04:05+08:00 (Z for UTC). */
export function formatRfc3339(d: Date): string {
  const off = -d.getTimezoneOffset();
  const zone = off === 0 ? 'Z' : `${off > 0 ? '+' : '-'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  return (
    `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${zone}`
  );
}

export function bashMessage(e: BashEntry): string {
  const when = formatRfc3339(new Date(Number(e.timeNs / 1_000_000n)));
  return `${when} pid:\`${e.pid}\` user:\`${e.user}\` cmd:\`${e.cmd}\``;
}

export function bashPoint(e: BashEntry, commonTags: Record<string, string>): Point {
  const pid = String(e.pid);
  return {
    measurement: BASH_MEASUREMENT,
    tags: { ...commonTags, source: BASH_MEASUREMENT, ...(e.containerId ? { container_id: e.containerId } : {}) },
    fields: {
      pid,
      user: e.user,
      cmd: e.cmd,
      message: bashMessage(e),
      status: 'info',
      ...(e.truncated ? { cmd_truncated: true } : {}),
    },
    timestampNs: e.timeNs,
  };
}

export interface Clocks {
  /** Wall clock, ns since the epoch. */
  wallNs(): bigint;
  /** CLOCK_MONOTONIC ns, the clock of bpf_ktime_get_ns (libuv's hrtime on Linux). */
  monoNs(): bigint;
}

export const SYSTEM_CLOCKS: Clocks = {
  wallNs: () => BigInt(Date.now()) * 1_000_000n,
  monoNs: () => process.hrtime.bigint(),
};

/**
 * Turns raw records into entries: the wall time of each line, its user's
 * name (the container's, when the loader gave the shell's origin), the
 * redacted command. Lines with nothing but blanks are dropped.
 */
export async function toEntries(
  records: readonly BashLineRecord[],
  users: UserNames,
  redactor: Redactor,
  origins: BashOrigins = new BashOrigins(),
  clocks: Clocks = SYSTEM_CLOCKS,
): Promise<BashEntry[]> {
  const offset = clocks.wallNs() - clocks.monoNs();
  const out: BashEntry[] = [];
  for (const r of records) {
    if (r.line.trim() === '') continue;
    const origin = origins.get(r.pid);
    out.push({
      timeNs: offset + r.ktimeNs,
      pid: r.pid,
      user: origin && origin.user !== '' && origin.uid === r.uid ? origin.user : await users.name(r.uid),
      cmd: redactor.apply(r.line),
      truncated: r.truncated,
      ...(origin?.containerId ? { containerId: origin.containerId } : {}),
    });
  }
  return out;
}
