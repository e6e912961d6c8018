// "Did you mean" for keys, flags and plugin names: the closest known word by
// edit distance, if it is close enough to be a typo rather than a new word.

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
