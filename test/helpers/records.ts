// Fixtures for the unit tests. Mostly binary: records of the loader <-> daemon
// wire format (native/frame.h, bpf/*.h), written through the layouts
// generated from the C headers (src/loader/layout.generated.ts) and
// writeField. No offset is written here by hand: a header change moves the
// fixtures with it.
import type { Point } from '../../src/lineproto/point';
import { writeField, type Frame } from '../../src/loader/frames';
import {
  DKE_BASH_TRUNCATED,
  DKE_DIR_INCOMING,
  DKE_DIR_OUTGOING,
  DKE_DIR_UNKNOWN,
  DKE_DNS_SIDE_CLIENT,
  DKE_DNS_SIDE_SERVER,
  DKE_FRAME_BASH_LINES,
  DKE_FRAME_BASH_ORIGINS,
  DKE_FRAME_DNS_NAMES,
  DKE_FRAME_DNS_STATS,
  DKE_FRAME_FLOWS,
  dke_bash_line,
  dke_bash_origin,
  dke_dns_name,
  dke_dnsflow_stat,
  dke_flow_delta,
  dke_flow_key,
  dke_flow_stats,
  type Layout,
} from '../../src/loader/layout.generated';

const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

/** 16 bytes in network order from IPv4 text (first 4 bytes) or IPv6 text (with an optional dotted tail). */
export function ipBytes(text: string): Buffer {
  const out = Buffer.alloc(16);
  if (!text.includes(':')) {
    text.split('.').forEach((p, i) => (out[i] = Number(p)));
    return out;
  }
  let s = text;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const r = rest === undefined ? [] : rest ? rest.split(':') : [];
  const groups = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  if (groups.length !== 8) throw new Error(`bad IPv6 text ${text}`);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The family of address text, as the kernel writes it. */
export function familyOf(ip: string): number {
  return ip.includes(':') ? AF_INET6 : AF_INET;
}

/** A field's value: a number (negative: two's complement), bytes, or a string written NUL-terminated when it fits. */
export type FieldValue = number | bigint | Buffer | string;
export type FieldValues<L extends Layout> = Partial<Record<keyof L['fields'] & string, FieldValue>>;

/** Writes `values` into the record of `layout` that starts at `base` of `buf`. */
export function fill<L extends Layout>(buf: Buffer, base: number, layout: L, values: FieldValues<L>): void {
  for (const [name, v] of Object.entries(values) as [string, FieldValue | undefined][]) {
    const f = layout.fields[name];
    if (!f) throw new Error(`the layout has no field ${name}`);
    if (v === undefined) continue;
    const at = base + f.offset;
    if (typeof v === 'string' || Buffer.isBuffer(v)) {
      const bytes = typeof v === 'string' ? Buffer.from(v) : v;
      if (bytes.length > f.size) throw new Error(`${bytes.length} bytes do not fit field ${name} (${f.size})`);
      bytes.copy(buf, at);
      if (typeof v === 'string' && bytes.length < f.size) buf[at + bytes.length] = 0;
    } else {
      writeField(buf, base, f, typeof v === 'number' && v < 0 ? BigInt.asUintN(f.size * 8, BigInt(v)) : v);
    }
  }
}

/** One record of `layout`; bytes no value names are `filler` (stale memory when not 0). */
export function record<L extends Layout>(layout: L, values: FieldValues<L>, filler = 0): Buffer {
  const b = Buffer.alloc(layout.size, filler);
  fill(b, 0, layout, values);
  return b;
}

/** A frame as FrameReader hands it to the daemon: `records` of `layout` back to back. */
export function frameOf(type: number, layout: Layout, records: readonly Buffer[]): Frame {
  for (const r of records) if (r.length !== layout.size) throw new Error(`a record of ${r.length} bytes is not one of ${layout.size}`);
  return { type, count: records.length, payload: Buffer.concat(records) };
}

// ---------------------------------------------------------------- netflow

export type Dir = 'out' | 'in' | 'unknown';
const DIR: Record<Dir, number> = { out: DKE_DIR_OUTGOING, in: DKE_DIR_INCOMING, unknown: DKE_DIR_UNKNOWN };
export const NETNS = 4026531840;

export interface FlowDeltaSpec {
  local: string;
  localPort: number;
  remote: string;
  remotePort: number;
  /** Default: from `local`'s text. */
  family?: number;
  transport?: 'tcp' | 'udp';
  direction?: Dir;
  netns?: number;
  pid?: number;
  comm?: string;
  sent?: number;
  received?: number;
  retransmits?: number;
  established?: number;
  closed?: number;
  rttSumUs?: number;
  rttVarSumUs?: number;
  rttCount?: number;
}

/** One struct dke_flow_delta: a kernel flow key and what changed. */
export function flowDelta(s: FlowDeltaSpec): Buffer {
  const b = Buffer.alloc(dke_flow_delta.size);
  fill(b, dke_flow_delta.fields.key.offset, dke_flow_key, {
    local_addr: ipBytes(s.local),
    remote_addr: ipBytes(s.remote),
    local_port: s.localPort,
    remote_port: s.remotePort,
    family: s.family ?? familyOf(s.local),
    proto: (s.transport ?? 'tcp') === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP,
    direction: DIR[s.direction ?? 'out'],
    netns: s.netns ?? NETNS,
    pid: s.pid ?? 4242,
    comm: s.comm ?? 'curl',
  });
  fill(b, dke_flow_delta.fields.delta.offset, dke_flow_stats, {
    bytes_sent: s.sent ?? 0,
    bytes_received: s.received ?? 0,
    retransmits: s.retransmits ?? 0,
    established: s.established ?? 0,
    closed: s.closed ?? 0,
    rtt_sum_us: s.rttSumUs ?? 0,
    rttvar_sum_us: s.rttVarSumUs ?? 0,
    rtt_count: s.rttCount ?? 0,
  });
  return b;
}

/** A DKE_FRAME_FLOWS frame. */
export function flowsFrame(...deltas: FlowDeltaSpec[]): Frame {
  return frameOf(DKE_FRAME_FLOWS, dke_flow_delta, deltas.map(flowDelta));
}

// ---------------------------------------------------------------- dnsflow

export interface DnsStatSpec {
  client: string;
  /** 0: the loader collapsed it (`*`). */
  clientPort?: number;
  server: string;
  serverPort?: number;
  transport?: 'tcp' | 'udp';
  side?: 'client' | 'server';
  netns?: number;
  /** -1: no answer in time. */
  rcode?: number;
  count?: number;
  latencySumNs?: number;
  latencyMaxNs?: number;
}

/** One struct dke_dnsflow_stat. */
export function dnsStat(s: DnsStatSpec): Buffer {
  return record(dke_dnsflow_stat, {
    client_addr: ipBytes(s.client),
    server_addr: ipBytes(s.server),
    client_port: s.clientPort ?? 0,
    server_port: s.serverPort ?? 53,
    family: familyOf(s.client),
    proto: (s.transport ?? 'udp') === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP,
    side: (s.side ?? 'client') === 'client' ? DKE_DNS_SIDE_CLIENT : DKE_DNS_SIDE_SERVER,
    netns: s.netns ?? NETNS,
    rcode: s.rcode ?? 0,
    count: s.count ?? 1,
    latency_sum_ns: s.latencySumNs ?? 0,
    latency_max_ns: s.latencyMaxNs ?? 0,
  });
}

/** A DKE_FRAME_DNS_STATS frame. */
export function dnsStatsFrame(...stats: DnsStatSpec[]): Frame {
  return frameOf(DKE_FRAME_DNS_STATS, dke_dnsflow_stat, stats.map(dnsStat));
}

/** A DKE_FRAME_DNS_NAMES frame: addresses local clients resolved. */
export function dnsNamesFrame(...names: { addr: string; domain: string; ttlS: number }[]): Frame {
  return frameOf(
    DKE_FRAME_DNS_NAMES,
    dke_dns_name,
    names.map((n) => record(dke_dns_name, { addr: ipBytes(n.addr), family: familyOf(n.addr), ttl_s: n.ttlS, domain: n.domain })),
  );
}

// ---------------------------------------------------------------- bash

export interface BashLineSpec {
  ktimeNs?: bigint;
  pid: number;
  uid: number;
  bytes: Buffer | string;
  truncated?: boolean;
  /** Default: the length of `bytes`. */
  len?: number;
}

/** A struct dke_bash_line as the ring buffer holds it: stale bytes (0x5a) after the NUL. */
export function bashLine(s: BashLineSpec): Buffer {
  const bytes = typeof s.bytes === 'string' ? Buffer.from(s.bytes) : s.bytes;
  const b = record(
    dke_bash_line,
    { ktime_ns: s.ktimeNs ?? 1n, pid: s.pid, uid: s.uid, len: s.len ?? bytes.length, flags: s.truncated ? DKE_BASH_TRUNCATED : 0, line: bytes },
    0x5a,
  );
  if (bytes.length < dke_bash_line.fields.line.size) b[dke_bash_line.fields.line.offset + bytes.length] = 0;
  return b;
}

/** A DKE_FRAME_BASH_LINES frame. */
export function bashLinesFrame(...lines: BashLineSpec[]): Frame {
  return frameOf(DKE_FRAME_BASH_LINES, dke_bash_line, lines.map(bashLine));
}

export interface BashOriginSpec {
  pid: number;
  uid: number;
  user?: string;
  containerId?: string;
}

/** A DKE_FRAME_BASH_ORIGINS frame; the padding after each string is stale (0x5a), as in a reused buffer. */
export function bashOriginsFrame(...origins: BashOriginSpec[]): Frame {
  return frameOf(
    DKE_FRAME_BASH_ORIGINS,
    dke_bash_origin,
    origins.map((o) => record(dke_bash_origin, { pid: o.pid, uid: o.uid, user: o.user ?? '', container_id: o.containerId ?? '' }, 0x5a)),
  );
}

// ---------------------------------------------------------------- points

/** `n` distinct netflow points (dst_port and bytes_read from `from` on), for delivery and spool tests. */
export function netflowPoints(n: number, from = 0): Point[] {
  return Array.from({ length: n }, (_, k) => ({
    measurement: 'netflow',
    tags: { host: 'h1', transport: 'tcp', dst_ip: '10.1.2.3', dst_port: String(1000 + from + k) },
    fields: { bytes_read: from + k },
    timestampNs: 1700000000000000000n + BigInt(from + k),
  }));
}
