// The host network map, built from netflow totals per (host, src_ip, dst_ip,
// direction): pure, so the rules are unit-tested.
//   - nodes are the reporting hosts; a host's addresses are the src_ip of its own
//     flows (src is always the reporting side); loopback addresses are nobody's;
//   - a flow's peer is the host that owns its dst_ip (several owners: the first
//     by name), else "outside" (one node, or one per /24, or hidden);
//   - one edge per (reporting host, peer, direction), drawn from the reporting
//     host to the peer, incoming and outgoing apart; traffic to itself is no edge;
//   - node size: bytes the host received; edge width: bytes both ways;
//   - fill: five equal bands between min and max of the fill metric over nodes
//     and edges (or a custom range); a value outside the range is band -1
//     (grey), no value is null.

import { METRICS, type Metric, type Metrics } from './plan';

/** One row of the map query: sums, so rows can be added exactly. */
export interface FlowTotals {
  host: string;
  src_ip: string | null;
  dst_ip: string | null;
  direction: string | null;
  bytes_written: number;
  bytes_read: number;
  retransmits: number;
  tcp_established: number;
  tcp_closed: number;
  rtt_sum: number;
  rtt_n: number;
  rtt_var_sum: number;
  rtt_var_n: number;
}

export type OutsideMode = 'one' | '24' | 'hide';
export const FILL_METRICS = ['rtt', 'rtt_var', 'retransmits', 'tcp_established', 'tcp_closed'] as const;
export type FillMetric = (typeof FILL_METRICS)[number];

export interface MapNode {
  id: string;
  /** 'host' for a reporting host, 'outside' for addresses of no reporting host. */
  kind: 'host' | 'outside';
  addresses: string[];
  metrics: Metrics;
  /** Bytes received: what sizes the node. */
  inbound: number;
  band: number | null;
  matched: boolean;
}

export interface MapEdge {
  source: string;
  target: string;
  direction: string;
  metrics: Metrics;
  /** Bytes both ways: what sizes the edge. */
  traffic: number;
  band: number | null;
}

export interface MapGraph {
  nodes: MapNode[];
  edges: MapEdge[];
  fill: { metric: FillMetric; min: number | null; max: number | null; bands: [number, number][] };
}

export interface MapOptions {
  outside?: OutsideMode;
  fill?: FillMetric;
  /** Custom range for the fill bands; default the min and max of the nodes' values. */
  min?: number;
  max?: number;
  /** Keep hosts whose name contains this (any case), their peers and the edges between. */
  q?: string;
}

export const OUTSIDE = 'outside';

/** The summable part of a row. */
type Acc = Omit<FlowTotals, 'host' | 'src_ip' | 'dst_ip' | 'direction'>;

const zero = (): Acc => ({ bytes_written: 0, bytes_read: 0, retransmits: 0, tcp_established: 0, tcp_closed: 0, rtt_sum: 0, rtt_n: 0, rtt_var_sum: 0, rtt_var_n: 0 });

function add(a: Acc, r: Acc): void {
  for (const k of Object.keys(a) as (keyof Acc)[]) a[k] += r[k] ?? 0;
}

/** The seven metrics of accumulated sums: means for rtt and rtt_var, sums for the rest. */
export function metricsOf(a: Acc): Metrics {
  return {
    bytes_written: a.bytes_written,
    bytes_read: a.bytes_read,
    rtt: a.rtt_n > 0 ? a.rtt_sum / a.rtt_n : null,
    rtt_var: a.rtt_var_n > 0 ? a.rtt_var_sum / a.rtt_var_n : null,
    tcp_established: a.tcp_established,
    retransmits: a.retransmits,
    tcp_closed: a.tcp_closed,
  };
}

export function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1' || ip.startsWith('::ffff:127.');
}

/** The /24 of an IPv4 address; other addresses have none. */
function slash24(ip: string): string | undefined {
  const m = /^(\d+\.\d+\.\d+)\.\d+$/.exec(ip);
  return m ? `${m[1]}.0/24` : undefined;
}

/** Band 0..bands-1 of `v` in [lo, hi] split into equal parts; -1 outside; null without a value. */
export function bandOf(v: number | null, lo: number, hi: number, bands = 5): number | null {
  if (v === null || !Number.isFinite(v)) return null;
  if (v < lo || v > hi) return -1;
  if (hi <= lo) return 0;
  return Math.min(bands - 1, Math.floor(((v - lo) / (hi - lo)) * bands));
}

/** Which reporting host owns each address: learnt from the src_ip of every host's own flows. */
export function addressOwners(rows: readonly Pick<FlowTotals, 'host' | 'src_ip'>[]): Map<string, string> {
  const owners = new Map<string, string[]>();
  for (const r of rows) {
    if (!r.src_ip || isLoopback(r.src_ip)) continue;
    const list = owners.get(r.src_ip) ?? [];
    if (!list.includes(r.host)) list.push(r.host);
    owners.set(r.src_ip, list);
  }
  return new Map([...owners].map(([ip, hosts]) => [ip, hosts.sort()[0]!]));
}

export function buildMap(rows: readonly FlowTotals[], owners: ReadonlyMap<string, string>, opts: MapOptions = {}): MapGraph {
  const outside = opts.outside ?? 'one';
  const nodeAcc = new Map<string, { kind: 'host' | 'outside'; acc: Acc; addresses: Set<string> }>();
  const edgeAcc = new Map<string, { source: string; target: string; direction: string; acc: Acc }>();
  const node = (id: string, kind: 'host' | 'outside') => {
    let n = nodeAcc.get(id);
    if (!n) nodeAcc.set(id, (n = { kind, acc: zero(), addresses: new Set() }));
    return n;
  };
  for (const [ip, host] of owners) node(host, 'host').addresses.add(ip);

  for (const r of rows) {
    const self = node(r.host, 'host');
    add(self.acc, r);
    const dst = r.dst_ip ?? '';
    let peer: string | undefined;
    let peerKind: 'host' | 'outside' = 'host';
    if (isLoopback(dst)) peer = r.host;
    else if (owners.has(dst)) peer = owners.get(dst)!;
    else if (outside !== 'hide') {
      peerKind = 'outside';
      peer = outside === '24' ? (slash24(dst) ?? OUTSIDE) : OUTSIDE;
    }
    if (peer === undefined || peer === r.host) continue;
    if (peerKind === 'outside') {
      // The outside node is seen from the other side: what a host sent, it received.
      const o = node(peer, 'outside');
      o.addresses.add(dst);
      add(o.acc, { ...r, bytes_written: r.bytes_read, bytes_read: r.bytes_written });
    }
    const direction = r.direction ?? '';
    const key = `${r.host}\u0000${peer}\u0000${direction}`;
    let e = edgeAcc.get(key);
    if (!e) edgeAcc.set(key, (e = { source: r.host, target: peer, direction, acc: zero() }));
    add(e.acc, r);
  }

  let nodes: MapNode[] = [...nodeAcc].map(([id, n]) => {
    const metrics = metricsOf(n.acc);
    return { id, kind: n.kind, addresses: [...n.addresses].sort(), metrics, inbound: metrics.bytes_read ?? 0, band: null, matched: false };
  });
  let edges: MapEdge[] = [...edgeAcc.values()].map((e) => {
    const metrics = metricsOf(e.acc);
    return { source: e.source, target: e.target, direction: e.direction, metrics, traffic: e.acc.bytes_read + e.acc.bytes_written, band: null };
  });

  const q = opts.q?.trim().toLowerCase();
  if (q) {
    const hit = new Set(nodes.filter((n) => n.kind === 'host' && n.id.toLowerCase().includes(q)).map((n) => n.id));
    edges = edges.filter((e) => hit.has(e.source) || hit.has(e.target));
    const keep = new Set([...hit, ...edges.flatMap((e) => [e.source, e.target])]);
    nodes = nodes.filter((n) => keep.has(n.id));
    for (const n of nodes) n.matched = hit.has(n.id);
  }

  const metric: FillMetric = opts.fill ?? 'rtt';
  // The automatic range spans nodes and edges alike, so only a custom range greys anything.
  const values = [...nodes, ...edges].map((x) => x.metrics[metric]).filter((v): v is number => v !== null);
  const min = opts.min ?? (values.length ? Math.min(...values) : null);
  const max = opts.max ?? (values.length ? Math.max(...values) : null);
  const bands: [number, number][] = [];
  if (min !== null && max !== null) {
    for (let i = 0; i < 5; i++) bands.push([min + ((max - min) * i) / 5, min + ((max - min) * (i + 1)) / 5]);
    for (const n of nodes) n.band = bandOf(n.metrics[metric], min, max);
    for (const e of edges) e.band = bandOf(e.metrics[metric], min, max);
  }
  nodes.sort((a, b) => (a.kind === b.kind ? a.id.localeCompare(b.id) : a.kind === 'host' ? -1 : 1));
  edges.sort((a, b) => a.source.localeCompare(b.source) || a.target.localeCompare(b.target) || a.direction.localeCompare(b.direction));
  return { nodes, edges, fill: { metric, min, max, bands } };
}

export function isFillMetric(s: string): s is FillMetric {
  return (FILL_METRICS as readonly string[]).includes(s);
}

export function isMetric(s: string): s is Metric {
  return (METRICS as readonly string[]).includes(s);
}
