// The console's pure logic: which spans come from rollups, the time-series step,
// `where` parsing and its SQL, the map graph, the fill bands, and how a body is
// cut into points for forwarding.
import { describe, expect, it } from 'vitest';
import { addressOwners, bandOf, buildMap, type FlowTotals } from '../../src/console/graph';
import { forwardRecord } from '../../src/console/forward';
import { HOUR, MINUTE, Params, QueryError, autoStep, netflowSource, parseRange, parseStep, parseTime, parseWhere, planSpans, tiersForStep, whereSql } from '../../src/console/plan';
import { pointTimeMs } from '../../src/writeapi/writeapi';
import { parseLines } from '../../src/lineproto/parse';

const T0 = Date.UTC(2025, 0, 1);

describe('planSpans', () => {
  it('covers [from, to) exactly, without overlap, coarsest rollups in the middle', () => {
    const from = T0 + 7 * MINUTE + 13_000;
    const to = T0 + 5 * HOUR + 22 * MINUTE + 1;
    const spans = planSpans(from, to);
    expect(spans).toEqual([
      { res: 0, from, to: T0 + 10 * MINUTE },
      { res: 5 * MINUTE, from: T0 + 10 * MINUTE, to: T0 + HOUR },
      { res: HOUR, from: T0 + HOUR, to: T0 + 5 * HOUR },
      { res: 5 * MINUTE, from: T0 + 5 * HOUR, to: T0 + 5 * HOUR + 20 * MINUTE },
      { res: 0, from: T0 + 5 * HOUR + 20 * MINUTE, to },
    ]);
  });

  it('uses raw points only when no whole bucket fits, and nothing for an empty range', () => {
    expect(planSpans(T0 + 1000, T0 + 4 * MINUTE)).toEqual([{ res: 0, from: T0 + 1000, to: T0 + 4 * MINUTE }]);
    expect(planSpans(T0, T0)).toEqual([]);
  });

  it('random ranges: spans are contiguous and aligned to their resolution', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 500; i++) {
      const from = T0 + Math.floor(rnd() * 50 * HOUR);
      const to = from + Math.floor(rnd() * 50 * HOUR) + 1;
      const spans = planSpans(from, to);
      expect(spans[0]!.from).toBe(from);
      expect(spans.at(-1)!.to).toBe(to);
      for (let j = 1; j < spans.length; j++) expect(spans[j]!.from).toBe(spans[j - 1]!.to);
      for (const s of spans) {
        expect(s.from).toBeLessThan(s.to);
        if (s.res) expect([s.from % s.res, s.to % s.res]).toEqual([0, 0]);
      }
    }
  });

  it('a time series only uses rollups whose buckets do not straddle its steps', () => {
    expect(tiersForStep(5 * MINUTE)).toEqual([5 * MINUTE]);
    expect(tiersForStep(3 * HOUR)).toEqual([HOUR, 5 * MINUTE]);
    expect(tiersForStep(30_000)).toEqual([]);
    expect(autoStep(T0, T0 + 48 * HOUR)).toBe(5 * MINUTE);
    expect(autoStep(T0, T0 + HOUR)).toBe(10_000);
  });
});

describe('request parsing', () => {
  it('takes RFC 3339 and Unix ms, defaults to the last 48 hours', () => {
    expect(parseTime('2025-01-01T00:00:00Z', 0, 'from')).toBe(T0);
    expect(parseTime(String(T0), 0, 'from')).toBe(T0);
    expect(() => parseTime('yesterday', 0, 'from')).toThrow(QueryError);
    expect(parseRange(new URLSearchParams(), T0)).toEqual({ from: T0 - 48 * HOUR, to: T0 });
    expect(() => parseRange(new URLSearchParams({ from: String(T0), to: String(T0) }), T0)).toThrow(/must be before/);
  });

  it('steps: durations of at least 1s, and not too many points', () => {
    const r = { from: T0, to: T0 + HOUR };
    expect(parseStep('30s', r)).toBe(30_000);
    expect(parseStep('5m', r)).toBe(5 * MINUTE);
    expect(parseStep('60000', r)).toBe(MINUTE);
    expect(() => parseStep('10ms', r)).toThrow(QueryError);
    expect(() => parseStep('1s', { from: T0, to: T0 + 48 * HOUR })).toThrow(/more than 5000/);
  });

  it('where: k:v, a repeated key is any of its values, bad keys are refused', () => {
    expect(parseWhere(['dst_port:443', 'host:a', 'dst_port:80', 'dst_domain:'])).toEqual([
      { key: 'dst_port', values: ['443', '80'] },
      { key: 'host', values: ['a'] },
      { key: 'dst_domain', values: [''] },
    ]);
    expect(() => parseWhere(['nocolon'])).toThrow(QueryError);
    expect(() => parseWhere(["x'); DROP TABLE series; --:1"])).toThrow(QueryError);
  });

  it('where SQL: columns for known tags, JSON for the rest, values always as parameters', () => {
    const p = new Params();
    const sql = whereSql(parseWhere(['dst_port:443', 'dst_port:80', 'team:net', 'dst_domain:']), p);
    expect(sql).toBe(`s.dst_port IN ($1, $2) AND json_extract_string(s.tags, $3) = $4 AND coalesce(s.dst_domain, '') = ''`);
    expect(p.values).toEqual(['443', '80', '$."team"', 'net']);
    expect(whereSql([], new Params())).toBe('TRUE');
  });

  it('netflow source: one SELECT per span, rollup rows and raw points alike', () => {
    const p = new Params();
    const sql = netflowSource(planSpans(T0 + 1000, T0 + 2 * HOUR), 'SELECT 1', p);
    expect(sql.match(/FROM netflow\b/g)).toHaveLength(1);
    expect(sql.match(/FROM netflow_5m/g)).toHaveLength(1);
    expect(sql.match(/FROM netflow_1h/g)).toHaveLength(1);
    expect(p.values).toEqual([T0 + 1000, T0 + 5 * MINUTE, T0 + 5 * MINUTE, T0 + HOUR, T0 + HOUR, T0 + 2 * HOUR]);
  });
});

describe('write path helpers', () => {
  it('point times follow the precision; a point without one gets the arrival time', () => {
    const [p] = parseLines('m f=1i 1735689600123456789');
    expect(pointTimeMs(p!, 'ns', 0)).toBe(1735689600123);
    const [q] = parseLines('m f=1i 1735689600');
    expect(pointTimeMs(q!, 's', 0)).toBe(1735689600000);
    expect(pointTimeMs(q!, 'ms', 0)).toBe(1735689600);
    const [r] = parseLines('m f=1i');
    expect(pointTimeMs(r!, 'ns', 42)).toBe(42);
  });

  it('a forwarded body keeps its bytes; its point ends are byte offsets, raw newlines in strings included', () => {
    const body = 'bash cmd="a\nb",user="é" 1\n# note\nbash cmd="c" 2';
    const ends: number[] = [];
    expect(parseLines(body, ends)).toHaveLength(2);
    const rec = forwardRecord({ category: 'logging', input: 'ebpf-bash', precision: 'ns', body, ends });
    expect(rec.body.toString()).toBe(`${body}\n`);
    expect(rec.points).toBe(2);
    const first = rec.body.subarray(0, rec.ends[0]).toString();
    expect(first).toBe('bash cmd="a\nb",user="é" 1\n');
    expect(rec.ends[1]).toBe(rec.body.length);
    expect(parseLines(rec.body.subarray(rec.ends[0]).toString())).toHaveLength(1);
  });
});

const flow = (host: string, src: string, dst: string, direction: string, m: Partial<FlowTotals> = {}): FlowTotals => ({
  host, src_ip: src, dst_ip: dst, direction,
  bytes_written: 0, bytes_read: 0, retransmits: 0, tcp_established: 0, tcp_closed: 0, rtt_sum: 0, rtt_n: 0, rtt_var_sum: 0, rtt_var_n: 0, ...m,
});

describe('network map', () => {
  const rows: FlowTotals[] = [
    flow('a', '10.0.0.1', '10.0.0.2', 'outgoing', { bytes_written: 100, bytes_read: 1000, tcp_established: 2, rtt_sum: 300, rtt_n: 2, rtt_var_sum: 40, rtt_var_n: 2 }),
    flow('b', '10.0.0.2', '10.0.0.1', 'incoming', { bytes_written: 1000, bytes_read: 100, tcp_established: 2, tcp_closed: 2, rtt_sum: 100, rtt_n: 1, rtt_var_sum: 10, rtt_var_n: 1 }),
    flow('a', '10.0.0.1', '93.184.216.34', 'outgoing', { bytes_written: 50, bytes_read: 500, retransmits: 3, rtt_sum: 900, rtt_n: 1 }),
    flow('b', '10.0.0.2', '93.184.216.99', 'outgoing', { bytes_written: 7, bytes_read: 8 }),
    flow('b', '10.0.0.2', '1.1.1.1', 'outgoing', { bytes_written: 1, bytes_read: 2 }),
    flow('a', '127.0.0.1', '127.0.0.1', 'outgoing', { bytes_written: 5, bytes_read: 5 }),
  ];
  const owners = addressOwners(rows);

  it('learns each host\'s addresses from its own flows, loopback belongs to nobody', () => {
    expect([...owners]).toEqual([['10.0.0.1', 'a'], ['10.0.0.2', 'b']]);
    expect(addressOwners([flow('z', '10.9.9.9', 'x', 'outgoing'), flow('y', '10.9.9.9', 'x', 'outgoing')]).get('10.9.9.9')).toBe('y');
  });

  it('hosts, one outside node, two-way edges; sums and means are exact', () => {
    const g = buildMap(rows, owners);
    expect(g.nodes.map((n) => [n.id, n.kind])).toEqual([['a', 'host'], ['b', 'host'], ['outside', 'outside']]);
    const a = g.nodes[0]!;
    expect(a.metrics).toEqual({ bytes_written: 155, bytes_read: 1505, rtt: 400, rtt_var: 20, tcp_established: 2, retransmits: 3, tcp_closed: 0 });
    expect(a.inbound).toBe(1505);
    expect(g.nodes[2]!.addresses).toEqual(['1.1.1.1', '93.184.216.34', '93.184.216.99']);
    // the outside node received what the hosts sent to it
    expect(g.nodes[2]!.metrics.bytes_read).toBe(50 + 7 + 1);
    expect(g.edges.map((e) => [e.source, e.target, e.direction, e.traffic])).toEqual([
      ['a', 'b', 'outgoing', 1100],
      ['a', 'outside', 'outgoing', 550],
      ['b', 'a', 'incoming', 1100],
      ['b', 'outside', 'outgoing', 18],
    ]);
  });

  it('outside by /24 or hidden', () => {
    const by24 = buildMap(rows, owners, { outside: '24' });
    expect(by24.nodes.filter((n) => n.kind === 'outside').map((n) => n.id)).toEqual(['1.1.1.0/24', '93.184.216.0/24']);
    const hidden = buildMap(rows, owners, { outside: 'hide' });
    expect(hidden.nodes.map((n) => n.id)).toEqual(['a', 'b']);
    expect(hidden.edges).toHaveLength(2);
  });

  it('search keeps matching hosts, their peers and the edges between', () => {
    const g = buildMap(rows, owners, { q: 'A', outside: 'hide' });
    expect(g.nodes.map((n) => [n.id, n.matched])).toEqual([['a', true], ['b', false]]);
    expect(buildMap(rows, owners, { q: 'nohost' }).nodes).toEqual([]);
  });

  it('fill: five equal bands between min and max, or a custom range with the rest greyed', () => {
    const g = buildMap(rows, owners, { fill: 'rtt' });
    // a: (300 + 900) / 3 = 400; b: 100; outside: its one flow's 900
    expect(g.fill).toMatchObject({ metric: 'rtt', min: 100, max: 900 });
    expect(g.fill.bands[0]).toEqual([100, 260]);
    expect(g.nodes.map((n) => n.band)).toEqual([1, 0, 4]);
    // edges share the range: a->b 150, a->outside 900, b->a 100, b->outside (UDP only) no value
    expect(g.edges.map((e) => e.band)).toEqual([0, 4, 0, null]);
    const custom = buildMap(rows, owners, { fill: 'rtt', min: 0, max: 200 });
    expect(custom.nodes.map((n) => n.band)).toEqual([-1, 2, -1]);
    expect(custom.edges.map((e) => e.band)).toEqual([3, -1, 2, null]);
    expect(bandOf(null, 0, 1)).toBeNull();
    expect(bandOf(5, 5, 5)).toBe(0);
    expect([0, 19.9, 20, 99.9, 100].map((v) => bandOf(v, 0, 100))).toEqual([0, 0, 1, 4, 4]);
  });
});

describe('compact writes', () => {
  it('netflow and dnsflow as keys and typed arrays, tags sent once per key, the rest as rows', async () => {
    const { SeriesIds, compactWrite } = await import('../../src/console/compact');
    const body = 'netflow,host=a,dst_port=443 bytes_read=5i,rtt=7i 1000\nnetflow,host=a,dst_port=443 bytes_read=6i,rtt="x" 2000\ndnsflow,host=a count=2i,rcode=-1i 3000\nbash,host=a cmd="ls",pid="1" 4000\ncpu,host=a u=1.5 5000';
    const keys: string[] = [];
    const ids = new SeriesIds(7);
    const w = compactWrite('network', 'ms', parseLines(body, undefined, keys), 0, ids, keys);
    expect(w.points).toBe(5);
    expect(w.source).toBe(7);
    expect([...w.netflow.ids]).toEqual([0, 0]);
    expect([...w.dnsflow.ids]).toEqual([1]);
    expect([...w.netflow.ts]).toEqual([1000, 2000]);
    // bytes_read, bytes_written, retransmits, rtt, ...: missing and non-numeric fields are NaN
    expect([...w.netflow.values.slice(0, 4)]).toEqual([5, NaN, NaN, 7]);
    expect(w.netflow.values[9 + 3]).toBeNaN();
    expect([...w.dnsflow.values]).toEqual([2, -1, NaN, NaN]);
    expect(w.newSeries).toEqual([
      { id: 0, measurement: 'netflow', tags: { host: 'a', dst_port: '443' } },
      { id: 1, measurement: 'dnsflow', tags: { host: 'a' } },
    ]);
    expect(w.bash).toEqual([]); // bash is a logging measurement
    expect(w.other.map((r) => r[2])).toEqual(['bash', 'cpu']);
    const keys2: string[] = [];
    const again = compactWrite('network', 'ms', parseLines(`netflow,host=b x=1i 1\n${body}`, undefined, keys2), 0, ids, keys2);
    expect([...again.netflow.ids]).toEqual([2, 0, 0]);
    expect(again.newSeries.map((n) => n.id)).toEqual([2]);
  });
});
