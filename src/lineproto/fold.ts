// Folding: a bound on the points one interval sends. Guance bills per point,
// and a flood of distinct flow keys (a port scan, many UDP peers) must not
// become a flood of points. Past the cap the largest points are kept as they
// are and the rest fold into one point per remaining tag set: the tags that
// name one peer (addresses, ports, process, ...) become `*`, the tags that
// classify (direction, transport, family, host, service, ...) stay and keep the
// folded points apart, and the fields combine (sums by default).
//
// Pure: points in, points out. Each measurement says what to fold and how
// its fields combine (src/netflow/fold.ts, src/dnsflow/fold.ts).
import { Float, type FieldValue, type Point } from './point';

/** How one field of the folded points combines. */
export type Reduce = 'sum' | 'max' | { mean: (p: Point) => number };

export interface FoldSpec {
  /** Tags set to `*` in a folded point (when the point has them); all others split folded points. */
  foldTags: readonly string[];
  /** A point's size: the largest are kept. */
  size(p: Point): number;
  /**
   * How a field combines; a field not listed sums when numeric, and stays
   * when every folded point has the same value (else it is left out).
   * `mean` weighs each point carrying the field by its weight, rounded to an integer.
   */
  fields?: Readonly<Record<string, Reduce>>;
}

export interface FoldResult {
  /** The kept points in their order, then the folded points in the order their groups first appear. */
  points: Point[];
  /** How many input points went into folded points (0 under the cap), for the caller to count and log. */
  folded: number;
}

/** The value a folded tag gets. */
export const FOLDED = '*';

/**
 * At most `maxFlows` points kept as they are, the rest folded.
 * @param points one interval's points of one measurement, one per flow key.
 * @param maxFlows the cap; 0 = no cap.
 */
export function foldPoints(points: Point[], maxFlows: number, spec: FoldSpec): FoldResult {
  if (maxFlows <= 0 || points.length <= maxFlows) return { points, folded: 0 };
  // Largest first; the sort is stable, so equal sizes keep their order.
  const bySize = points.map((p, i) => ({ i, size: spec.size(p) })).sort((a, b) => b.size - a.size);
  const keep = new Set(bySize.slice(0, maxFlows).map((x) => x.i));
  const kept: Point[] = [];
  const groups = new Map<string, Point[]>();
  const foldTags = new Set(spec.foldTags);
  points.forEach((p, i) => {
    if (keep.has(i)) {
      kept.push(p);
      return;
    }
    const key = JSON.stringify([p.measurement, ...Object.entries(p.tags).filter(([k]) => !foldTags.has(k)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
    const group = groups.get(key);
    if (group) group.push(p);
    else groups.set(key, [p]);
  });
  for (const group of groups.values()) kept.push(foldGroup(group, foldTags, spec));
  return { points: kept, folded: points.length - maxFlows };
}

function foldGroup(group: Point[], foldTags: ReadonlySet<string>, spec: FoldSpec): Point {
  const first = group[0] as Point;
  const tags: Record<string, string> = {};
  for (const p of group) for (const k of Object.keys(p.tags)) tags[k] = foldTags.has(k) ? FOLDED : (p.tags[k] as string);
  const names = new Set(group.flatMap((p) => Object.keys(p.fields)));
  const fields: Record<string, FieldValue> = {};
  for (const name of names) {
    const carrying = group.filter((p) => p.fields[name] !== undefined);
    const v = combine(carrying, name, spec.fields?.[name] ?? 'sum');
    if (v !== undefined) fields[name] = v;
  }
  let timestampNs = first.timestampNs;
  for (const p of group) if (p.timestampNs > timestampNs) timestampNs = p.timestampNs;
  return { measurement: first.measurement, tags, fields, timestampNs };
}

function combine(points: Point[], name: string, how: Reduce): FieldValue | undefined {
  const values = points.map((p) => p.fields[name] as FieldValue);
  if (!values.every(isNumeric)) {
    // Strings and booleans cannot be summed: kept only when they agree.
    return values.every((v) => v === values[0]) ? values[0] : undefined;
  }
  if (typeof how === 'object') {
    let total = 0;
    let weight = 0;
    points.forEach((p, i) => {
      const w = how.mean(p);
      total += toNumber(values[i] as number | bigint | Float) * w;
      weight += w;
    });
    const mean = weight > 0 ? total / weight : 0;
    return values.some((v) => v instanceof Float) ? new Float(mean) : Math.round(mean);
  }
  if (values.some((v) => typeof v === 'bigint')) {
    const big = values.map((v) => (typeof v === 'bigint' ? v : BigInt(Math.round(toNumber(v as number | Float)))));
    return big.reduce((a, b) => (how === 'max' ? (b > a ? b : a) : a + b));
  }
  const nums = values.map((v) => toNumber(v as number | Float));
  const out = how === 'max' ? Math.max(...nums) : nums.reduce((a, b) => a + b, 0);
  return values.some((v) => v instanceof Float) ? new Float(out) : out;
}

function isNumeric(v: FieldValue): v is number | bigint | Float {
  return typeof v === 'number' || typeof v === 'bigint' || v instanceof Float;
}

function toNumber(v: number | bigint | Float): number {
  return v instanceof Float ? v.value : Number(v);
}
