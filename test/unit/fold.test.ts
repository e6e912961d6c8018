// Folding past --max-flows (issue 13, "a bill that cannot explode"): the
// largest points stay, the rest become one `*` point per direction, transport
// and family, and nothing is lost from the totals.
import { describe, expect, it } from 'vitest';
import { DNSFLOW_FOLD, foldDnsflow } from '../../src/dnsflow/fold';
import { float, type Point } from '../../src/lineproto/point';
import { foldPoints, FOLDED } from '../../src/lineproto/fold';
import { foldNetflow, NETFLOW_FOLD } from '../../src/netflow/fold';

const TS = 1_700_000_000_000_000_000n;
const COMMON = { host: 'h1', service: 'ebpf', team: 'net' };

let nextPort = 40000;

/** A netflow point shaped as src/netflow/aggregator.ts flush() makes them. */
function flow(opts: { bytes: number; direction?: 'incoming' | 'outgoing'; transport?: 'tcp' | 'udp'; family?: 'IPv4' | 'IPv6'; rtt?: number; rttVar?: number; established?: number }): Point {
  const direction = opts.direction ?? 'outgoing';
  const transport = opts.transport ?? 'tcp';
  const family = opts.family ?? 'IPv4';
  const port = String(nextPort++);
  const [local, remote] = family === 'IPv4' ? ['10.0.0.1', `10.0.${nextPort % 250}.${nextPort % 200}`] : ['fd00::1', `fd00::${nextPort.toString(16)}`];
  const fields: Point['fields'] = { bytes_read: opts.bytes, bytes_written: 0, client_sent: 0, server_sent: opts.bytes };
  if (transport === 'tcp') {
    Object.assign(fields, { retransmits: 1, rtt: opts.rtt ?? 100, rtt_var: opts.rttVar ?? 10, tcp_established: opts.established ?? 0, tcp_closed: 1 });
  }
  return {
    measurement: 'netflow',
    tags: {
      ...COMMON,
      source: 'netflow', family, direction, transport,
      src_ip: local, dst_ip: remote, src_port: '*', dst_port: port, src_ip_type: 'private', dst_ip_type: 'private',
      pid: port, process_name: `p${port}`, netns: '4026531840', dst_domain: '', dst_nat_ip: 'N/A', dst_nat_port: 'N/A',
      conn_side: direction === 'incoming' ? 'server' : 'client',
      client_ip: local, client_port: '*', client_ip_type: 'private', server_ip: remote, server_port: port, server_ip_type: 'private', server_domain: '',
    },
    fields,
    timestampNs: TS,
  };
}

const total = (points: Point[], field: string): number => points.reduce((s, p) => s + Number(p.fields[field] ?? 0), 0);

describe('foldNetflow', () => {
  it('leaves an interval at or under the cap alone, and 0 means no cap', () => {
    const points = [flow({ bytes: 1 }), flow({ bytes: 2 }), flow({ bytes: 3 })];
    expect(foldNetflow(points, 3)).toEqual({ points, folded: 0 });
    expect(foldNetflow(points, 0)).toEqual({ points, folded: 0 });
    expect(foldNetflow([], 1)).toEqual({ points: [], folded: 0 });
  });

  it('keeps the largest by bytes_read + bytes_written in their order, ties by order, and folds the rest', () => {
    const points = [flow({ bytes: 5 }), flow({ bytes: 50 }), flow({ bytes: 7 }), flow({ bytes: 7 }), flow({ bytes: 7 }), flow({ bytes: 1 })];
    points[0]!.fields.bytes_written = 100; // 105 in all: the largest
    const r = foldNetflow(points, 3);
    expect(r.folded).toBe(3);
    // Kept: 105, 50 and the first of the three 7s, in input order.
    expect(r.points.slice(0, 3)).toEqual([points[0], points[1], points[2]]);
    expect(r.points).toHaveLength(4);
    const f = r.points[3]!;
    expect(f.fields).toMatchObject({ bytes_read: 15, bytes_written: 0, server_sent: 15, retransmits: 3, tcp_closed: 3 });
  });

  it('folds into one point per direction, transport and family, with the peer tags "*" and the rest kept', () => {
    const small = [
      flow({ bytes: 1, direction: 'incoming' }),
      flow({ bytes: 1, direction: 'outgoing' }),
      flow({ bytes: 1, direction: 'outgoing', transport: 'udp' }),
      flow({ bytes: 1, direction: 'outgoing', transport: 'udp' }),
      flow({ bytes: 1, family: 'IPv6' }),
      flow({ bytes: 1, direction: 'incoming' }),
    ];
    const r = foldNetflow([flow({ bytes: 1000 }), ...small], 1);
    expect(r.folded).toBe(6);
    const folded = r.points.slice(1);
    expect(folded.map((p) => [p.tags.direction, p.tags.transport, p.tags.family])).toEqual([
      ['incoming', 'tcp', 'IPv4'],
      ['outgoing', 'tcp', 'IPv4'],
      ['outgoing', 'udp', 'IPv4'],
      ['outgoing', 'tcp', 'IPv6'],
    ]);
    for (const p of folded) {
      for (const tag of NETFLOW_FOLD.foldTags) if (tag in small[0]!.tags) expect(p.tags[tag], tag).toBe(FOLDED);
      expect(p.tags).toMatchObject({ ...COMMON, source: 'netflow', conn_side: p.tags.direction === 'incoming' ? 'server' : 'client' });
      expect(p.timestampNs).toBe(TS);
    }
    // UDP keeps its byte-only fields.
    expect(Object.keys(folded[2]!.fields).sort()).toEqual(['bytes_read', 'bytes_written', 'client_sent', 'server_sent']);
    expect(folded[0]!.fields.bytes_read).toBe(2);
  });

  it('loses nothing from the totals', () => {
    const points = Array.from({ length: 200 }, (_, i) => flow({ bytes: (i * 7919) % 1000, transport: i % 3 ? 'tcp' : 'udp', direction: i % 2 ? 'incoming' : 'outgoing', established: i % 4 }));
    const r = foldNetflow(points, 20);
    expect(r.folded).toBe(180);
    expect(r.points.length).toBeLessThanOrEqual(20 + 4);
    for (const field of ['bytes_read', 'bytes_written', 'client_sent', 'server_sent', 'retransmits', 'tcp_established', 'tcp_closed']) {
      expect(total(r.points, field), field).toBe(total(points, field));
    }
  });

  it('averages rtt and rtt_var weighted by tcp_established + 1', () => {
    const points = [flow({ bytes: 100 }), flow({ bytes: 1, rtt: 100, rttVar: 40, established: 0 }), flow({ bytes: 1, rtt: 400, rttVar: 10, established: 2 })];
    const f = foldNetflow(points, 1).points[1]!;
    // (100*1 + 400*3) / 4 = 325; (40*1 + 10*3) / 4 = 17.5 -> 18
    expect(f.fields).toMatchObject({ rtt: 325, rtt_var: 18, tcp_established: 2 });
  });
});

describe('foldPoints', () => {
  it('sums bigint and float fields, keeps agreeing strings, drops disagreeing ones', () => {
    const p = (n: number, s: string): Point => ({ measurement: 'm', tags: { a: String(n), k: 'same' }, fields: { big: BigInt(n), f: float(n / 2), s, agree: 'x', n }, timestampNs: BigInt(n) });
    const r = foldPoints([p(10, 'a'), p(1, 'b'), p(2, 'c')], 1, { foldTags: ['a'], size: (q) => Number(q.fields.n) });
    expect(r.folded).toBe(2);
    const f = r.points[1]!;
    expect(f.tags).toEqual({ a: '*', k: 'same' });
    expect(f.fields).toEqual({ big: 3n, f: float(1.5), agree: 'x', n: 3 });
    expect(f.timestampNs).toBe(2n);
  });

  it('keeps measurements and other tags apart', () => {
    const p = (m: string, k: string): Point => ({ measurement: m, tags: { peer: k, zone: k.startsWith('a') ? 'a' : 'b' }, fields: { n: 1 }, timestampNs: 1n });
    const r = foldPoints([p('m', 'a1'), p('m', 'a2'), p('m', 'b1'), p('x', 'a3')], 1, { foldTags: ['peer'], size: () => 1 });
    expect(r.points.map((q) => [q.measurement, q.tags.peer, q.tags.zone, q.fields.n])).toEqual([
      ['m', 'a1', 'a', 1],
      ['m', '*', 'a', 1],
      ['m', '*', 'b', 1],
      ['x', '*', 'a', 1],
    ]);
  });
});

describe('foldDnsflow', () => {
  const lookup = (server: string, rcodeName: string, rcode: number, count: number, latency: number, max: number): Point => ({
    measurement: 'dnsflow',
    tags: {
      ...COMMON, source: 'dnsflow', family: 'IPv4', direction: 'outgoing', transport: 'udp',
      src_ip: '10.0.0.1', dst_ip: server, src_port: '*', dst_port: '53', src_ip_type: 'private', dst_ip_type: 'private', dst_domain: '',
      conn_side: 'client', client_ip: '10.0.0.1', client_port: '*', server_ip: server, server_port: '53', rcode_name: rcodeName,
    },
    fields: { rcode, count, latency, latency_max: max },
    timestampNs: TS,
  });

  it('folds per rcode: counts add, latency is the count-weighted mean, latency_max the largest', () => {
    const points = [
      lookup('10.0.0.53', 'NOERROR', 0, 100, 1000, 5000),
      lookup('10.0.1.1', 'NOERROR', 0, 1, 4000, 4000),
      lookup('10.0.1.2', 'NOERROR', 0, 3, 2000, 9000),
      lookup('10.0.1.3', 'TIMEOUT', -1, 2, 0, 0),
      lookup('10.0.1.4', 'NXDOMAIN', 3, 1, 500, 500),
      lookup('10.0.1.5', 'TIMEOUT', -1, 1, 0, 0),
    ];
    const r = foldDnsflow(points, 1);
    expect(r.folded).toBe(5);
    expect(r.points[0]).toBe(points[0]);
    expect(r.points.slice(1).map((p) => [p.tags.rcode_name, p.tags.server_ip, p.tags.dst_port, p.fields])).toEqual([
      ['NOERROR', '*', '*', { rcode: 0, count: 4, latency: 2500, latency_max: 9000 }],
      ['TIMEOUT', '*', '*', { rcode: -1, count: 3, latency: 0, latency_max: 0 }],
      ['NXDOMAIN', '*', '*', { rcode: 3, count: 1, latency: 500, latency_max: 500 }],
    ]);
    expect(DNSFLOW_FOLD.foldTags).not.toContain('rcode_name');
  });
});
