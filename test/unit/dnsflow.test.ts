// dnsflow without the kernel: record decoding (against the addon's compiled
// layout), TCP reassembly, query/answer pairing, aggregation into points and
// the IP -> domain cache, fed hand-built packets.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { DnsflowAggregator } from '../../src/dnsflow/aggregator';
import { DomainCache } from '../../src/dnsflow/domains';
import { Dnsflow } from '../../src/dnsflow/dnsflow';
import { DnsPairer, RCODE_TIMEOUT, type DnsEndpoints, type DnsTransaction } from '../../src/dnsflow/pairing';
import { parseDnsMessage, TYPE_A, TYPE_AAAA, TYPE_CNAME } from '../../src/dnsflow/parser';
import { assertDnsLayout, decodeDnsPackets, DNS_LAYOUT } from '../../src/dnsflow/record';
import { TcpDnsStreams, type TcpDnsMessage } from '../../src/dnsflow/tcp';
import type { Point } from '../../src/lineproto/point';
import { AF_INET, Direction, IPPROTO_TCP, type DirectionCode, type TcpConnRecord, type Tuple } from '../../src/loader/layout';
import { NetflowAggregator } from '../../src/netflow/aggregator';
import { ADDON_PATH } from '../../src/paths';
import { buildMessage, rawRecord, rng, tcpFramed } from '../helpers/dns-wire';
import { ipBytes } from '../helpers/records';

const MS = 1_000_000n;
const S = 1_000_000_000n;

const ep = (over: Partial<DnsEndpoints> = {}): DnsEndpoints => ({
  family: 'IPv4',
  transport: 'udp',
  clientIp: '10.201.3.1',
  clientPort: 40000,
  serverIp: '10.201.3.2',
  serverPort: 53,
  ...over,
});

describe('dns packet records', () => {
  it('match the addon compiled from bpf/dns.h', () => {
    if (!fs.existsSync(ADDON_PATH)) {
      throw new Error(`${ADDON_PATH} is missing: run \`bash scripts/build\` first (this test checks the addon's compiled record offsets)`);
    }
    const addon = createRequire(ADDON_PATH)(ADDON_PATH) as { DnsTracer: { layout: unknown } };
    expect(() => assertDnsLayout(addon.DnsTracer.layout)).not.toThrow();
    expect(() => assertDnsLayout({ ...(addon.DnsTracer.layout as object), cap_len: 60 })).toThrow(/cap_len: decoder 56, addon 60/);
  });

  it('decode IPv4/UDP and IPv6/TCP records and count malformed ones', () => {
    const q = buildMessage({ id: 5, questions: [{ name: 'a.test', type: 1 }] });
    const batch = Buffer.concat([
      rawRecord({ ktimeNs: 100n, src: '10.201.3.1', dst: '10.201.3.2', sport: 40000, dport: 53, egress: true, payload: q }),
      rawRecord({ ktimeNs: 200n, src: 'fd00:dea:3::2', dst: 'fd00:dea:3::1', sport: 53, dport: 40001, tcp: true, seq: 0xfffffff0, egress: false, payload: tcpFramed(q), wireLen: 4000 }),
    ]);
    const { packets, malformed } = decodeDnsPackets(batch);
    expect(malformed).toBe(0);
    expect(packets[0]).toMatchObject({ ktimeNs: 100n, family: 'IPv4', transport: 'udp', srcIp: '10.201.3.1', dstIp: '10.201.3.2', srcPort: 40000, dstPort: 53, egress: true, wireLen: q.length });
    expect(packets[0]!.payload.equals(q)).toBe(true);
    expect(packets[1]).toMatchObject({ family: 'IPv6', transport: 'tcp', srcIp: 'fd00:dea:3::2', dstIp: 'fd00:dea:3::1', egress: false, tcpSeq: 0xfffffff0, wireLen: 4000 });

    const bad = rawRecord({ ktimeNs: 1n, src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 53, egress: true, payload: q });
    const badFamily = Buffer.from(bad);
    badFamily.writeUInt16LE(7, 4 + DNS_LAYOUT.family);
    const badCap = Buffer.from(bad);
    badCap.writeUInt32LE(q.length + 1, 4 + DNS_LAYOUT.cap_len);
    const short = Buffer.from([8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const cutOff = bad.subarray(0, bad.length - 1);
    const r = decodeDnsPackets(Buffer.concat([badFamily, badCap, short, bad, cutOff]));
    expect(r.packets).toHaveLength(1);
    expect(r.malformed).toBe(4);
  });
});

describe('TcpDnsStreams', () => {
  const msgs = [1, 2, 3].map((id) => buildMessage({ id, qr: true, questions: [{ name: `m${id}.example.test`, type: 1 }], answers: [{ name: `m${id}.example.test`, type: 1, data: '10.0.0.1' }] }));
  const stream = Buffer.concat(msgs.map(tcpFramed));
  const ids = (out: TcpDnsMessage[]): number[] => out.map((m) => parseDnsMessage(m.message)!.id);

  /** Feeds `stream` cut at `cuts` (sorted offsets), starting at sequence number `seq0`. */
  function feed(t: TcpDnsStreams, cuts: number[], seq0 = 1000): TcpDnsMessage[] {
    const bounds = [0, ...cuts, stream.length];
    const out: TcpDnsMessage[] = [];
    for (let i = 0; i + 1 < bounds.length; i++) {
      const data = stream.subarray(bounds[i], bounds[i + 1]);
      out.push(...t.push({ key: 'k', seq: (seq0 + bounds[i]!) >>> 0, wireLen: data.length, data, ktimeNs: BigInt(i) }));
    }
    return out;
  }

  it('splits messages sharing a segment and joins messages spanning segments (prefix split too)', () => {
    expect(ids(feed(new TcpDnsStreams(), []))).toEqual([1, 2, 3]);
    const out = feed(new TcpDnsStreams(), [1, 10, msgs[0]!.length + 2 + 1]);
    expect(ids(out)).toEqual([1, 2, 3]);
    expect(out.every((m) => !m.holes)).toBe(true);
    // first byte in segment 0, last in segment 2
    expect(out[0]).toMatchObject({ firstNs: 0n, lastNs: 2n });
  });

  it('follows sequence numbers across the 2^32 wrap', () => {
    expect(ids(feed(new TcpDnsStreams(), [5, 40], 0xffffffff - 20))).toEqual([1, 2, 3]);
  });

  it('skips retransmitted bytes', () => {
    const t = new TcpDnsStreams();
    const a = stream.subarray(0, 30);
    expect(t.push({ key: 'k', seq: 0, wireLen: a.length, data: a, ktimeNs: 0n })).toEqual([]);
    expect(t.push({ key: 'k', seq: 0, wireLen: a.length, data: a, ktimeNs: 1n })).toEqual([]);
    const rest = stream.subarray(20);
    expect(ids(t.push({ key: 'k', seq: 20, wireLen: rest.length, data: rest, ktimeNs: 2n }))).toEqual([1, 2, 3]);
  });

  it('keeps the captured part of a message longer than the capture and finds the next one', () => {
    const t = new TcpDnsStreams();
    const first = tcpFramed(msgs[0]!);
    const out = t.push({ key: 'k', seq: 0, wireLen: first.length, data: first.subarray(0, 20), ktimeNs: 0n });
    expect(out).toHaveLength(1);
    expect(out[0]!.holes).toBe(true);
    expect(out[0]!.message.length).toBe(18);
    expect(parseDnsMessage(out[0]!.message)).toMatchObject({ id: 1, truncated: true });
    const second = tcpFramed(msgs[1]!);
    expect(ids(t.push({ key: 'k', seq: first.length, wireLen: second.length, data: second, ktimeNs: 1n }))).toEqual([2]);
  });

  it('gives a stream up when a gap hides a length prefix, and counts it', () => {
    const t = new TcpDnsStreams();
    const first = tcpFramed(msgs[0]!);
    const later = stream.subarray(first.length + 5);
    expect(t.push({ key: 'k', seq: 0, wireLen: 10, data: first.subarray(0, 10), ktimeNs: 0n })).toEqual([]);
    // bytes [10, first.length + 5) never seen: the hole runs past message 2's prefix
    expect(t.push({ key: 'k', seq: first.length + 5, wireLen: later.length, data: later, ktimeNs: 1n })).toHaveLength(1); // message 1, with holes
    expect(t.lost).toBe(1);
    expect(t.push({ key: 'k', seq: stream.length, wireLen: 10, data: Buffer.alloc(10), ktimeNs: 2n })).toEqual([]);
  });

  it('bounds the stream table and forgets idle streams', () => {
    const t = new TcpDnsStreams({ maxStreams: 2, maxMessageBytes: 64, idleNs: 10n });
    const d = stream.subarray(0, 4);
    t.push({ key: 'a', seq: 0, wireLen: 4, data: d, ktimeNs: 0n });
    t.push({ key: 'b', seq: 0, wireLen: 4, data: d, ktimeNs: 5n });
    t.push({ key: 'c', seq: 0, wireLen: 4, data: d, ktimeNs: 6n });
    expect(t.shed).toBe(1);
    expect(t.size).toBe(2);
    t.push({ key: 'c', seq: 0, wireLen: 4, data: d, ktimeNs: 11n }); // 'a' is idle by now: room
    expect(t.size).toBe(2);
    expect(t.shed).toBe(1);
    t.expire(100n);
    expect(t.size).toBe(0);
  });

  it('property: any segmentation of a stream yields the same messages; garbage never throws', () => {
    const r = rng(42);
    for (let i = 0; i < 2000; i++) {
      const n = Math.floor(r() * 12);
      const cuts = [...new Set(Array.from({ length: n }, () => 1 + Math.floor(r() * (stream.length - 1))))].sort((a, b) => a - b);
      const out = feed(new TcpDnsStreams(), cuts, Math.floor(r() * 2 ** 32));
      expect(ids(out)).toEqual([1, 2, 3]);
      expect(out.map((m) => m.message)).toEqual(msgs);
    }
    const t = new TcpDnsStreams({ maxStreams: 8, maxMessageBytes: 256, idleNs: 1000n });
    for (let i = 0; i < 20_000; i++) {
      const len = Math.floor(r() * 300);
      const data = Buffer.from(Array.from({ length: len }, () => Math.floor(r() * 256)));
      const wireLen = len + (r() < 0.2 ? Math.floor(r() * 5000) : 0);
      const out = t.push({ key: String(Math.floor(r() * 12)), seq: Math.floor(r() * 2 ** 32), wireLen, data, ktimeNs: BigInt(i) });
      for (const m of out) expect(m.message.length).toBeLessThanOrEqual(256);
      expect(t.size).toBeLessThanOrEqual(8);
    }
  });
});

describe('DnsPairer', () => {
  const opts = { timeoutNs: 6n * S, maxPending: 100, graceNs: S };

  it('pairs an answer with its query; the query alone is no sample', () => {
    const p = new DnsPairer(opts);
    expect(p.query(ep(), 7, 1000n * MS)).toEqual([]);
    expect(p.expire(1005n * MS)).toEqual([]); // not a timeout yet, and nothing to report
    expect(p.answer(ep(), 7, 0, 1003n * MS)).toEqual({ ...ep(), rcode: 0, latencyNs: 3_000_000 });
    expect(p.size).toBe(0);
    expect(p.answer(ep(), 7, 0, 1004n * MS)).toBeUndefined(); // a duplicate answer
    expect(p.stats.unmatched).toBe(1);
  });

  it('keys on id, transport, family, and both ends', () => {
    const p = new DnsPairer(opts);
    p.query(ep(), 1, 0n);
    for (const other of [ep({ clientPort: 40001 }), ep({ serverIp: '10.201.3.3' }), ep({ transport: 'tcp' }), ep({ serverPort: 5353 })]) {
      expect(p.answer(other, 1, 0, MS)).toBeUndefined();
    }
    expect(p.answer(ep(), 2, 0, MS)).toBeUndefined();
    expect(p.answer(ep(), 1, 3, MS)).toMatchObject({ rcode: 3 });
  });

  it('reports a query unanswered past the timeout (and grace) as rcode -1, once', () => {
    const p = new DnsPairer(opts);
    p.query(ep(), 1, 0n);
    p.query(ep({ clientPort: 40001 }), 1, 2n * S);
    expect(p.expire(7n * S - 1n)).toHaveLength(0);
    expect(p.expire(7n * S)).toEqual([{ ...ep(), rcode: RCODE_TIMEOUT, latencyNs: 0 }]);
    expect(p.expire(7n * S)).toEqual([]);
    expect(p.answer(ep(), 1, 0, 8n * S)).toBeUndefined();
    expect(p.size).toBe(1);
  });

  it('counts an answer later than the timeout as a timeout, even when it arrives before the expiry ran', () => {
    const p = new DnsPairer(opts);
    p.query(ep(), 1, 0n);
    expect(p.answer(ep(), 1, 0, 6n * S + 1n)).toEqual({ ...ep(), rcode: RCODE_TIMEOUT, latencyNs: 0 });
  });

  it('keeps a repeated query once, timed from its first send', () => {
    const p = new DnsPairer(opts);
    p.query(ep(), 1, 0n);
    p.query(ep(), 1, 500n * MS);
    expect(p.stats.repeated).toBe(1);
    expect(p.answer(ep(), 1, 0, 600n * MS)!.latencyNs).toBe(600_000_000);
  });

  it('sheds new queries when the table is full, after giving up expired ones', () => {
    const p = new DnsPairer({ ...opts, maxPending: 3 });
    for (let i = 0; i < 5; i++) p.query(ep(), i, BigInt(i) * MS);
    expect(p.size).toBe(3);
    expect(p.stats.shed).toBe(2);
    // 8 s later the three are past timeout + grace: they come back as timeouts and the new query fits
    const freed = p.query(ep(), 99, 8n * S);
    expect(freed.map((t) => t.rcode)).toEqual([RCODE_TIMEOUT, RCODE_TIMEOUT, RCODE_TIMEOUT]);
    expect(p.size).toBe(1);
    expect(p.stats.shed).toBe(2);
  });
});

describe('DnsflowAggregator', () => {
  const tx = (over: Partial<DnsTransaction> = {}): DnsTransaction => ({ ...ep(), rcode: 0, latencyNs: 1_000_000, ...over });

  it('one point per client, server and rcode: count, mean and max latency; timeouts have none', () => {
    const a = new DnsflowAggregator({ dnsPorts: [53], includeLoopback: false, maxGroups: 100, domainOf: (ip) => (ip === '10.201.3.2' ? 'ns.dke.test' : '') });
    a.add(tx({ latencyNs: 1_000_000 }));
    a.add(tx({ latencyNs: 4_000_000, clientPort: 40002 }));
    a.add(tx({ rcode: 3, latencyNs: 2_000_000 }));
    a.add(tx({ rcode: RCODE_TIMEOUT, latencyNs: 0 }));
    a.add(tx({ rcode: RCODE_TIMEOUT, latencyNs: 0 }));
    const points = a.flush(123n, { host: 'h', service: 'ebpf', source: 'overridden?' });
    expect(points).toHaveLength(3);
    const byRcode = new Map(points.map((p) => [p.fields.rcode, p]));
    expect(byRcode.get(0)!.fields).toEqual({ rcode: 0, count: 2, latency: 2_500_000, latency_max: 4_000_000 });
    expect(byRcode.get(3)!.fields).toEqual({ rcode: 3, count: 1, latency: 2_000_000, latency_max: 2_000_000 });
    expect(byRcode.get(-1)!.fields).toEqual({ rcode: -1, count: 2, latency: 0, latency_max: 0 });
    expect(byRcode.get(0)).toMatchObject<Partial<Point>>({
      measurement: 'dnsflow',
      timestampNs: 123n,
      tags: {
        host: 'h',
        service: 'ebpf',
        source: 'dnsflow',
        family: 'IPv4',
        direction: 'outgoing',
        transport: 'udp',
        src_ip: '10.201.3.1',
        dst_ip: '10.201.3.2',
        src_port: '*',
        dst_port: '53',
        src_ip_type: 'private',
        dst_ip_type: 'private',
        dst_domain: 'ns.dke.test',
        conn_side: 'client',
        client_ip: '10.201.3.1',
        client_port: '*',
        server_ip: '10.201.3.2',
        server_port: '53',
        rcode_name: 'NOERROR',
      },
    });
    expect(byRcode.get(-1)!.tags.rcode_name).toBe('TIMEOUT');
    expect(a.flush(124n, {})).toEqual([]);
  });

  it('keeps DNS ports, collapses the rest, and drops loopback unless asked', () => {
    const a = new DnsflowAggregator({ dnsPorts: [53, 5353], includeLoopback: false, maxGroups: 100 });
    a.add(tx({ serverPort: 5353 }));
    a.add(tx({ serverPort: 8053 }));
    a.add(tx({ clientPort: 53 })); // resolver to resolver
    a.add(tx({ serverIp: '127.0.0.53' }));
    a.add(tx({ family: 'IPv6', clientIp: '::1', serverIp: '::1' }));
    const ports = a.flush(1n, {}).map((p) => `${p.tags.src_port}>${p.tags.dst_port}`);
    expect(ports.sort()).toEqual(['*>*', '*>5353', '53>53']);
    const b = new DnsflowAggregator({ dnsPorts: [53], includeLoopback: true, maxGroups: 100 });
    b.add(tx({ serverIp: '127.0.0.53' }));
    expect(b.flush(1n, {})[0]!.tags).toMatchObject({ dst_ip: '127.0.0.53', dst_ip_type: 'loopback' });
  });

  it('bounds the groups of one flush and counts what it shed', () => {
    const a = new DnsflowAggregator({ dnsPorts: [53], includeLoopback: false, maxGroups: 2 });
    for (let i = 0; i < 5; i++) a.add(tx({ clientIp: `10.0.0.${i}` }));
    a.add(tx({ clientIp: '10.0.0.0' })); // an open group still takes samples
    expect(a.shed).toBe(3);
    expect(a.flush(1n, {}).map((p) => p.fields.count)).toEqual([2, 1]);
  });
});

describe('DomainCache', () => {
  let now = 0;
  const cache = (max = 100): DomainCache => new DomainCache({ maxEntries: max, minTtlS: 60, maxTtlS: 3600, now: () => now });
  const answer = (q: string, answers: Parameters<typeof buildMessage>[0]['answers'], rcode = 0) =>
    parseDnsMessage(buildMessage({ id: 1, qr: true, rcode, questions: [{ name: q, type: TYPE_A }], answers }))!;

  it('names an address by the name the client asked for, through the CNAME chain', () => {
    now = 0;
    const c = cache();
    const n = c.learn(
      answer('api.example.com', [
        { name: 'api.example.com', type: TYPE_CNAME, data: 'api.example.com.edgekey.net' },
        { name: 'api.example.com.edgekey.net', type: TYPE_CNAME, data: 'e1.akamaiedge.net' },
        { name: 'e1.akamaiedge.net', type: TYPE_A, data: '23.1.2.3' },
        { name: 'e1.akamaiedge.net', type: TYPE_AAAA, data: '2600:1400::17' },
        { name: 'unrelated.example.org', type: TYPE_A, data: '10.9.9.9' },
      ]),
    );
    expect(n).toBe(3);
    expect(c.lookup('23.1.2.3')).toBe('api.example.com');
    expect(c.lookup('2600:1400::17')).toBe('api.example.com');
    expect(c.lookup('10.9.9.9')).toBe('unrelated.example.org');
    expect(c.lookup('1.1.1.1')).toBe('');
  });

  it('survives CNAME loops', () => {
    const c = cache();
    c.learn(
      answer('a.test', [
        { name: 'a.test', type: TYPE_CNAME, data: 'b.test' },
        { name: 'b.test', type: TYPE_CNAME, data: 'a.test' },
        { name: 'b.test', type: TYPE_A, data: '10.0.0.1' },
      ]),
    );
    expect(c.lookup('10.0.0.1')).toBe('a.test');
  });

  it('honours TTLs with a floor and a cap', () => {
    now = 0;
    const c = cache();
    c.learn(answer('short.test', [{ name: 'short.test', type: TYPE_A, ttl: 5, data: '10.0.0.1' }]));
    c.learn(answer('mid.test', [{ name: 'mid.test', type: TYPE_A, ttl: 600, data: '10.0.0.2' }]));
    c.learn(answer('long.test', [{ name: 'long.test', type: TYPE_A, ttl: 86400 * 7, data: '10.0.0.3' }]));
    now = 59_000;
    expect(c.lookup('10.0.0.1')).toBe('short.test'); // floor: 60 s, not 5
    now = 60_000;
    expect(c.lookup('10.0.0.1')).toBe('');
    now = 599_000;
    expect(c.lookup('10.0.0.2')).toBe('mid.test');
    now = 600_000;
    expect(c.lookup('10.0.0.2')).toBe('');
    now = 3_599_000;
    expect(c.lookup('10.0.0.3')).toBe('long.test');
    now = 3_600_000;
    expect(c.lookup('10.0.0.3')).toBe(''); // cap: 1 h, not a week
  });

  it('learns only from successful answers, and the newest answer wins', () => {
    now = 0;
    const c = cache();
    expect(c.learn(answer('x.test', [{ name: 'x.test', type: TYPE_A, data: '10.0.0.1' }], 3))).toBe(0);
    c.learn(answer('old.test', [{ name: 'old.test', type: TYPE_A, data: '10.0.0.1' }]));
    c.learn(answer('new.test', [{ name: 'new.test', type: TYPE_A, data: '10.0.0.1' }]));
    expect(c.lookup('10.0.0.1')).toBe('new.test');
  });

  it('holds at most maxEntries, dropping the least recently learned', () => {
    now = 0;
    const c = cache(3);
    for (let i = 1; i <= 3; i++) c.learn(answer(`h${i}.test`, [{ name: `h${i}.test`, type: TYPE_A, data: `10.0.0.${i}` }]));
    c.learn(answer('h1.test', [{ name: 'h1.test', type: TYPE_A, data: '10.0.0.1' }])); // refreshed: now the youngest
    c.learn(answer('h4.test', [{ name: 'h4.test', type: TYPE_A, data: '10.0.0.4' }]));
    expect(c.size).toBe(3);
    expect(c.lookup('10.0.0.2')).toBe('');
    expect(['10.0.0.1', '10.0.0.3', '10.0.0.4'].map((ip) => c.lookup(ip))).toEqual(['h1.test', 'h3.test', 'h4.test']);
  });
});

describe('Dnsflow (records to points)', () => {
  const client = '10.201.3.1';
  const server = '10.201.3.2';

  function query(id: number, name: string, t: bigint, sport = 40000, tcp = false): Buffer {
    const q = buildMessage({ id, questions: [{ name, type: TYPE_A }] });
    return rawRecord({ ktimeNs: t, src: client, dst: server, sport, dport: 53, egress: true, tcp, seq: 100, payload: tcp ? tcpFramed(q) : q });
  }
  function reply(id: number, name: string, t: bigint, rcode = 0, sport = 40000, ip = '10.201.3.2'): Buffer {
    const a = buildMessage({ id, qr: true, rcode, questions: [{ name, type: TYPE_A }], answers: rcode ? [] : [{ name, type: TYPE_A, data: ip }] });
    return rawRecord({ ktimeNs: t, src: server, dst: client, sport: 53, dport: sport, egress: false, payload: a });
  }

  it('turns a batch of lookups into points and feeds the domain cache', () => {
    const d = new Dnsflow({ dnsPorts: [53], timeoutMs: 6000, includeLoopback: false });
    d.ingest(Buffer.concat([query(1, 'web.dke.test', 1000n * MS), reply(1, 'web.dke.test', 1001n * MS)]));
    d.ingest(Buffer.concat([query(2, 'web.dke.test', 1002n * MS, 40001), reply(2, 'web.dke.test', 1005n * MS, 0, 40001)]));
    d.ingest(Buffer.concat([query(3, 'nope.dke.test', 1006n * MS), reply(3, 'nope.dke.test', 1008n * MS, 3)]));
    d.ingest(query(4, 'slow.dke.test', 1010n * MS)); // never answered
    expect(d.domains.lookup('10.201.3.2')).toBe('web.dke.test');

    const points = d.flush(1100n * MS, 5n, {});
    expect(points.map((p) => p.fields)).toEqual([
      { rcode: 0, count: 2, latency: 2_000_000, latency_max: 3_000_000 },
      { rcode: 3, count: 1, latency: 2_000_000, latency_max: 2_000_000 },
    ]);
    expect(points[0]!.tags.dst_domain).toBe('web.dke.test');
    expect(d.pendingQueries).toBe(1);
    const later = d.flush(1010n * MS + 7n * S + 1n, 6n, {});
    expect(later.map((p) => p.fields)).toEqual([{ rcode: -1, count: 1, latency: 0, latency_max: 0 }]);
    expect(d.stats()).toMatchObject({ packets: 7, notDns: 0, unmatchedAnswers: 0 });
  });

  it('pairs DNS over TCP across segments, timed from the query\'s first byte to the answer\'s last', () => {
    const d = new Dnsflow({ dnsPorts: [53], timeoutMs: 6000, includeLoopback: false });
    d.ingest(query(9, 'web.dke.test', 1000n * MS, 41000, true));
    const a = tcpFramed(buildMessage({ id: 9, qr: true, questions: [{ name: 'web.dke.test', type: TYPE_A }], answers: [{ name: 'web.dke.test', type: TYPE_A, data: '10.201.3.9' }] }));
    const seg = (t: bigint, from: number, to: number): Buffer =>
      rawRecord({ ktimeNs: t, src: server, dst: client, sport: 53, dport: 41000, tcp: true, seq: 7000 + from, egress: false, payload: a.subarray(from, to) });
    d.ingest(Buffer.concat([seg(1002n * MS, 0, 1), seg(1003n * MS, 1, 20), seg(1004n * MS, 20, a.length)]));
    const [p] = d.flush(1100n * MS, 1n, {});
    expect(p!.tags).toMatchObject({ transport: 'tcp', dst_port: '53', src_port: '*' });
    expect(p!.fields).toEqual({ rcode: 0, count: 1, latency: 4_000_000, latency_max: 4_000_000 });
    expect(d.domains.lookup('10.201.3.9')).toBe('web.dke.test');
  });

  it('ignores what is not a client query or answer, and counts what is not DNS', () => {
    const d = new Dnsflow({ dnsPorts: [53], timeoutMs: 6000, includeLoopback: false });
    const junk = rawRecord({ ktimeNs: 1n, src: client, dst: server, sport: 40000, dport: 53, egress: true, payload: Buffer.from('GET / HTTP/1.1') });
    const noQuestion = rawRecord({ ktimeNs: 1n, src: client, dst: server, sport: 40000, dport: 53, egress: true, payload: Buffer.alloc(12) });
    // a query received (we are the server) is the other side's business
    const inbound = rawRecord({ ktimeNs: 1n, src: server, dst: client, sport: 40000, dport: 53, egress: false, payload: buildMessage({ id: 1, questions: [{ name: 'a.test', type: 1 }] }) });
    d.ingest(Buffer.concat([junk, noQuestion, inbound]));
    expect(d.stats().notDns).toBe(2);
    expect(d.pendingQueries).toBe(0);
    expect(d.flush(10n * S, 1n, {})).toEqual([]);
  });
});

describe('netflow dst_domain and server_domain', () => {
  it('come from the domain lookup given to the netflow aggregator', () => {
    const domains: Record<string, string> = { '10.201.3.2': 'app.dke.test' };
    const agg = new NetflowAggregator({ ephemeralPort: 0, includeLoopback: false, domainOf: (ip) => domains[ip] ?? '' });
    const tuple = (local: string, lport: number, remote: string, rport: number, direction: DirectionCode): Tuple => ({
      localAddr: ipBytes(local),
      remoteAddr: ipBytes(remote),
      localPort: lport,
      remotePort: rport,
      family: AF_INET,
      proto: IPPROTO_TCP,
      direction,
      netns: 1,
    });
    const conn = (cookie: bigint, t: Tuple): TcpConnRecord => ({ tuple: t, cookie, bytesSent: 10, bytesReceived: 20, pid: 1, totalRetrans: 0, srttUs: 0, rttvarUs: 0, established: true, closed: false, comm: 'c' });
    agg.ingestSnapshot({
      generation: 1,
      tcp: [conn(1n, tuple('10.201.3.1', 40000, '10.201.3.2', 443, Direction.outgoing)), conn(2n, tuple('10.201.3.2', 443, '10.201.3.1', 40001, Direction.incoming))],
      udp: [],
      owners: [],
      telemetry: [],
    });
    const tags = agg.flush(1n, {}).map((p) => [p.tags.direction, p.tags.dst_domain, p.tags.server_domain]);
    expect(tags.sort()).toEqual([
      ['incoming', '', 'app.dke.test'],
      ['outgoing', 'app.dke.test', 'app.dke.test'],
    ]);
  });
});
