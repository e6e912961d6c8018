// The JSON API's answers: each route builds its SQL with plan.ts and shapes the
// rows. Sums for bytes, connections, retransmits and closes; the mean of the
// points' values for rtt and rtt_var.

import { addressOwners, buildMap, type FlowTotals, type MapGraph, type MapOptions } from './graph';
import {
  METRICS,
  METRICS_SELECT,
  Params,
  QueryError,
  bucketSql,
  netflowSource,
  planSpans,
  tiersForStep,
  whereSql,
  type Metric,
  type Metrics,
  type TimeRange,
  type Where,
} from './plan';
import type { Store } from './store';

export interface HostNetworkQuery extends TimeRange {
  host: string;
  transport?: string;
  direction?: string;
  step: number;
  where: Where[];
}

export interface HostNetwork {
  host: string;
  from: number;
  to: number;
  step: number;
  /** Bucket starts (Unix ms). */
  times: number[];
  series: Record<Metric, (number | null)[]>;
  totals: Metrics;
}

export interface ConnectionRow extends Metrics {
  host: string;
  src_ip: string | null;
  src_port: string | null;
  dst_ip: string | null;
  dst_port: string | null;
  transport: string | null;
  direction: string | null;
  process_name: string | null;
  dst_domain: string | null;
  points: number;
}

const CONNECTION_KEYS = ['host', 'src_ip', 'src_port', 'dst_ip', 'dst_port', 'transport', 'direction', 'process_name', 'dst_domain'] as const;
const BASH_COLUMNS = new Set(['host']);

function asMetrics(r: Record<string, unknown>): Metrics {
  const m = {} as Metrics;
  for (const k of METRICS) m[k] = r[k] === null || r[k] === undefined ? null : Number(r[k]);
  return m;
}

/** `series` ids of one measurement matching the filters, as a sub-select. */
function seriesSelect(measurement: string, conds: string[], where: readonly Where[], params: Params): string {
  const m = params.add(measurement);
  return `SELECT s.id FROM series s WHERE s.measurement = ${m} AND ${[...conds, whereSql(where, params)].join(' AND ')}`;
}

function eq(col: string, v: string | undefined, params: Params): string[] {
  return v ? [`${col} = ${params.add(v)}`] : [];
}

export class Queries {
  constructor(private readonly store: Store) {}

  async hosts(range: TimeRange, where: Where[]): Promise<Record<string, unknown>[]> {
    const p = new Params();
    const src = netflowSource(planSpans(range.from, range.to), seriesSelect('netflow', [], where, p), p);
    const net = await this.store.query(`SELECT s.host, ${METRICS_SELECT}, max(f.ts)::DOUBLE AS last_seen FROM (${src}) f JOIN series s ON s.id = f.sid GROUP BY s.host`, p.values);
    const p2 = new Params();
    const bashW = whereSql(where, p2, 'b', BASH_COLUMNS);
    const a = p2.add(range.from);
    const b = p2.add(range.to);
    const bash = await this.store.query(`SELECT b.host, count(*)::DOUBLE AS bash_lines, max(ts)::DOUBLE AS last_seen FROM bash b WHERE ts >= ${a} AND ts < ${b} AND ${bashW} GROUP BY b.host`, p2.values);
    const addrs = await this.store.query(`SELECT host, list(DISTINCT src_ip ORDER BY src_ip) AS addresses FROM series WHERE measurement = 'netflow' AND src_ip IS NOT NULL GROUP BY host`);
    const out = new Map<string, Record<string, unknown>>();
    for (const r of net) out.set(String(r.host), { host: r.host, ...asMetrics(r), points: r.points, last_seen: r.last_seen, bash_lines: 0 });
    for (const r of bash) {
      const o = out.get(String(r.host)) ?? { host: r.host, points: 0, last_seen: r.last_seen };
      o.bash_lines = r.bash_lines;
      o.last_seen = Math.max(Number(o.last_seen ?? 0), Number(r.last_seen));
      out.set(String(r.host), o);
    }
    for (const r of addrs) {
      const o = out.get(String(r.host));
      if (o) o.addresses = r.addresses;
    }
    return [...out.values()].filter((h) => h.host !== null).sort((x, y) => String(x.host).localeCompare(String(y.host)));
  }

  async hostNetwork(q: HostNetworkQuery): Promise<HostNetwork> {
    const source = (tiers?: number[]) => {
      const p = new Params();
      const conds = [...eq('s.host', q.host, p), ...eq('s.transport', q.transport, p), ...eq('s.direction', q.direction, p)];
      return { p, src: netflowSource(planSpans(q.from, q.to, tiers), seriesSelect('netflow', conds, q.where, p), p) };
    };
    const stepped = source(tiersForStep(q.step));
    const rows = await this.store.query(`SELECT ${bucketSql('ts', q.step)}::DOUBLE AS t, ${METRICS_SELECT} FROM (${stepped.src}) GROUP BY t ORDER BY t`, stepped.p.values);
    const whole = source();
    const totalsRows = await this.store.query(`SELECT ${METRICS_SELECT} FROM (${whole.src})`, whole.p.values);
    const first = Math.floor(q.from / q.step) * q.step;
    const times: number[] = [];
    for (let t = first; t < q.to; t += q.step) times.push(t);
    const at = new Map(rows.map((r) => [Number(r.t), r]));
    const series = {} as Record<Metric, (number | null)[]>;
    for (const m of METRICS) {
      const mean = m === 'rtt' || m === 'rtt_var';
      series[m] = times.map((t) => {
        const r = at.get(t);
        if (!r) return mean ? null : 0;
        return r[m] === null ? null : Number(r[m]);
      });
    }
    return { host: q.host, from: q.from, to: q.to, step: q.step, times, series, totals: asMetrics(totalsRows[0] ?? {}) };
  }

  async connections(range: TimeRange, host: string | undefined, where: Where[], sort: string, limit: number): Promise<{ rows: ConnectionRow[]; total: number }> {
    const p = new Params();
    const src = netflowSource(planSpans(range.from, range.to), seriesSelect('netflow', eq('s.host', host, p), where, p), p);
    const order = sort === 'traffic' ? 'bytes_written + bytes_read' : sort;
    if (!/^[a-z_]+(?: \+ [a-z_]+)?$/.test(order) || !(sort === 'traffic' || (METRICS as readonly string[]).includes(sort) || sort === 'points')) {
      throw new QueryError(`sort=${sort}: expected traffic, points or one of ${METRICS.join(', ')}`);
    }
    const rows = await this.store.query(
      `SELECT *, count(*) OVER ()::DOUBLE AS total FROM (
         SELECT ${CONNECTION_KEYS.map((k) => `s.${k}`).join(', ')}, ${METRICS_SELECT} FROM (${src}) f JOIN series s ON s.id = f.sid GROUP BY ALL
       ) ORDER BY ${order} DESC NULLS LAST, host, src_ip, dst_ip, dst_port, src_port, process_name LIMIT ${Math.max(1, Math.min(10_000, limit))}`,
      p.values,
    );
    return {
      total: rows.length ? Number(rows[0]!.total) : 0,
      rows: rows.map((r) => {
        const o = { ...asMetrics(r), points: Number(r.points) } as ConnectionRow;
        for (const k of CONNECTION_KEYS) (o as unknown as Record<string, unknown>)[k] = r[k] ?? null;
        return o;
      }),
    };
  }

  async map(range: TimeRange, where: Where[], opts: MapOptions): Promise<MapGraph> {
    const p = new Params();
    const src = netflowSource(planSpans(range.from, range.to), seriesSelect('netflow', [], where, p), p);
    const rows = (await this.store.query(
      `SELECT s.host, s.src_ip, s.dst_ip, s.direction,
        coalesce(sum(bytes_written), 0)::DOUBLE AS bytes_written, coalesce(sum(bytes_read), 0)::DOUBLE AS bytes_read,
        coalesce(sum(retransmits), 0)::DOUBLE AS retransmits, coalesce(sum(tcp_established), 0)::DOUBLE AS tcp_established,
        coalesce(sum(tcp_closed), 0)::DOUBLE AS tcp_closed, coalesce(sum(rtt_sum), 0)::DOUBLE AS rtt_sum, coalesce(sum(rtt_n), 0)::DOUBLE AS rtt_n,
        coalesce(sum(rtt_var_sum), 0)::DOUBLE AS rtt_var_sum, coalesce(sum(rtt_var_n), 0)::DOUBLE AS rtt_var_n
       FROM (${src}) f JOIN series s ON s.id = f.sid GROUP BY ALL`,
      p.values,
    )) as unknown as FlowTotals[];
    // Addresses are learnt from every flow of each host, whatever the filters.
    const own = (await this.store.query(`SELECT DISTINCT host, src_ip FROM series WHERE measurement = 'netflow'`)) as { host: string; src_ip: string | null }[];
    return buildMap(rows, addressOwners(own), opts);
  }

  async dns(range: TimeRange & { step: number }, host: string | undefined, where: Where[]): Promise<Record<string, unknown>> {
    const p = new Params();
    const sel = seriesSelect('dnsflow', eq('s.host', host, p), where, p);
    const a = p.add(range.from);
    const b = p.add(range.to);
    const base = `FROM dnsflow d JOIN series s ON s.id = d.sid WHERE d.ts >= ${a} AND d.ts < ${b} AND d.sid IN (${sel})`;
    const agg = `coalesce(sum(count), 0)::DOUBLE AS lookups,
      (sum(latency * count) FILTER (WHERE rcode >= 0) / nullif(sum(count) FILTER (WHERE rcode >= 0), 0))::DOUBLE AS latency,
      max(latency_max)::DOUBLE AS latency_max,
      coalesce(sum(count) FILTER (WHERE rcode = 3), 0)::DOUBLE AS nxdomain,
      coalesce(sum(count) FILTER (WHERE rcode = 2), 0)::DOUBLE AS servfail,
      coalesce(sum(count) FILTER (WHERE rcode = -1), 0)::DOUBLE AS timeouts`;
    const by = (cols: string) => this.store.query(`SELECT ${cols}, ${agg} ${base} GROUP BY ALL ORDER BY lookups DESC LIMIT 1000`, p.values);
    const [byClient, byServer, totals, series] = [
      await by('s.host, s.src_ip AS client'),
      await by('s.dst_ip AS server, s.dst_port AS port'),
      await this.store.query(`SELECT ${agg} ${base}`, p.values),
      await this.store.query(`SELECT ${bucketSql('d.ts', range.step)}::DOUBLE AS t, ${agg} ${base} GROUP BY t ORDER BY t`, p.values),
    ];
    return { from: range.from, to: range.to, step: range.step, totals: totals[0], byClient, byServer, series };
  }

  async bash(range: TimeRange, host: string | undefined, q: string | undefined, where: Where[], limit: number): Promise<Record<string, unknown>> {
    const p = new Params();
    const conds = [`ts >= ${p.add(range.from)}`, `ts < ${p.add(range.to)}`, whereSql(where, p, 'b', BASH_COLUMNS), ...eq('b.host', host, p)];
    if (q) {
      const like = p.add(`%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
      conds.push(`(b.cmd ILIKE ${like} ESCAPE '\\' OR b."user" ILIKE ${like} ESCAPE '\\' OR b.host ILIKE ${like} ESCAPE '\\')`);
    }
    const rows = await this.store.query(
      `SELECT ts::DOUBLE AS ts, host, "user", pid, cmd, count(*) OVER ()::DOUBLE AS total FROM bash b WHERE ${conds.join(' AND ')} ORDER BY ts DESC, cmd LIMIT ${Math.max(1, Math.min(10_000, limit))}`,
      p.values,
    );
    return { total: rows.length ? rows[0]!.total : 0, rows: rows.map(({ total: _t, ...r }) => r) };
  }
}
