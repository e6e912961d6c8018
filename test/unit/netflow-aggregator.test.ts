// NetflowAggregator (src/netflow/aggregator.ts): cumulative per-socket kernel
// counters in, one point per flow key per interval out (REFERENCE §2 netflow).
import { describe, expect, it } from 'vitest';
import { ipBytes } from '../helpers/records';
import type { Point } from '../../src/lineproto/point';
import {
  AF_INET,
  AF_INET6,
  Direction,
  type DirectionCode,
  IPPROTO_TCP,
  IPPROTO_UDP,
  LAYOUT,
  type SockOwnerRecord,
  type TcpConnRecord,
  type Tuple,
  type UdpFlowRecord,
} from '../../src/loader/layout';
import type { Snapshot } from '../../src/netflow/source';
import { NetflowAggregator, type NetflowOptions } from '../../src/netflow/aggregator';

// ---------------------------------------------------------------- builders


type Dir = 'out' | 'in' | 'unknown';
const DIR: Record<Dir, DirectionCode> = { out: Direction.outgoing, in: Direction.incoming, unknown: Direction.unknown };
const NETNS = 4026531840;

/** tuple('10.0.0.1', 40000, '10.0.0.2', 443, 'out', 'tcp') */
function tuple(
  local: string,
  localPort: number,
  remote: string,
  remotePort: number,
  dir: Dir = 'out',
  proto: 'tcp' | 'udp' = 'tcp',
  netns = NETNS,
): Tuple {
  return {
    localAddr: ipBytes(local),
    remoteAddr: ipBytes(remote),
    localPort,
    remotePort,
    family: local.includes(':') ? AF_INET6 : AF_INET,
    proto: proto === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP,
    direction: DIR[dir],
    netns,
  };
}

function tcp(cookie: number, t: Tuple, c: Partial<Omit<TcpConnRecord, 'tuple' | 'cookie'>> = {}): TcpConnRecord {
  return {
    tuple: t,
    cookie: BigInt(cookie),
    bytesSent: 0,
    bytesReceived: 0,
    pid: 4242,
    totalRetrans: 0,
    srttUs: 0,
    rttvarUs: 0,
    established: true,
    closed: false,
    comm: 'curl',
    ...c,
  };
}

/** The raw dke_udp_key the kernel map uses (the aggregator keys UDP marks by it). */
function udpKey(t: Tuple, cookie: bigint): Buffer {
  const T = LAYOUT.tuple;
  const b = Buffer.alloc(LAYOUT.udpKey.size);
  t.localAddr.copy(b, T.local_addr);
  t.remoteAddr.copy(b, T.remote_addr);
  b.writeUInt16LE(t.localPort, T.local_port);
  b.writeUInt16LE(t.remotePort, T.remote_port);
  b.writeUInt16LE(t.family, T.family);
  b.writeUInt8(t.proto, T.proto);
  b.writeUInt8(t.direction, T.direction);
  b.writeUInt32LE(t.netns, T.netns);
  b.writeBigUInt64LE(cookie, LAYOUT.udpKey.cookie);
  return b;
}

function udp(cookie: number, t: Tuple, sent: number, received: number): UdpFlowRecord {
  return {
    key: udpKey(t, BigInt(cookie)),
    tuple: t,
    cookie: BigInt(cookie),
    bytesSent: sent,
    bytesReceived: received,
    lastSeenNs: 1n,
  };
}

function owner(cookie: number, pid: number, comm: string, netns = NETNS): SockOwnerRecord {
  return { cookie: BigInt(cookie), pid, comm, netns };
}

function snap(
  generation: number,
  parts: { tcp?: TcpConnRecord[]; udp?: UdpFlowRecord[]; owners?: SockOwnerRecord[] } = {},
): Snapshot {
  return { generation, tcp: parts.tcp ?? [], udp: parts.udp ?? [], owners: parts.owners ?? [], telemetry: [] };
}

const TS = 1_700_000_000_000_000_000n;
const COMMON = { host: 'node-1', service: 'ebpf' };

function agg(opts: Partial<NetflowOptions> = {}): NetflowAggregator {
  return new NetflowAggregator({ ephemeralPort: 0, includeLoopback: false, ...opts });
}

function flushOne(a: NetflowAggregator, common: Record<string, string> = COMMON): Point {
  const pts = a.flush(TS, common);
  expect(pts).toHaveLength(1);
  return pts[0]!;
}

const TCP_FIELDS = ['bytes_read', 'bytes_written', 'client_sent', 'server_sent', 'retransmits', 'rtt', 'rtt_var', 'tcp_established', 'tcp_closed'];

// ---------------------------------------------------------------- tests

describe('NetflowAggregator: outgoing TCP', () => {
  const out = tuple('10.0.0.1', 40000, '93.184.216.34', 443, 'out');

  it('first interval: full counters, tcp_established=1, every REFERENCE tag', () => {
    const a = agg();
    a.ingestSnapshot(
      snap(1, { tcp: [tcp(1, out, { bytesSent: 100, bytesReceived: 1000, totalRetrans: 1, srttUs: 500, rttvarUs: 100 })] }),
    );
    const p = flushOne(a);
    expect(p.measurement).toBe('netflow');
    expect(p.timestampNs).toBe(TS);
    expect(p.tags).toEqual({
      host: 'node-1',
      service: 'ebpf',
      source: 'netflow',
      family: 'IPv4',
      direction: 'outgoing',
      transport: 'tcp',
      src_ip: '10.0.0.1',
      dst_ip: '93.184.216.34',
      src_port: '*',
      dst_port: '443',
      src_ip_type: 'private',
      dst_ip_type: 'other',
      pid: '4242',
      process_name: 'curl',
      netns: String(NETNS),
      dst_domain: '',
      dst_nat_ip: 'N/A',
      dst_nat_port: 'N/A',
      conn_side: 'client',
      client_ip: '10.0.0.1',
      client_port: '*',
      client_ip_type: 'private',
      server_ip: '93.184.216.34',
      server_port: '443',
      server_ip_type: 'other',
      server_domain: '',
    });
    expect(p.fields).toEqual({
      bytes_written: 100,
      bytes_read: 1000,
      client_sent: 100,
      server_sent: 1000,
      retransmits: 1,
      rtt: 500,
      rtt_var: 100,
      tcp_established: 1,
      tcp_closed: 0,
    });
  });

  it('second interval: deltas only, tcp_established=0', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 100, bytesReceived: 1000, totalRetrans: 1, srttUs: 500, rttvarUs: 100 })] }));
    a.flush(TS, COMMON);
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 250, bytesReceived: 1500, totalRetrans: 3, srttUs: 600, rttvarUs: 80 })] }));
    expect(flushOne(a).fields).toEqual({
      bytes_written: 150,
      bytes_read: 500,
      client_sent: 150,
      server_sent: 500,
      retransmits: 2,
      rtt: 600,
      rtt_var: 80,
      tcp_established: 0,
      tcp_closed: 0,
    });
  });

  it('two snapshots in one interval add up to the interval total', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 100, bytesReceived: 10 })] }));
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 300, bytesReceived: 30 })] }));
    const f = flushOne(a).fields;
    expect(f.bytes_written).toBe(300);
    expect(f.bytes_read).toBe(30);
    expect(f.tcp_established).toBe(1);
  });

  it('retransmits alone make the flow reportable', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 10 })] }));
    a.flush(TS, COMMON);
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 10, totalRetrans: 4 })] }));
    const f = flushOne(a).fields;
    expect(f).toMatchObject({ bytes_written: 0, bytes_read: 0, retransmits: 4, tcp_established: 0 });
  });

  it('ephemeralPort 32768: a client port below it stays numeric, at/above it is *', () => {
    const a = agg({ ephemeralPort: 32768 });
    a.ingestSnapshot(
      snap(1, {
        tcp: [
          tcp(1, tuple('10.0.0.1', 1023, '10.0.0.2', 22, 'out'), { bytesSent: 1 }),
          tcp(2, tuple('10.0.0.1', 32768, '10.0.0.2', 22, 'out'), { bytesSent: 2 }),
        ],
      }),
    );
    const pts = a.flush(TS, COMMON);
    expect(pts.map((p) => [p.tags.src_port, p.tags.client_port, p.tags.dst_port, p.fields.bytes_written]).sort()).toEqual([
      ['*', '*', '22', 2],
      ['1023', '1023', '22', 1],
    ]);
  });

  it('IPv6 flows carry family IPv6 and canonical addresses', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, tuple('fd00:dead:1:0:0:0:0:2', 40000, '2001:db8:0:0:0:0:0:1', 443), { bytesSent: 5 })] }));
    const p = flushOne(a);
    expect(p.tags).toMatchObject({
      family: 'IPv6',
      src_ip: 'fd00:dead:1::2',
      dst_ip: '2001:db8::1',
      src_ip_type: 'private',
      dst_ip_type: 'other',
      server_ip: '2001:db8::1',
      server_ip_type: 'other',
    });
  });

  it('an IPv4-mapped IPv6 connection reports as IPv4', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, tuple('::ffff:10.0.0.1', 40000, '::ffff:10.0.0.2', 5432), { bytesSent: 5 })] }));
    expect(flushOne(a).tags).toMatchObject({ family: 'IPv4', src_ip: '10.0.0.1', dst_ip: '10.0.0.2', dst_port: '5432' });
  });
});

describe('NetflowAggregator: incoming TCP', () => {
  const inc = tuple('10.0.0.1', 8080, '203.0.113.5', 51000, 'in');

  it('conn_side server; server is the local side (server_ip_type from the local address)', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(7, inc, { bytesSent: 900, bytesReceived: 90, comm: 'nginx', pid: 77 })] }));
    const p = flushOne(a);
    expect(p.tags).toEqual({
      host: 'node-1',
      service: 'ebpf',
      source: 'netflow',
      family: 'IPv4',
      direction: 'incoming',
      transport: 'tcp',
      src_ip: '10.0.0.1',
      dst_ip: '203.0.113.5',
      src_port: '8080',
      dst_port: '*',
      src_ip_type: 'private',
      dst_ip_type: 'other',
      pid: '77',
      process_name: 'nginx',
      netns: String(NETNS),
      dst_domain: '',
      dst_nat_ip: 'N/A',
      dst_nat_port: 'N/A',
      conn_side: 'server',
      client_ip: '203.0.113.5',
      client_port: '*',
      client_ip_type: 'other',
      server_ip: '10.0.0.1',
      server_port: '8080',
      server_ip_type: 'private',
      server_domain: '',
    });
    // The client (remote) sent what we read; the server (us) sent what we wrote.
    expect(p.fields).toMatchObject({ bytes_written: 900, bytes_read: 90, client_sent: 90, server_sent: 900 });
  });

  it('a server port at/above ephemeralPort never collapses; a low client port does not either', () => {
    const a = agg({ ephemeralPort: 32768 });
    a.ingestSnapshot(
      snap(1, {
        tcp: [
          tcp(1, tuple('10.0.0.1', 40000, '10.0.0.9', 1023, 'in'), { bytesSent: 1 }),
          tcp(2, tuple('10.0.0.1', 40000, '10.0.0.9', 50000, 'in'), { bytesSent: 1 }),
        ],
      }),
    );
    const pts = a.flush(TS, COMMON);
    expect(pts.map((p) => [p.tags.src_port, p.tags.dst_port, p.tags.server_port, p.tags.client_port]).sort()).toEqual([
      ['40000', '*', '40000', '*'],
      ['40000', '1023', '40000', '1023'],
    ]);
  });
});

describe('NetflowAggregator: close events', () => {
  const out = tuple('10.0.0.1', 40000, '10.0.0.2', 443, 'out');

  it('a close after a snapshot reports the remainder and tcp_closed=1', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 100, bytesReceived: 200, totalRetrans: 1, srttUs: 300 })] }));
    a.flush(TS, COMMON);
    a.ingestClosed([tcp(1, out, { bytesSent: 150, bytesReceived: 260, totalRetrans: 2, srttUs: 310 })], 1);
    expect(flushOne(a).fields).toMatchObject({
      bytes_written: 50,
      bytes_read: 60,
      retransmits: 1,
      rtt: 310,
      tcp_established: 0,
      tcp_closed: 1,
    });
  });

  it('a close with nothing new still reports tcp_closed=1', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 100 })] }));
    a.flush(TS, COMMON);
    a.ingestClosed([tcp(1, out, { bytesSent: 100 })], 1);
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 0, bytes_read: 0, tcp_established: 0, tcp_closed: 1 });
  });

  it('a snapshot taken before the close but ingested after it does not double count (tombstone)', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 100, bytesReceived: 10 })] }));
    // Close at 300; the in-flight snapshot (read at 200) arrives later.
    a.ingestClosed([tcp(1, out, { bytesSent: 300, bytesReceived: 30 })], 1);
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 200, bytesReceived: 20 })] }));
    const f = flushOne(a).fields;
    expect(f).toMatchObject({ bytes_written: 300, bytes_read: 30, tcp_established: 1, tcp_closed: 1 });
    // Nor can it come back in a later interval.
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, out, { bytesSent: 200, bytesReceived: 20 })] }));
    expect(a.flush(TS, COMMON)).toEqual([]);
  });

  it('a duplicate close event for the same socket is counted once', () => {
    const a = agg();
    a.ingestClosed([tcp(1, out, { bytesSent: 300 })], 1);
    a.ingestClosed([tcp(1, out, { bytesSent: 300 })], 1);
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 300, tcp_closed: 1, tcp_established: 1 });
  });

  it('a close without any prior snapshot counts everything once', () => {
    const a = agg();
    a.ingestClosed(
      [tcp(9, out, { bytesSent: 500, bytesReceived: 700, totalRetrans: 2, srttUs: 1200, rttvarUs: 300 })],
      1,
    );
    expect(flushOne(a).fields).toEqual({
      bytes_written: 500,
      bytes_read: 700,
      client_sent: 500,
      server_sent: 700,
      retransmits: 2,
      rtt: 1200,
      rtt_var: 300,
      tcp_established: 1,
      tcp_closed: 1,
    });
    expect(a.flush(TS, COMMON)).toEqual([]);
  });

  it('several closes of one flow key in an interval aggregate', () => {
    const a = agg();
    a.ingestClosed(
      [
        tcp(1, tuple('10.0.0.1', 40001, '10.0.0.2', 443), { bytesSent: 10 }),
        tcp(2, tuple('10.0.0.1', 40002, '10.0.0.2', 443), { bytesSent: 20 }),
      ],
      1,
    );
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 30, tcp_established: 2, tcp_closed: 2 });
  });
});

describe('NetflowAggregator: aggregation key', () => {
  it('K connections of one process to one server make ONE point: summed bytes, tcp_established=K, mean rtt', () => {
    const a = agg();
    a.ingestSnapshot(
      snap(1, {
        tcp: [
          tcp(1, tuple('10.0.0.1', 40001, '10.0.0.2', 443), { bytesSent: 10, bytesReceived: 100, totalRetrans: 1, srttUs: 100, rttvarUs: 10 }),
          tcp(2, tuple('10.0.0.1', 40002, '10.0.0.2', 443), { bytesSent: 20, bytesReceived: 200, totalRetrans: 0, srttUs: 200, rttvarUs: 20 }),
          tcp(3, tuple('10.0.0.1', 40003, '10.0.0.2', 443), { bytesSent: 30, bytesReceived: 300, totalRetrans: 2, srttUs: 600, rttvarUs: 31 }),
        ],
      }),
    );
    const p = flushOne(a);
    expect(p.tags).toMatchObject({ src_port: '*', dst_port: '443', pid: '4242' });
    expect(p.fields).toEqual({
      bytes_written: 60,
      bytes_read: 600,
      client_sent: 60,
      server_sent: 600,
      retransmits: 3,
      rtt: 300,
      rtt_var: 20, // (10 + 20 + 31) / 3 = 20.33, an integer field
      tcp_established: 3,
      tcp_closed: 0,
    });
    for (const k of TCP_FIELDS) expect(Number.isSafeInteger(p.fields[k]), k).toBe(true);
  });

  it('a connection without an RTT sample does not pull the mean down', () => {
    const a = agg();
    a.ingestSnapshot(
      snap(1, {
        tcp: [
          tcp(1, tuple('10.0.0.1', 40001, '10.0.0.2', 443), { bytesSent: 10, srttUs: 400, rttvarUs: 40 }),
          tcp(2, tuple('10.0.0.1', 40002, '10.0.0.2', 443), { bytesSent: 10, srttUs: 0, rttvarUs: 0 }),
        ],
      }),
    );
    expect(flushOne(a).fields).toMatchObject({ rtt: 400, rtt_var: 40 });
  });

  it('no RTT sample at all gives rtt=0', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, tuple('10.0.0.1', 40001, '10.0.0.2', 443), { bytesSent: 10 })] }));
    expect(flushOne(a).fields).toMatchObject({ rtt: 0, rtt_var: 0 });
  });

  it('different pid, process, server port, server ip, netns or transport are separate points', () => {
    const a = agg();
    const base = tuple('10.0.0.1', 40001, '10.0.0.2', 443);
    a.ingestSnapshot(
      snap(1, {
        tcp: [
          tcp(1, base, { bytesSent: 1 }),
          tcp(2, tuple('10.0.0.1', 40002, '10.0.0.2', 443), { bytesSent: 1, pid: 1 }),
          tcp(3, tuple('10.0.0.1', 40003, '10.0.0.2', 443), { bytesSent: 1, comm: 'wget' }),
          tcp(4, tuple('10.0.0.1', 40004, '10.0.0.2', 8443), { bytesSent: 1 }),
          tcp(5, tuple('10.0.0.1', 40005, '10.0.0.3', 443), { bytesSent: 1 }),
          tcp(6, tuple('10.0.0.1', 40006, '10.0.0.2', 443, 'out', 'tcp', 99), { bytesSent: 1 }),
          tcp(7, tuple('10.0.0.1', 40007, '10.0.0.2', 443), { bytesSent: 1 }),
        ],
      }),
    );
    const pts = a.flush(TS, COMMON);
    expect(pts).toHaveLength(6);
    const merged = pts.find((p) => p.fields.bytes_written === 2)!;
    expect(merged.tags).toMatchObject({ pid: '4242', process_name: 'curl', dst_port: '443', dst_ip: '10.0.0.2', netns: String(NETNS) });
  });
});

describe('NetflowAggregator: what is not sent', () => {
  it('flows with no change in the interval are not emitted', () => {
    const a = agg();
    const t = tuple('10.0.0.1', 40000, '10.0.0.2', 443);
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 10, bytesReceived: 20, totalRetrans: 1, srttUs: 50 })] }));
    expect(a.flush(TS, COMMON)).toHaveLength(1);
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 10, bytesReceived: 20, totalRetrans: 1, srttUs: 70 })] }));
    expect(a.pendingFlows).toBe(0);
    expect(a.flush(TS, COMMON)).toEqual([]);
  });

  it('zero addresses and port 0 are dropped', () => {
    const a = agg();
    a.ingestSnapshot(
      snap(1, {
        tcp: [
          tcp(1, tuple('0.0.0.0', 40000, '10.0.0.2', 443), { bytesSent: 1 }),
          tcp(2, tuple('10.0.0.1', 40000, '0.0.0.0', 443), { bytesSent: 1 }),
          tcp(3, tuple('::', 40000, '2001:db8::1', 443), { bytesSent: 1 }),
          tcp(4, tuple('2001:db8::2', 40000, '::', 443), { bytesSent: 1 }),
          tcp(5, tuple('::ffff:0.0.0.0', 40000, '::ffff:10.0.0.2', 443), { bytesSent: 1 }),
          tcp(6, tuple('10.0.0.1', 0, '10.0.0.2', 443), { bytesSent: 1 }),
          tcp(7, tuple('10.0.0.1', 40000, '10.0.0.2', 0), { bytesSent: 1 }),
        ],
        udp: [udp(8, tuple('10.0.0.1', 40000, '0.0.0.0', 53, 'out', 'udp'), 1, 1), udp(9, tuple('10.0.0.1', 0, '10.0.0.53', 53, 'out', 'udp'), 1, 1)],
      }),
    );
    a.ingestClosed([tcp(10, tuple('0.0.0.0', 40000, '10.0.0.2', 443), { bytesSent: 1 })], 1);
    expect(a.flush(TS, COMMON)).toEqual([]);
  });

  it('loopback-to-loopback is dropped by default', () => {
    const a = agg();
    a.ingestSnapshot(
      snap(1, {
        tcp: [
          tcp(1, tuple('127.0.0.1', 40000, '127.0.0.1', 8080), { bytesSent: 1 }),
          tcp(2, tuple('127.0.0.5', 40000, '127.0.0.1', 8080), { bytesSent: 1 }),
          tcp(3, tuple('::1', 40000, '::1', 8080), { bytesSent: 1 }),
          tcp(4, tuple('::ffff:127.0.0.1', 40000, '::ffff:127.0.0.1', 8080), { bytesSent: 1 }),
        ],
        udp: [udp(5, tuple('127.0.0.1', 40000, '127.0.0.53', 53, 'out', 'udp'), 1, 1)],
      }),
    );
    a.ingestClosed([tcp(6, tuple('127.0.0.1', 40001, '127.0.0.1', 8080), { bytesSent: 1 })], 1);
    expect(a.flush(TS, COMMON)).toEqual([]);
  });

  it('loopback-to-loopback is kept with includeLoopback', () => {
    const a = agg({ includeLoopback: true });
    a.ingestSnapshot(
      snap(1, {
        tcp: [
          tcp(1, tuple('127.0.0.1', 40000, '127.0.0.1', 8080), { bytesSent: 1 }),
          tcp(3, tuple('::1', 40000, '::1', 8080), { bytesSent: 1 }),
        ],
      }),
    );
    const pts = a.flush(TS, COMMON);
    expect(pts).toHaveLength(2);
    for (const p of pts) expect(p.tags).toMatchObject({ src_ip_type: 'loopback', dst_ip_type: 'loopback', server_ip_type: 'loopback', client_ip_type: 'loopback' });
    expect(pts.map((p) => p.tags.family).sort()).toEqual(['IPv4', 'IPv6']);
  });
});

describe('NetflowAggregator: connections adopted mid-life', () => {
  it('do not count historic retransmits or an establishment, and take direction from listening ports', () => {
    const a = agg();
    a.setListeningPorts([8080]);
    const t = tuple('10.0.0.1', 8080, '10.0.0.9', 50000, 'unknown');
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { established: false, totalRetrans: 7, bytesSent: 100, bytesReceived: 5 })] }));
    const p = flushOne(a);
    expect(p.tags).toMatchObject({ direction: 'incoming', conn_side: 'server', src_port: '8080', dst_port: '*', server_ip: '10.0.0.1', server_port: '8080' });
    expect(p.fields).toMatchObject({ bytes_written: 100, bytes_read: 5, retransmits: 0, tcp_established: 0, tcp_closed: 0 });

    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { established: false, totalRetrans: 9, bytesSent: 150, bytesReceived: 5 })] }));
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 50, retransmits: 2, tcp_established: 0 });
  });

  it('without a listening port an adopted client connection is outgoing', () => {
    const a = agg();
    a.setListeningPorts([8080]);
    const t = tuple('10.0.0.1', 45000, '10.0.0.9', 443, 'unknown');
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { established: false, bytesSent: 1 })] }));
    expect(flushOne(a).tags).toMatchObject({ direction: 'outgoing', conn_side: 'client', src_port: '*', dst_port: '443' });
  });

  it('setListeningPorts replaces the previous set', () => {
    const a = agg();
    a.setListeningPorts([8080]);
    a.setListeningPorts([9090]);
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, tuple('10.0.0.1', 8080, '10.0.0.9', 443, 'unknown'), { established: false, bytesSent: 1 })] }));
    expect(flushOne(a).tags.direction).toBe('outgoing');
  });

  it('an adopted connection closing before any snapshot does not count historic retransmits', () => {
    const a = agg();
    a.ingestClosed([tcp(1, tuple('10.0.0.1', 45000, '10.0.0.9', 443, 'unknown'), { established: false, totalRetrans: 12, bytesSent: 3 })], 1);
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 3, retransmits: 0, tcp_established: 0, tcp_closed: 1 });
  });

  it('the kernel direction wins over the listening set', () => {
    const a = agg();
    a.setListeningPorts([8080]);
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, tuple('10.0.0.1', 8080, '10.0.0.9', 443, 'out'), { bytesSent: 1 })] }));
    expect(flushOne(a).tags.direction).toBe('outgoing');
  });
});

describe('NetflowAggregator: loader restarts and kernel maps', () => {
  const t = tuple('10.0.0.1', 40000, '10.0.0.2', 443);

  it('fresh maps (mapsRestarted) reset the marks: 100 after the old 500 is 100', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 500 })] }));
    expect(flushOne(a).fields.bytes_written).toBe(500);
    a.mapsRestarted(2);
    a.ingestSnapshot(snap(2, { tcp: [tcp(1, t, { bytesSent: 100, established: false })] }));
    expect(flushOne(a).fields.bytes_written).toBe(100);
  });

  it('fresh maps: 600 after the old 500 is 600, not 100', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 500 })] }));
    a.flush(TS, COMMON);
    a.mapsRestarted(2);
    a.ingestSnapshot(snap(2, { tcp: [tcp(1, t, { bytesSent: 600, established: false })] }));
    expect(flushOne(a).fields.bytes_written).toBe(600);
  });

  it('pinned maps continue across a loader restart: 600 after 500 is 100', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 500 })] }));
    a.flush(TS, COMMON);
    a.ingestSnapshot(snap(2, { tcp: [tcp(1, t, { bytesSent: 600 })] }));
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 100, tcp_established: 0 });
  });

  it('a stale (smaller) record is worth nothing, never a negative or restarted delta', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 500 })] }));
    a.flush(TS, COMMON);
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 100 })] }));
    expect(a.flush(TS, COMMON)).toEqual([]);
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 550 })] }));
    expect(flushOne(a).fields.bytes_written).toBe(50);
  });

  it('a close event after fresh maps is measured against the new maps', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 500 })] }));
    a.flush(TS, COMMON);
    a.mapsRestarted(2);
    a.ingestClosed([tcp(1, t, { bytesSent: 40, established: false })], 2);
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 40, tcp_closed: 1 });
  });

  it('records of maps that are gone (before mapsRestarted) are ignored', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 10 })] }));
    a.flush(TS, COMMON);
    a.mapsRestarted(2);
    a.ingestSnapshot(snap(2, { tcp: [tcp(1, t, { bytesSent: 100, established: false })] }));
    a.flush(TS, COMMON);
    a.ingestClosed([tcp(9, tuple('10.0.0.1', 40001, '10.0.0.3', 443), { bytesSent: 5 })], 1);
    expect(a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 999 })] }))).toEqual([]);
    expect(a.flush(TS, COMMON)).toEqual([]);
    a.ingestSnapshot(snap(2, { tcp: [tcp(1, t, { bytesSent: 150, established: false })] }));
    expect(flushOne(a).fields.bytes_written).toBe(50);
  });

  it('UDP marks reset with fresh maps too', () => {
    const a = agg();
    const u = tuple('10.0.0.1', 40000, '10.0.0.53', 53, 'out', 'udp');
    a.ingestSnapshot(snap(1, { udp: [udp(1, u, 500, 500)] }));
    a.flush(TS, COMMON);
    a.mapsRestarted(2);
    a.ingestSnapshot(snap(2, { udp: [udp(1, u, 600, 100)] }));
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 600, bytes_read: 100 });
  });
});

describe('NetflowAggregator: closed connections are counted once and deleted after the hand-off', () => {
  const t = tuple('10.0.0.1', 40000, '10.0.0.2', 443);

  it('a close event and a snapshot of the same closed socket count once, in either order', () => {
    for (const eventFirst of [true, false]) {
      const a = agg();
      const rec = tcp(1, t, { bytesSent: 300, closed: true });
      if (eventFirst) a.ingestClosed([rec], 1);
      a.ingestSnapshot(snap(1, { tcp: [rec] }));
      if (!eventFirst) a.ingestClosed([rec], 1);
      expect(flushOne(a).fields).toMatchObject({ bytes_written: 300, tcp_established: 1, tcp_closed: 1 });
      a.ingestSnapshot(snap(1, { tcp: [rec] }));
      expect(a.flush(TS, COMMON)).toEqual([]);
    }
  });

  it('closedToDelete lists closed sockets until they are deleted; late records after that are ignored', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 10 }), tcp(2, t, { bytesSent: 20, closed: true })] }));
    a.flush(TS, COMMON);
    expect(a.closedToDelete()).toEqual([2n]);
    a.closedDeleted([2n]);
    expect(a.closedToDelete()).toEqual([]);
    a.ingestClosed([tcp(2, t, { bytesSent: 20, closed: true })], 1);
    expect(a.flush(TS, COMMON)).toEqual([]);
  });

  it('restored marks resume deltas exactly where the last commit ended', () => {
    const first = agg();
    first.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 100 }), tcp(2, t, { bytesSent: 7, closed: true })] }));
    first.flush(TS, COMMON);
    const saved = first.marks();
    const second = agg();
    second.restoreMarks({ tcp: new Map(saved.tcp), udp: new Map(saved.udp) });
    expect(second.closedToDelete()).toEqual([2n]);
    second.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 130 }), tcp(2, t, { bytesSent: 7, closed: true })] }));
    expect(flushOne(second).fields).toMatchObject({ bytes_written: 30, tcp_established: 0, tcp_closed: 0 });
  });
});

describe('NetflowAggregator: UDP', () => {
  const u = tuple('10.0.0.1', 40000, '10.0.0.53', 53, 'out', 'udp', 0);

  it('deltas with the owner joined by cookie, and no TCP-only fields', () => {
    const a = agg();
    const owners = [owner(77, 1234, 'dig', 4026531993), owner(78, 1, 'other')];
    a.ingestSnapshot(snap(1, { udp: [udp(77, u, 40, 120)], owners }));
    const p = flushOne(a);
    expect(p.tags).toMatchObject({
      transport: 'udp',
      direction: 'outgoing',
      conn_side: 'client',
      src_ip: '10.0.0.1',
      dst_ip: '10.0.0.53',
      src_port: '*',
      dst_port: '53',
      pid: '1234',
      process_name: 'dig',
      netns: '4026531993',
      server_ip: '10.0.0.53',
      server_port: '53',
    });
    expect(p.fields).toEqual({ bytes_written: 40, bytes_read: 120, client_sent: 40, server_sent: 120 });
    for (const k of ['retransmits', 'rtt', 'rtt_var', 'tcp_established', 'tcp_closed']) expect(p.fields).not.toHaveProperty(k);

    a.ingestSnapshot(snap(1, { udp: [udp(77, u, 80, 240)], owners }));
    expect(flushOne(a).fields).toEqual({ bytes_written: 40, bytes_read: 120, client_sent: 40, server_sent: 120 });
  });

  it('without a known owner: pid 0, empty process name, netns from the tuple', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { udp: [udp(5, tuple('10.0.0.1', 40000, '10.0.0.53', 53, 'out', 'udp', 31337), 1, 2)] }));
    expect(flushOne(a).tags).toMatchObject({ pid: '0', process_name: '', netns: '31337' });
  });

  it('an incoming UDP flow is the server side', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { udp: [udp(5, tuple('10.0.0.1', 53, '10.0.0.7', 40000, 'in', 'udp'), 100, 30)] }));
    const p = flushOne(a);
    expect(p.tags).toMatchObject({ direction: 'incoming', conn_side: 'server', src_port: '53', dst_port: '*', server_ip: '10.0.0.1', client_ip: '10.0.0.7' });
    expect(p.fields).toEqual({ bytes_written: 100, bytes_read: 30, client_sent: 30, server_sent: 100 });
  });

  it('idle flows are returned after 2 unchanged reads; their final counters count once', () => {
    const a = agg();
    const owners = [owner(77, 1234, 'dig')];
    expect(a.ingestSnapshot(snap(1, { udp: [udp(77, u, 40, 120)], owners }))).toEqual([]);
    a.flush(TS, COMMON);
    expect(a.ingestSnapshot(snap(1, { udp: [udp(77, u, 40, 120)], owners }))).toEqual([]);
    const idle = a.ingestSnapshot(snap(1, { udp: [udp(77, u, 40, 120)], owners }));
    expect(idle).toEqual([udpKey(u, 77n)]);
    expect(a.flush(TS, COMMON)).toEqual([]);

    // Between the read and the delete 10 more bytes were sent.
    a.ingestUdpFinal([udp(77, u, 50, 120)]);
    const p = flushOne(a);
    expect(p.fields).toEqual({ bytes_written: 10, bytes_read: 0, client_sent: 10, server_sent: 0 });
    expect(p.tags.process_name).toBe('dig');

    // The kernel entry is gone; a new one starts from 0 and counts in full
    // (larger than the old final counters, so a stale mark would show).
    a.ingestSnapshot(snap(1, { udp: [udp(77, u, 60, 130)], owners }));
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 60, bytes_read: 130 });
  });

  it('final counters equal to the last read add nothing', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { udp: [udp(77, u, 40, 120)] }));
    a.ingestSnapshot(snap(1, { udp: [udp(77, u, 40, 120)] }));
    const idle = a.ingestSnapshot(snap(1, { udp: [udp(77, u, 40, 120)] }));
    expect(idle).toHaveLength(1);
    a.flush(TS, COMMON);
    a.ingestUdpFinal([udp(77, u, 40, 120)]);
    expect(a.flush(TS, COMMON)).toEqual([]);
  });

  it('a flow that moves again resets its idle count', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { udp: [udp(1, u, 10, 0)] }));
    a.ingestSnapshot(snap(1, { udp: [udp(1, u, 10, 0)] }));
    a.ingestSnapshot(snap(1, { udp: [udp(1, u, 20, 0)] }));
    expect(a.ingestSnapshot(snap(1, { udp: [udp(1, u, 20, 0)] }))).toEqual([]);
    expect(a.ingestSnapshot(snap(1, { udp: [udp(1, u, 20, 0)] }))).toHaveLength(1);
  });

  it('udpIdleReads is configurable', () => {
    const a = agg({ udpIdleReads: 1 });
    a.ingestSnapshot(snap(1, { udp: [udp(1, u, 10, 0)] }));
    expect(a.ingestSnapshot(snap(1, { udp: [udp(1, u, 10, 0)] }))).toHaveLength(1);
  });

  it('two sockets to one peer are tracked separately and aggregate into one point', () => {
    const a = agg();
    const owners = [owner(1, 50, 'app'), owner(2, 50, 'app')];
    a.ingestSnapshot(snap(1, { udp: [udp(1, tuple('10.0.0.1', 40001, '10.0.0.53', 53, 'out', 'udp'), 10, 100), udp(2, tuple('10.0.0.1', 40002, '10.0.0.53', 53, 'out', 'udp'), 20, 200)], owners }));
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 30, bytes_read: 300 });
    a.ingestSnapshot(snap(1, { udp: [udp(1, tuple('10.0.0.1', 40001, '10.0.0.53', 53, 'out', 'udp'), 11, 100), udp(2, tuple('10.0.0.1', 40002, '10.0.0.53', 53, 'out', 'udp'), 20, 201)], owners }));
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 1, bytes_read: 1 });
  });

  it('TCP and UDP with the same addresses are separate points', () => {
    const a = agg();
    a.ingestSnapshot(
      snap(1, {
        tcp: [tcp(1, tuple('10.0.0.1', 40000, '10.0.0.53', 53), { bytesSent: 1, pid: 9, comm: 'x' })],
        udp: [udp(2, tuple('10.0.0.1', 40000, '10.0.0.53', 53, 'out', 'udp'), 1, 0)],
        owners: [owner(2, 9, 'x')],
      }),
    );
    expect(a.flush(TS, COMMON).map((p) => p.tags.transport).sort()).toEqual(['tcp', 'udp']);
  });
});

describe('NetflowAggregator: flush', () => {
  const t = tuple('10.0.0.1', 40000, '10.0.0.2', 443);

  it('commonTags are added but never override flow tags', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 1 })] }));
    const common = {
      host: 'node-1',
      service: 'my-ebpf',
      env: 'prod',
      src_ip: '6.6.6.6',
      direction: 'sideways',
      transport: 'sctp',
      pid: '1',
      source: 'spoof',
      conn_side: 'x',
    };
    const p = flushOne(a, common);
    expect(p.tags).toMatchObject({
      host: 'node-1',
      service: 'my-ebpf',
      env: 'prod',
      src_ip: '10.0.0.1',
      direction: 'outgoing',
      transport: 'tcp',
      pid: '4242',
      source: 'netflow',
      conn_side: 'client',
    });
    // The caller's object is not modified.
    expect(common.src_ip).toBe('6.6.6.6');
  });

  it('flush resets the interval: a second flush without new data returns []', () => {
    const a = agg();
    a.ingestSnapshot(snap(1, { tcp: [tcp(1, t, { bytesSent: 1 })] }));
    expect(a.pendingFlows).toBe(1);
    expect(a.flush(TS, COMMON)).toHaveLength(1);
    expect(a.pendingFlows).toBe(0);
    expect(a.flush(TS + 1n, COMMON)).toEqual([]);
  });

  it('every point of a flush carries the flush timestamp', () => {
    const a = agg();
    a.ingestSnapshot(
      snap(1, {
        tcp: [tcp(1, t, { bytesSent: 1 }), tcp(2, tuple('10.0.0.1', 40001, '10.0.0.3', 443), { bytesSent: 1 })],
      }),
    );
    const pts = a.flush(123n, COMMON);
    expect(pts).toHaveLength(2);
    for (const p of pts) expect(p.timestampNs).toBe(123n);
  });

  it('an empty aggregator flushes []', () => {
    expect(agg().flush(TS, COMMON)).toEqual([]);
  });
});
