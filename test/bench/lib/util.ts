// Small helpers shared by the benchmark scenarios: statistics, paths, waiting.
import fs from 'node:fs';
import path from 'node:path';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Median of the finite values; NaN when there are none. */
export function median(values: readonly number[]): number {
  const xs = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  const mid = xs.length >> 1;
  return xs.length % 2 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
}

export function round(v: number, digits = 3): number {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/**
 * The checkout root. The scenarios run compiled from dist/bench/test/bench/,
 * so it is found by walking up to this project's package.json rather than by
 * a fixed number of '..'.
 */
export function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'datakit-ebpf') return dir;
    if (path.dirname(dir) === dir) throw new Error(`cannot find the datakit-ebpf checkout above ${__dirname}`);
  }
}

/** Polls `probe` until it returns something other than undefined/false, or the time is up. */
export async function waitUntil<T>(probe: () => T | undefined | false, timeoutMs: number, everyMs = 100): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() >= end) return undefined;
    await sleep(everyMs);
  }
}

/** One line of progress on stderr, so stdout stays the result table. */
export function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}
