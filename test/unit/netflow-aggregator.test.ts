// NetflowAggregator (src/netflow/aggregator.ts): DKE_FRAME_FLOWS frames of
// per-flow-key deltas in (the kernel sums, the loader diffs), one point per
// tag set per interval out (REFERENCE §2 netflow).
import { describe, expect, it } from 'vitest';
import type { Point } from '../../src/lineproto/point';
import { DKE_FRAME_FLOWS, dke_flow_delta } from '../../src/loader/layout.generated';
import { NetflowAggregator, type NetflowOptions } from '../../src/netflow/aggregator';
import { flowDelta, flowsFrame, NETNS, type Dir, type FlowDeltaSpec } from '../helpers/records';

const TS = 1_700_000_000_000_000_000n;
const COMMON = { host: 'node-1', service: 'ebpf' };

function agg(opts: Partial<NetflowOptions> = {}): NetflowAggregator {
  return new NetflowAggregator({ ephemeralPort: 0, includeLoopback: false, ...opts });
}

/** A delta of a flow key: `out` and `in` as the kernel sends them (the client port 0), `unknown` with both ports. */
function flow(local: string, localPort: number, remote: string, remotePort: number, direction: Dir = 'out', more: Partial<FlowDeltaSpec> = {}): FlowDeltaSpec {
  return { local, localPort, remote, remotePort, direction, sent: 1, ...more };
}

function ingest(a: NetflowAggregator, ...deltas: FlowDeltaSpec[]): NetflowAggregator {
  a.ingest(flowsFrame(...deltas));
  return a;
}

function flushOne(a: NetflowAggregator, common: Record<string, string> = COMMON): Point {
  const pts = a.flush(TS, common);
  expect(pts).toHaveLength(1);
  return pts[0]!;
}

const TCP_ONLY = ['retransmits', 'rtt', 'rtt_var', 'tcp_established', 'tcp_closed'];

describe('NetflowAggregator: outgoing TCP', () => {
  const out = flow('10.0.0.1', 0, '93.184.216.34', 443, 'out');

  it('every REFERENCE tag and field of one delta; rtt is rtt_sum / rtt_count', () => {
    const a = ingest(agg(), { ...out, sent: 100, received: 1000, retransmits: 1, established: 1, rttSumUs: 1500, rttVarSumUs: 300, rttCount: 3 });
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

  it('two frames in one interval add up; the next interval starts from nothing', () => {
    const a = agg();
    ingest(a, { ...out, sent: 100, received: 10, established: 1 });
    ingest(a, { ...out, sent: 200, received: 20, closed: 1 });
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 300, bytes_read: 30, tcp_established: 1, tcp_closed: 1 });
    ingest(a, { ...out, sent: 5 });
    expect(flushOne(a).fields).toMatchObject({ bytes_written: 5, bytes_read: 0, tcp_established: 0, tcp_closed: 0 });
  });

  it.each([
    ['retransmits', { retransmits: 4 }, { retransmits: 4 }],
    ['an establishment', { established: 1 }, { tcp_established: 1 }],
    ['a close', { closed: 1 }, { tcp_closed: 1 }],
  ])('%s alone make a point', (_what, delta, want) => {
    const zero = { bytes_written: 0, bytes_read: 0, client_sent: 0, server_sent: 0, retransmits: 0, rtt: 0, rtt_var: 0, tcp_established: 0, tcp_closed: 0 };
    expect(flushOne(ingest(agg(), { ...out, sent: 0, ...delta })).fields).toEqual({ ...zero, ...want });
  });

  it('a client port the kernel kept (below --ephemeral-port) stays numeric; 0 and ports at/above it are *', () => {
    const a = ingest(
      agg({ ephemeralPort: 32768 }),
      flow('10.0.0.1', 1023, '10.0.0.2', 22, 'out', { sent: 1 }),
      flow('10.0.0.1', 0, '10.0.0.2', 22, 'out', { sent: 2 }),
      flow('10.0.0.1', 32768, '10.0.0.2', 22, 'out', { sent: 4 }),
    );
    // The two collapsed keys have the same tags: one point.
    expect(a.flush(TS, COMMON).map((p) => [p.tags.src_port, p.tags.client_port, p.tags.dst_port, p.fields.bytes_written]).sort()).toEqual([
      ['*', '*', '22', 6],
      ['1023', '1023', '22', 1],
    ]);
  });

  it('IPv6 flows carry family IPv6 and canonical addresses', () => {
    const p = flushOne(ingest(agg(), flow('fd00:dead:1:0:0:0:0:2', 0, '2001:db8:0:0:0:0:0:1', 443)));
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

  it('an IPv4-mapped IPv6 flow reports as IPv4', () => {
    expect(flushOne(ingest(agg(), flow('::ffff:10.0.0.1', 0, '::ffff:10.0.0.2', 5432))).tags).toMatchObject({ family: 'IPv4', src_ip: '10.0.0.1', dst_ip: '10.0.0.2', dst_port: '5432' });
  });
});

describe('NetflowAggregator: incoming TCP', () => {
  it('conn_side server; the server is the local side (server_ip_type from the local address)', () => {
    const p = flushOne(ingest(agg(), flow('10.0.0.1', 8080, '203.0.113.5', 0, 'in', { sent: 900, received: 90, comm: 'nginx', pid: 77 })));
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
    const a = ingest(agg({ ephemeralPort: 32768 }), flow('10.0.0.1', 40000, '10.0.0.9', 1023, 'in'), flow('10.0.0.1', 40000, '10.0.0.9', 0, 'in'));
    expect(a.flush(TS, COMMON).map((p) => [p.tags.src_port, p.tags.dst_port, p.tags.server_port, p.tags.client_port]).sort()).toEqual([
      ['40000', '*', '40000', '*'],
      ['40000', '1023', '40000', '1023'],
    ]);
  });
});

describe('NetflowAggregator: keys of unknown direction (connections older than the loader)', () => {
  it('are incoming when the local port is listening, and the client port collapses in user space', () => {
    const a = agg();
    a.setListeningPorts([8080]);
    const p = flushOne(ingest(a, flow('10.0.0.1', 8080, '10.0.0.9', 50000, 'unknown', { sent: 100, received: 5 })));
    expect(p.tags).toMatchObject({ direction: 'incoming', conn_side: 'server', src_port: '8080', dst_port: '*', server_ip: '10.0.0.1', server_port: '8080', client_ip: '10.0.0.9', client_port: '*' });
    expect(p.fields).toMatchObject({ bytes_written: 100, bytes_read: 5, client_sent: 5, server_sent: 100 });
  });

  it('are outgoing without a listening port, the local (client) port collapsing', () => {
    const a = agg();
    a.setListeningPorts([8080]);
    expect(flushOne(ingest(a, flow('10.0.0.1', 45000, '10.0.0.9', 443, 'unknown'))).tags).toMatchObject({ direction: 'outgoing', conn_side: 'client', src_port: '*', dst_port: '443' });
  });

  it('keep a client port below --ephemeral-port', () => {
    const a = agg({ ephemeralPort: 32768 });
    expect(flushOne(ingest(a, flow('10.0.0.1', 1000, '10.0.0.9', 22, 'unknown'))).tags).toMatchObject({ direction: 'outgoing', src_port: '1000', dst_port: '22' });
  });

  it('setListeningPorts replaces the previous set', () => {
    const a = agg();
    a.setListeningPorts([8080]);
    a.setListeningPorts([9090]);
    expect(flushOne(ingest(a, flow('10.0.0.1', 8080, '10.0.0.9', 443, 'unknown'))).tags.direction).toBe('outgoing');
  });

  it('the kernel direction wins over the listening set', () => {
    const a = agg();
    a.setListeningPorts([8080]);
    expect(flushOne(ingest(a, flow('10.0.0.1', 8080, '10.0.0.9', 443, 'out'))).tags.direction).toBe('outgoing');
  });
});

describe('NetflowAggregator: kernel keys that end up with the same tags fold into one point', () => {
  it('two unknown-direction keys differing only in the client port: summed, tcp_established summed, rtt the mean of all samples', () => {
    const a = ingest(
      agg(),
      flow('10.0.0.1', 40001, '10.0.0.2', 443, 'unknown', { sent: 10, received: 100, retransmits: 1, established: 1, rttSumUs: 300, rttVarSumUs: 30, rttCount: 1 }),
      flow('10.0.0.1', 40002, '10.0.0.2', 443, 'unknown', { sent: 20, received: 200, retransmits: 2, established: 2, rttSumUs: 300, rttVarSumUs: 31, rttCount: 2 }),
    );
    const p = flushOne(a);
    expect(p.tags).toMatchObject({ src_port: '*', dst_port: '443', pid: '4242' });
    expect(p.fields).toEqual({
      bytes_written: 30,
      bytes_read: 300,
      client_sent: 30,
      server_sent: 300,
      retransmits: 3,
      rtt: 200, // (300 + 300) / 3, not the mean of the keys' means (300 and 150)
      rtt_var: 20, // 61 / 3 = 20.33, an integer field
      tcp_established: 3,
      tcp_closed: 0,
    });
    for (const k of Object.keys(p.fields)) expect(Number.isSafeInteger(p.fields[k]), k).toBe(true);
  });

  it('thread-named comms of one pid fold into the process name processName gives', () => {
    const names = new Map([[4242, 'java']]);
    const a = ingest(
      agg({ processName: (pid) => names.get(pid) }),
      flow('10.0.0.1', 0, '10.0.0.2', 443, 'out', { comm: 'http-worker-1', sent: 1 }),
      flow('10.0.0.1', 0, '10.0.0.2', 443, 'out', { comm: 'http-worker-2', sent: 2 }),
      flow('10.0.0.1', 0, '10.0.0.2', 443, 'out', { comm: 'GC Thread#0', sent: 4 }),
      flow('10.0.0.1', 0, '10.0.0.2', 443, 'out', { pid: 77, comm: 'nginx', sent: 8 }),
    );
    const pts = a.flush(TS, COMMON);
    expect(pts.map((p) => [p.tags.pid, p.tags.process_name, p.fields.bytes_written]).sort()).toEqual([
      ['4242', 'java', 7],
      // A pid processName does not know keeps the kernel's comm.
      ['77', 'nginx', 8],
    ]);
  });

  it('without processName, different comms of one pid stay apart', () => {
    const a = ingest(agg(), flow('10.0.0.1', 0, '10.0.0.2', 443, 'out', { comm: 'w1' }), flow('10.0.0.1', 0, '10.0.0.2', 443, 'out', { comm: 'w2' }));
    expect(a.flush(TS, COMMON).map((p) => p.tags.process_name).sort()).toEqual(['w1', 'w2']);
  });

  it('a key without an RTT sample does not pull the mean down; no sample at all gives rtt 0', () => {
    const a = ingest(agg(), flow('10.0.0.1', 0, '10.0.0.2', 443, 'out', { rttSumUs: 400, rttVarSumUs: 40, rttCount: 1 }), flow('10.0.0.1', 40002, '10.0.0.2', 443, 'unknown'));
    expect(flushOne(a).fields).toMatchObject({ rtt: 400, rtt_var: 40 });
    expect(flushOne(ingest(a, flow('10.0.0.1', 0, '10.0.0.2', 443))).fields).toMatchObject({ rtt: 0, rtt_var: 0 });
  });

  it('different pid, process, server port, server ip, netns, transport or direction are separate points', () => {
    const base = flow('10.0.0.1', 0, '10.0.0.2', 443);
    const a = ingest(
      agg(),
      base,
      { ...base, pid: 1 },
      { ...base, comm: 'wget' },
      { ...base, remotePort: 8443 },
      { ...base, remote: '10.0.0.3' },
      { ...base, netns: 99 },
      { ...base, transport: 'udp' },
      { ...base, direction: 'in', localPort: 443, remotePort: 0 },
      base,
    );
    const pts = a.flush(TS, COMMON);
    expect(pts).toHaveLength(8);
    const merged = pts.filter((p) => p.fields.bytes_written === 2);
    expect(merged).toHaveLength(1);
    expect(merged[0]!.tags).toMatchObject({ pid: '4242', process_name: 'curl', dst_port: '443', dst_ip: '10.0.0.2', netns: String(NETNS), transport: 'tcp', direction: 'outgoing' });
  });
});

describe('NetflowAggregator: UDP', () => {
  it('points carry only the byte fields', () => {
    const p = flushOne(ingest(agg(), flow('10.0.0.1', 0, '10.0.0.53', 53, 'out', { transport: 'udp', sent: 40, received: 120, pid: 1234, comm: 'dig', netns: 4026531993 })));
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
    for (const k of TCP_ONLY) expect(p.fields).not.toHaveProperty(k);
  });

  it('an owner the kernel never learnt is pid 0 with an empty process name', () => {
    const a = ingest(agg({ processName: () => undefined }), flow('10.0.0.1', 0, '10.0.0.53', 53, 'out', { transport: 'udp', pid: 0, comm: '', netns: 31337 }));
    expect(flushOne(a).tags).toMatchObject({ pid: '0', process_name: '', netns: '31337' });
  });

  it('an incoming UDP flow is the server side', () => {
    const p = flushOne(ingest(agg(), flow('10.0.0.1', 53, '10.0.0.7', 0, 'in', { transport: 'udp', sent: 100, received: 30 })));
    expect(p.tags).toMatchObject({ direction: 'incoming', conn_side: 'server', src_port: '53', dst_port: '*', server_ip: '10.0.0.1', client_ip: '10.0.0.7' });
    expect(p.fields).toEqual({ bytes_written: 100, bytes_read: 30, client_sent: 30, server_sent: 100 });
  });

  it('TCP and UDP with the same addresses are separate points', () => {
    const a = ingest(agg(), flow('10.0.0.1', 0, '10.0.0.53', 53), flow('10.0.0.1', 0, '10.0.0.53', 53, 'out', { transport: 'udp' }));
    expect(a.flush(TS, COMMON).map((p) => p.tags.transport).sort()).toEqual(['tcp', 'udp']);
  });
});

describe('NetflowAggregator: dst_domain and server_domain', () => {
  it('come from the domain lookup given to the aggregator', () => {
    const domains: Record<string, string> = { '10.201.3.2': 'app.dke.test' };
    const a = ingest(
      agg({ domainOf: (ip) => domains[ip] ?? '' }),
      flow('10.201.3.1', 0, '10.201.3.2', 443, 'out'),
      flow('10.201.3.2', 443, '10.201.3.1', 0, 'in'),
    );
    const tags = a.flush(TS, {}).map((p) => [p.tags.direction, p.tags.dst_domain, p.tags.server_domain]);
    expect(tags.sort()).toEqual([
      ['incoming', '', 'app.dke.test'],
      ['outgoing', 'app.dke.test', 'app.dke.test'],
    ]);
  });
});

describe('NetflowAggregator: what is not sent', () => {
  it('a delta with nothing in it is no point', () => {
    const a = ingest(agg(), flow('10.0.0.1', 0, '10.0.0.2', 443, 'out', { sent: 0, rttSumUs: 70, rttCount: 1 }));
    expect(a.flush(TS, COMMON)).toEqual([]);
  });

  it('zero addresses are dropped', () => {
    const a = ingest(
      agg(),
      flow('0.0.0.0', 0, '10.0.0.2', 443),
      flow('10.0.0.1', 0, '0.0.0.0', 443),
      flow('::', 0, '2001:db8::1', 443),
      flow('2001:db8::2', 0, '::', 443),
      flow('::ffff:0.0.0.0', 0, '::ffff:10.0.0.2', 443),
      flow('10.0.0.1', 0, '0.0.0.0', 53, 'out', { transport: 'udp' }),
    );
    expect(a.pendingFlows).toBe(0);
    expect(a.flush(TS, COMMON)).toEqual([]);
  });

  it('loopback-to-loopback is dropped by default; loopback to elsewhere is kept', () => {
    const a = ingest(
      agg(),
      flow('127.0.0.1', 0, '127.0.0.1', 8080),
      flow('127.0.0.5', 0, '127.0.0.1', 8080),
      flow('::1', 0, '::1', 8080),
      flow('::ffff:127.0.0.1', 0, '::ffff:127.0.0.1', 8080),
      flow('127.0.0.1', 0, '127.0.0.53', 53, 'out', { transport: 'udp' }),
      flow('10.0.0.1', 0, '127.0.0.1', 8080),
    );
    expect(a.flush(TS, COMMON).map((p) => [p.tags.src_ip, p.tags.dst_ip])).toEqual([['10.0.0.1', '127.0.0.1']]);
  });

  it('loopback-to-loopback is kept with includeLoopback', () => {
    const pts = ingest(agg({ includeLoopback: true }), flow('127.0.0.1', 0, '127.0.0.1', 8080), flow('::1', 0, '::1', 8080)).flush(TS, COMMON);
    expect(pts).toHaveLength(2);
    for (const p of pts) expect(p.tags).toMatchObject({ src_ip_type: 'loopback', dst_ip_type: 'loopback', server_ip_type: 'loopback', client_ip_type: 'loopback' });
    expect(pts.map((p) => p.tags.family).sort()).toEqual(['IPv4', 'IPv6']);
  });

  it('a frame that is not whole dke_flow_delta records throws and adds nothing', () => {
    const a = agg();
    const rec = flowDelta(flow('10.0.0.1', 0, '10.0.0.2', 443));
    expect(() => a.ingest({ type: DKE_FRAME_FLOWS, count: 2, payload: rec })).toThrow(`holds ${dke_flow_delta.size} bytes, not 2 records of ${dke_flow_delta.size}`);
    expect(a.flush(TS, COMMON)).toEqual([]);
  });
});

describe('NetflowAggregator: flush', () => {
  const t = flow('10.0.0.1', 0, '10.0.0.2', 443);

  it('commonTags are added but never override flow tags', () => {
    const a = ingest(agg(), t);
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
    const a = ingest(agg(), t);
    expect(a.pendingFlows).toBe(1);
    expect(a.flush(TS, COMMON)).toHaveLength(1);
    expect(a.pendingFlows).toBe(0);
    expect(a.flush(TS + 1n, COMMON)).toEqual([]);
  });

  it('every point of a flush carries the flush timestamp', () => {
    const pts = ingest(agg(), t, { ...t, remote: '10.0.0.3' }).flush(123n, COMMON);
    expect(pts).toHaveLength(2);
    for (const p of pts) expect(p.timestampNs).toBe(123n);
  });

  it('an empty aggregator flushes []', () => {
    expect(agg().flush(TS, COMMON)).toEqual([]);
  });
});
