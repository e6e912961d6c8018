// Pure query planning for the console's store: which time spans come from the
// rollups and which from raw points, the time-series step, and the SQL for the
// API's `where` filters. No I/O here; store.ts and queries.ts run what this builds.
//
// Exactness: a rollup row holds the sums (and, for rtt/rtt_var, the sum and the
// count of values) of every raw point of one series in one whole bucket. A range
// is answered from whole buckets of the coarsest rollup that fits, the partial
// buckets at its edges from the next finer rollup, and what is left from raw
// points, so every number equals the one computed over the raw points.

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;

/** Rollup resolutions of netflow, coarsest first. */
export const ROLLUPS = [HOUR, 5 * MINUTE] as const;
export type Resolution = (typeof ROLLUPS)[number];

export interface Span {
  /** 0: raw points; otherwise the rollup's resolution in ms. */
  res: number;
  from: number;
  to: number;
}

/** Splits [from, to) into spans answered from `tiers` (coarsest first, each a multiple of the next) and raw points. */
export function planSpans(from: number, to: number, tiers: readonly number[] = ROLLUPS): Span[] {
  if (!(from < to)) return [];
  const [res, ...finer] = tiers;
  if (res === undefined) return [{ res: 0, from, to }];
  const a = Math.ceil(from / res) * res;
  const b = Math.floor(to / res) * res;
  if (a >= b) return planSpans(from, to, finer);
  return [...planSpans(from, a, finer), { res, from: a, to: b }, ...planSpans(b, to, finer)];
}

/** Rollups usable for a time series of this step: their buckets must not straddle a step. */
export function tiersForStep(step: number, tiers: readonly number[] = ROLLUPS): number[] {
  return tiers.filter((r) => step % r === 0);
}

const STEPS = [10_000, 30_000, MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, 24 * HOUR];

/** The smallest step in STEPS that keeps a range under `maxPoints` buckets (48 h -> 5 min with 600 points). */
export function autoStep(from: number, to: number, maxPoints = 600): number {
  const span = Math.max(1, to - from);
  return STEPS.find((s) => span / s <= maxPoints) ?? STEPS[STEPS.length - 1]!;
}

export class QueryError extends Error {
  readonly code = 'CONSOLE_BAD_QUERY';
  constructor(message: string) {
    super(message);
    this.name = 'QueryError';
  }
}

/** RFC 3339 or Unix milliseconds. */
export function parseTime(raw: string | null, fallback: number, name: string): number {
  if (raw === null || raw === '') return fallback;
  if (/^-?\d+$/.test(raw)) return Number(raw);
  const t = Date.parse(raw);
  if (Number.isNaN(t) || !/^\d{4}-\d\d-\d\dT/.test(raw)) throw new QueryError(`${name}=${raw}: expected RFC 3339 (2025-01-02T15:04:05Z) or Unix milliseconds`);
  return t;
}

export interface TimeRange {
  from: number;
  to: number;
}

export const DEFAULT_RANGE_MS = 48 * HOUR;

export function parseRange(q: URLSearchParams, now: number): TimeRange {
  const to = parseTime(q.get('to'), now, 'to');
  const from = parseTime(q.get('from'), to - DEFAULT_RANGE_MS, 'from');
  if (!(from < to)) throw new QueryError(`from (${new Date(from).toISOString()}) must be before to (${new Date(to).toISOString()})`);
  return { from, to };
}

export function parseStep(raw: string | null, range: TimeRange): number {
  if (raw === null || raw === '') return autoStep(range.from, range.to);
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(raw);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: MINUTE, h: HOUR, d: 24 * HOUR };
  const step = m ? Number(m[1]) * unit[m[2] ?? 'ms']! : NaN;
  if (!(step >= 1000)) throw new QueryError(`step=${raw}: expected a duration of at least 1s, such as 30s, 5m or 1h (or milliseconds)`);
  if ((range.to - range.from) / step > 5000) throw new QueryError(`step=${raw} gives more than 5000 points for this range; use a larger step`);
  return step;
}

/** One `where` filter: `key:value`; repeating a key means any of its values. */
export interface Where {
  key: string;
  values: string[];
}

const KEY_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;

export function parseWhere(items: readonly string[]): Where[] {
  const byKey = new Map<string, string[]>();
  for (const item of items) {
    const i = item.indexOf(':');
    const key = i < 0 ? '' : item.slice(0, i).trim();
    if (!KEY_RE.test(key)) throw new QueryError(`where=${item}: expected tag:value, such as dst_port:443`);
    const v = item.slice(i + 1).trim();
    byKey.set(key, [...(byKey.get(key) ?? []), v]);
  }
  return [...byKey].map(([key, values]) => ({ key, values }));
}

/** Tags kept as columns of `series` (the rest are in its `tags` JSON). */
export const SERIES_COLUMNS = ['host', 'transport', 'direction', 'family', 'src_ip', 'src_port', 'dst_ip', 'dst_port', 'process_name', 'dst_domain', 'pid'] as const;
const COLUMN_SET = new Set<string>(SERIES_COLUMNS);

/** SQL params are positional ($1, $2, ...): this collects them while a statement is built. */
export class Params {
  readonly values: (string | number)[] = [];
  add(v: string | number): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
}

/**
 * The SQL condition for these filters on a table aliased `alias` whose tag
 * columns are `columns` (the other tags are read from its `tags` JSON); 'TRUE'
 * when there are none. An empty value matches a missing tag too.
 */
export function whereSql(where: readonly Where[], params: Params, alias = 's', columns: ReadonlySet<string> = COLUMN_SET): string {
  if (where.length === 0) return 'TRUE';
  return where
    .map(({ key, values }) => {
      const col = columns.has(key) ? `${alias}.${key}` : `json_extract_string(${alias}.tags, ${params.add(`$."${key}"`)})`;
      const parts: string[] = [];
      const given = values.filter((v) => v !== '');
      if (given.length === 1) parts.push(`${col} = ${params.add(given[0]!)}`);
      else if (given.length > 1) parts.push(`${col} IN (${given.map((v) => params.add(v)).join(', ')})`);
      if (given.length < values.length) parts.push(`coalesce(${col}, '') = ''`);
      return parts.length === 1 ? parts[0]! : `(${parts.join(' OR ')})`;
    })
    .join(' AND ');
}

/** Bucket start of `ts` for a step, as SQL (integer arithmetic; ts and step are ms). */
export function bucketSql(expr: string, step: number): string {
  if (!Number.isSafeInteger(step) || step <= 0) throw new QueryError(`bad step ${step}`);
  return `(${expr} // ${step}) * ${step}`;
}

/** The netflow metric columns as one row source for these spans: raw points and rollup rows, summable alike. */
export function netflowSource(spans: readonly Span[], seriesFilter: string, params: Params): string {
  if (spans.length === 0) return `SELECT * FROM (SELECT 0::INTEGER AS sid, 0::BIGINT AS ts, ${METRIC_ZEROES}) WHERE FALSE`;
  return spans
    .map((sp) => {
      const a = params.add(sp.from);
      const b = params.add(sp.to);
      if (sp.res === 0) {
        return `SELECT sid, ts, bytes_read, bytes_written, retransmits, rtt AS rtt_sum, CASE WHEN rtt IS NULL THEN 0 ELSE 1 END AS rtt_n, rtt_var AS rtt_var_sum, CASE WHEN rtt_var IS NULL THEN 0 ELSE 1 END AS rtt_var_n, tcp_established, tcp_closed, 1 AS points FROM netflow WHERE ts >= ${a} AND ts < ${b} AND sid IN (${seriesFilter})`;
      }
      return `SELECT sid, bucket AS ts, bytes_read, bytes_written, retransmits, rtt_sum, rtt_n, rtt_var_sum, rtt_var_n, tcp_established, tcp_closed, points FROM ${rollupTable(sp.res)} WHERE bucket >= ${a} AND bucket < ${b} AND sid IN (${seriesFilter})`;
    })
    .join('\nUNION ALL\n');
}

const METRIC_ZEROES = '0.0 AS bytes_read, 0.0 AS bytes_written, 0.0 AS retransmits, 0.0 AS rtt_sum, 0 AS rtt_n, 0.0 AS rtt_var_sum, 0 AS rtt_var_n, 0.0 AS tcp_established, 0.0 AS tcp_closed, 0 AS points';

export function rollupTable(res: number): string {
  if (res === HOUR) return 'netflow_1h';
  if (res === 5 * MINUTE) return 'netflow_5m';
  throw new QueryError(`no rollup of ${res} ms`);
}

/** The seven metrics (and the point count) from summable columns of `netflowSource`. */
export const METRICS_SELECT = `
  coalesce(sum(bytes_written), 0)::DOUBLE AS bytes_written,
  coalesce(sum(bytes_read), 0)::DOUBLE AS bytes_read,
  CASE WHEN sum(rtt_n) > 0 THEN sum(rtt_sum) / sum(rtt_n) END::DOUBLE AS rtt,
  CASE WHEN sum(rtt_var_n) > 0 THEN sum(rtt_var_sum) / sum(rtt_var_n) END::DOUBLE AS rtt_var,
  coalesce(sum(tcp_established), 0)::DOUBLE AS tcp_established,
  coalesce(sum(retransmits), 0)::DOUBLE AS retransmits,
  coalesce(sum(tcp_closed), 0)::DOUBLE AS tcp_closed,
  coalesce(sum(points), 0)::DOUBLE AS points`;

/** The metrics every view shows, in the guide's order, with what they mean. */
export const METRICS = ['bytes_written', 'bytes_read', 'rtt', 'rtt_var', 'tcp_established', 'retransmits', 'tcp_closed'] as const;
export type Metric = (typeof METRICS)[number];
export type Metrics = Record<Metric, number | null>;
