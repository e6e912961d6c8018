// A parsed write body in the form the store appends: netflow and dnsflow points
// as series ids plus typed arrays of their time and fields (cheap to move from
// a parse worker to the main thread: the arrays are transferred, not copied),
// bash and other points as rows. Each parser numbers the series it sees
// (SeriesIds) and sends a series' tags once, with the first write that has it;
// the store maps (source, id) to its own series. Used by the parse workers and tests.

import type { ParsedFieldValue, ParsedPoint } from '../lineproto/parse';
import { pointTimeMs } from '../writeapi/writeapi';

export const NETFLOW_FIELDS = ['bytes_read', 'bytes_written', 'retransmits', 'rtt', 'rtt_var', 'tcp_established', 'tcp_closed', 'client_sent', 'server_sent'] as const;
export const DNS_FIELDS = ['count', 'rcode', 'latency', 'latency_max'] as const;

export interface SeriesRows {
  /** Series of each point, numbered by the write's source. */
  ids: Int32Array;
  /** Unix ms of each point. */
  ts: Float64Array;
  /** fields.length values per point, in the order of the field list; NaN for a missing or non-numeric field. */
  values: Float64Array;
}

export interface NewSeries {
  id: number;
  measurement: string;
  tags: Record<string, string>;
}

export interface CompactWrite {
  /** The SeriesIds that numbered this write's series. */
  source: number;
  category: string;
  points: number;
  netflow: SeriesRows;
  dnsflow: SeriesRows;
  /** Series numbered for the first time in this write. */
  newSeries: NewSeries[];
  /** [ts, host, pid, user, cmd, message, tags JSON] */
  bash: (string | number | null)[][];
  /** [ts, category, measurement, tags JSON, fields JSON] */
  other: (string | number | null)[][];
}

/** Identity of a tag set in the order its tags arrived (when the parser's series text is not at hand). */
export function seriesFastKey(measurement: string, tags: Record<string, string>): string {
  let k = measurement;
  for (const t in tags) k += `\u0000${t}\u0001${tags[t]}`;
  return k;
}

/** One parser's numbering of the series it has seen; `source` must be unique among the parsers feeding one store. */
export class SeriesIds {
  private readonly ids = new Map<string, number>();
  constructor(readonly source: number) {}

  /** The id of `key`; a new one is announced in `fresh` with the point's tags. */
  idOf(key: string, p: ParsedPoint, fresh: NewSeries[]): number {
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.ids.size;
      this.ids.set(key, id);
      fresh.push({ id, measurement: p.measurement, tags: { ...p.tags } });
    }
    return id;
  }
}

export function sortedTagsJson(tags: Record<string, string>): string {
  const o: Record<string, string> = {};
  for (const k of Object.keys(tags).sort()) o[k] = tags[k]!;
  return JSON.stringify(o);
}

function fieldJson(fields: Record<string, ParsedFieldValue>): string {
  return JSON.stringify(fields, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

function numeric(v: ParsedFieldValue | undefined): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return NaN;
}

/**
 * The compact form of one write, its series numbered by `ids`. `wireKeys` (from
 * parseLines) are the points' series as written, used as keys instead of
 * building them from the tags.
 */
export function compactWrite(category: string, precision: string, points: readonly ParsedPoint[], nowMs: number, ids: SeriesIds, wireKeys?: readonly string[]): CompactWrite {
  let nNet = 0;
  let nDns = 0;
  for (const p of points) {
    if (p.measurement === 'netflow') nNet++;
    else if (p.measurement === 'dnsflow') nDns++;
  }
  const w: CompactWrite = {
    source: ids.source,
    category,
    points: points.length,
    netflow: { ids: new Int32Array(nNet), ts: new Float64Array(nNet), values: new Float64Array(nNet * NETFLOW_FIELDS.length) },
    dnsflow: { ids: new Int32Array(nDns), ts: new Float64Array(nDns), values: new Float64Array(nDns * DNS_FIELDS.length) },
    newSeries: [],
    bash: [],
    other: [],
  };
  let iNet = 0;
  let iDns = 0;
  for (let n = 0; n < points.length; n++) {
    const p = points[n]!;
    const ts = pointTimeMs(p, precision, nowMs);
    const rows = p.measurement === 'netflow' ? w.netflow : p.measurement === 'dnsflow' ? w.dnsflow : undefined;
    if (rows) {
      const names = p.measurement === 'netflow' ? NETFLOW_FIELDS : DNS_FIELDS;
      const i = p.measurement === 'netflow' ? iNet++ : iDns++;
      rows.ids[i] = ids.idOf(wireKeys?.[n] ?? seriesFastKey(p.measurement, p.tags), p, w.newSeries);
      rows.ts[i] = ts;
      for (let f = 0; f < names.length; f++) rows.values[i * names.length + f] = numeric(p.fields[names[f]!]);
    } else if (p.measurement === 'bash' && category === 'logging') {
      const f = p.fields;
      const str = (v: ParsedFieldValue | undefined): string | null => (v === undefined ? null : String(v));
      w.bash.push([ts, p.tags.host ?? null, str(f.pid), str(f.user), str(f.cmd), str(f.message), sortedTagsJson(p.tags)]);
    } else {
      w.other.push([ts, category, p.measurement, sortedTagsJson(p.tags), fieldJson(p.fields)]);
    }
  }
  return w;
}
