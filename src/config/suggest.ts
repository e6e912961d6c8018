// Fixes check-config proposes: "did you mean" for keys, flags and plugin
// names (the closest known word by edit distance, if it is close enough to be
// a typo rather than a new word), and corrected spellings of values.
import { goDurationNs, MAX_INTERVAL_MS, MIN_INTERVAL_MS } from './values';

/** Levenshtein distance with adjacent transpositions counted as one edit. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The known word closest to `word`, compared case-insensitively with `-` and
 * `_` treated alike (DataKit spells keys with `_`, flags with `-`). Undefined
 * when nothing is within a third of the word's length (at least 1, at most 3).
 */
export function closest(word: string, known: readonly string[]): string | undefined {
  const norm = (s: string): string => s.toLowerCase().replace(/_/g, '-');
  const w = norm(word);
  const limit = Math.min(3, Math.max(1, Math.floor(w.length / 3)));
  let best: { word: string; dist: number } | undefined;
  for (const k of known) {
    const dist = editDistance(w, norm(k));
    if (dist <= limit && (!best || dist < best.dist)) best = { word: k, dist };
  }
  return best?.word;
}

/** A corrected --interval / interval; `write(x)` spells x as the flag or key was written. */
export function intervalFix(v: string, write: (s: string) => string): string {
  const t = v.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return `add a unit: ${write(`${t}s`)}`;
  const ns = goDurationNs(t);
  if (ns === undefined) return `write a Go duration: ${write('60s')} or ${write('1m30s')}`;
  if (ns < MIN_INTERVAL_MS * 1e6) return `the shortest interval is ${write('1s')}`;
  if (ns > MAX_INTERVAL_MS * 1e6) return `the longest interval is ${write('24h')}`;
  return `write a Go duration: ${write('60s')}`;
}

/** A corrected DataKit API server address. */
export function addressFix(v: string): string {
  const t = v.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(t);
  if (scheme && !['http', 'https'].includes((scheme[1] as string).toLowerCase())) {
    return `use http:// or https://: ${t.replace(/^[a-z][a-z0-9+.-]*:\/\//i, 'http://')}`;
  }
  const host = t.replace(/^https?:\/\//i, '').replace(/\/.*$/, '');
  if (host !== '' && !/:\d+$/.test(host)) return `add DataKit's port: ${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:9529`;
  if (/:0*$/.test(host) || /:\d{6,}$/.test(host)) return `use DataKit's port, e.g. ${host.replace(/:\d*$/, '')}:9529`;
  return 'write host:port, e.g. 127.0.0.1:9529 or http://datakit.local:9529';
}
