// dnsflow, daemon side: DKE_FRAME_DNS_STATS frames (lookups the loader
// parsed, paired and summed per key; native/dns) into points, and the
// IP -> domain cache the loader's DKE_FRAME_DNS_NAMES feed.
import { describe, expect, it } from 'vitest';
import { DnsflowAggregator, rcodeName, type DnsflowAggregatorOptions } from '../../src/dnsflow/aggregator';
import { DomainCache } from '../../src/dnsflow/domains';
import type { Point } from '../../src/lineproto/point';
import { DKE_FRAME_DNS_STATS, dke_dnsflow_stat } from '../../src/loader/layout.generated';
import { dnsStat, dnsStatsFrame, type DnsStatSpec } from '../helpers/records';

const CLIENT = '10.201.3.1';
const SERVER = '10.201.3.2';

function agg(opts: Partial<DnsflowAggregatorOptions> = {}): DnsflowAggregator {
  return new DnsflowAggregator({ includeLoopback: false, maxGroups: 100, ...opts });
}

/** A lookup summary as the loader sends it: a client's query to SERVER:53, answered in 1 ms. */
const stat = (over: Partial<DnsStatSpec> = {}): DnsStatSpec => ({ client: CLIENT, server: SERVER, latencySumNs: 1_000_000, latencyMaxNs: 1_000_000, ...over });

describe('DnsflowAggregator', () => {
  it('client side: one point per client, server and rcode; count, mean and max latency; timeouts have none', () => {
    const a = agg({ domainOf: (ip) => (ip === SERVER ? 'ns.dke.test' : '') });
    a.ingest(dnsStatsFrame(stat({ count: 1, latencySumNs: 1_000_000, latencyMaxNs: 1_000_000 }), stat({ rcode: 3, latencySumNs: 2_000_000, latencyMaxNs: 2_000_000 })));
    a.ingest(dnsStatsFrame(stat({ count: 2, latencySumNs: 9_000_000, latencyMaxNs: 5_000_000 }), stat({ rcode: -1, count: 2, latencySumNs: 0, latencyMaxNs: 0 })));
    const points = a.flush(123n, { host: 'h', service: 'ebpf', source: 'overridden?' });
    expect(points).toHaveLength(3);
    const byRcode = new Map(points.map((p) => [p.fields.rcode, p]));
    expect(byRcode.get(0)!.fields).toEqual({ rcode: 0, count: 3, latency: 3_333_333, latency_max: 5_000_000 });
    expect(byRcode.get(3)!.fields).toEqual({ rcode: 3, count: 1, latency: 2_000_000, latency_max: 2_000_000 });
    expect(byRcode.get(-1)!.fields).toEqual({ rcode: -1, count: 2, latency: 0, latency_max: 0 });
    expect(byRcode.get(0)).toEqual<Point>({
      measurement: 'dnsflow',
      timestampNs: 123n,
      fields: byRcode.get(0)!.fields,
      tags: {
        host: 'h',
        service: 'ebpf',
        source: 'dnsflow',
        family: 'IPv4',
        direction: 'outgoing',
        transport: 'udp',
        src_ip: CLIENT,
        dst_ip: SERVER,
        src_port: '*',
        dst_port: '53',
        src_ip_type: 'private',
        dst_ip_type: 'private',
        dst_domain: 'ns.dke.test',
        conn_side: 'client',
        client_ip: CLIENT,
        client_port: '*',
        server_ip: SERVER,
        server_port: '53',
        rcode_name: 'NOERROR',
      },
    });
    expect(byRcode.get(3)!.tags.rcode_name).toBe('NXDOMAIN');
    expect(byRcode.get(-1)!.tags.rcode_name).toBe('TIMEOUT');
    expect(a.flush(124n, {})).toEqual([]);
  });

  it('rcode -1 reports latency 0 even when the loader summed some', () => {
    const a = agg();
    a.ingest(dnsStatsFrame(stat({ rcode: -1, count: 4, latencySumNs: 8_000_000, latencyMaxNs: 0 })));
    expect(a.flush(1n, {})[0]!.fields).toEqual({ rcode: -1, count: 4, latency: 0, latency_max: 0 });
  });

  it('server side: direction incoming, conn_side server, src is the server (this host), no dst_domain', () => {
    const a = agg({ domainOf: () => 'should.not.show' });
    a.ingest(dnsStatsFrame(stat({ side: 'server', client: '10.9.0.7', clientPort: 0, server: SERVER, serverPort: 53, transport: 'tcp', count: 5, latencySumNs: 500_000, latencyMaxNs: 200_000 })));
    const [p] = a.flush(1n, {});
    expect(p!.tags).toEqual({
      source: 'dnsflow',
      family: 'IPv4',
      direction: 'incoming',
      transport: 'tcp',
      src_ip: SERVER,
      dst_ip: '10.9.0.7',
      src_port: '53',
      dst_port: '*',
      src_ip_type: 'private',
      dst_ip_type: 'private',
      dst_domain: '',
      conn_side: 'server',
      client_ip: '10.9.0.7',
      client_port: '*',
      server_ip: SERVER,
      server_port: '53',
      rcode_name: 'NOERROR',
    });
    expect(p!.fields).toEqual({ rcode: 0, count: 5, latency: 100_000, latency_max: 200_000 });
  });

  it('the same lookup seen as client and as server (a local resolver) are two points', () => {
    const a = agg();
    a.ingest(dnsStatsFrame(stat(), stat({ side: 'server' })));
    expect(a.flush(1n, {}).map((p) => p.tags.conn_side).sort()).toEqual(['client', 'server']);
  });

  it('port 0 is `*`, any other port (a DNS port on both sides, a non-53 resolver) is kept', () => {
    const a = agg();
    a.ingest(dnsStatsFrame(stat({ serverPort: 5353 }), stat({ clientPort: 53 }), stat({ clientPort: 0, serverPort: 0 })));
    expect(a.flush(1n, {}).map((p) => `${p.tags.src_port}>${p.tags.dst_port}`).sort()).toEqual(['*>*', '*>5353', '53>53']);
  });

  it('IPv6 lookups carry family IPv6 and canonical addresses', () => {
    const a = agg();
    a.ingest(dnsStatsFrame(stat({ client: 'fd00:dea:3:0:0:0:0:1', server: '2001:4860:4860:0:0:0:0:8888' })));
    expect(a.flush(1n, {})[0]!.tags).toMatchObject({ family: 'IPv6', src_ip: 'fd00:dea:3::1', dst_ip: '2001:4860:4860::8888', src_ip_type: 'private', dst_ip_type: 'other' });
  });

  it('drops lookups to or from loopback unless asked', () => {
    const a = agg();
    a.ingest(dnsStatsFrame(stat({ server: '127.0.0.53' }), stat({ client: '::1', server: '::1' }), stat({ client: '127.0.0.1' })));
    expect(a.pendingGroups).toBe(0);
    expect(a.flush(1n, {})).toEqual([]);
    const b = agg({ includeLoopback: true });
    b.ingest(dnsStatsFrame(stat({ server: '127.0.0.53' })));
    expect(b.flush(1n, {})[0]!.tags).toMatchObject({ dst_ip: '127.0.0.53', dst_ip_type: 'loopback' });
  });

  it('bounds the groups of one flush and counts the lookups it shed', () => {
    const a = agg({ maxGroups: 2 });
    a.ingest(dnsStatsFrame(...[0, 1, 2, 3, 4].map((i) => stat({ client: `10.0.0.${i}`, count: i + 1 }))));
    a.ingest(dnsStatsFrame(stat({ client: '10.0.0.0', count: 10 }))); // an open group still takes lookups
    expect(a.shed).toBe(3 + 4 + 5);
    expect(a.pendingGroups).toBe(2);
    expect(a.flush(1n, {}).map((p) => [p.tags.client_ip, p.fields.count])).toEqual([
      ['10.0.0.0', 11],
      ['10.0.0.1', 2],
    ]);
    // A new flush has room again; shed stays a running total.
    a.ingest(dnsStatsFrame(stat({ client: '10.0.0.4' })));
    expect(a.flush(2n, {})).toHaveLength(1);
    expect(a.shed).toBe(12);
  });

  it('throws at a frame that is not whole dke_dnsflow_stat records', () => {
    const a = agg();
    expect(() => a.ingest({ type: DKE_FRAME_DNS_STATS, count: 1, payload: dnsStat(stat()).subarray(1) })).toThrow(`holds ${dke_dnsflow_stat.size - 1} bytes, not 1 records of ${dke_dnsflow_stat.size}`);
  });

  it.each([
    [-1, 'TIMEOUT'],
    [0, 'NOERROR'],
    [2, 'SERVFAIL'],
    [5, 'REFUSED'],
    [16, 'BADVERS'],
    [11, 'RCODE11'],
  ])('rcodeName(%i) is %s', (rcode, name) => {
    expect(rcodeName(rcode)).toBe(name);
  });
});

describe('DomainCache', () => {
  let now = 0;
  const cache = (max = 100): DomainCache => new DomainCache({ maxEntries: max, minTtlS: 60, maxTtlS: 3600, now: () => now });

  it('names an address by what it was learnt from; an unknown address is empty', () => {
    now = 0;
    const c = cache();
    c.learn('23.1.2.3', 'api.example.com', 300);
    c.learn('2600:1400::17', 'api.example.com', 300);
    expect(c.lookup('23.1.2.3')).toBe('api.example.com');
    expect(c.lookup('2600:1400::17')).toBe('api.example.com');
    expect(c.lookup('1.1.1.1')).toBe('');
    expect(c.size).toBe(2);
  });

  it('honours TTLs with a floor and a cap', () => {
    now = 0;
    const c = cache();
    c.learn('10.0.0.1', 'short.test', 5);
    c.learn('10.0.0.2', 'mid.test', 600);
    c.learn('10.0.0.3', 'long.test', 86400 * 7);
    now = 59_000;
    expect(c.lookup('10.0.0.1')).toBe('short.test'); // floor: 60 s, not 5
    now = 60_000;
    expect(c.lookup('10.0.0.1')).toBe('');
    expect(c.size).toBe(2); // an expired entry found is removed
    now = 599_000;
    expect(c.lookup('10.0.0.2')).toBe('mid.test');
    now = 600_000;
    expect(c.lookup('10.0.0.2')).toBe('');
    now = 3_599_000;
    expect(c.lookup('10.0.0.3')).toBe('long.test');
    now = 3_600_000;
    expect(c.lookup('10.0.0.3')).toBe(''); // cap: 1 h, not a week
  });

  it('the newest answer wins, with its own TTL', () => {
    now = 0;
    const c = cache();
    c.learn('10.0.0.1', 'old.test', 60);
    now = 50_000;
    c.learn('10.0.0.1', 'new.test', 60);
    now = 100_000;
    expect(c.lookup('10.0.0.1')).toBe('new.test');
  });

  it('holds at most maxEntries, dropping the least recently learned', () => {
    now = 0;
    const c = cache(3);
    for (let i = 1; i <= 3; i++) c.learn(`10.0.0.${i}`, `h${i}.test`, 300);
    c.learn('10.0.0.1', 'h1.test', 300); // refreshed: now the youngest
    c.learn('10.0.0.4', 'h4.test', 300);
    expect(c.size).toBe(3);
    expect(c.lookup('10.0.0.2')).toBe('');
    expect(['10.0.0.1', '10.0.0.3', '10.0.0.4'].map((ip) => c.lookup(ip))).toEqual(['h1.test', 'h3.test', 'h4.test']);
  });
});
