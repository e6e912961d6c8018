// Summaries of the V8 CPU profiles `--cpu-prof` makes the collector write:
// where its JavaScript time went, by function, without opening DevTools.
import fs from 'node:fs';
import path from 'node:path';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  files: number;
  sampledMs: number;
  /** Samples that were not idle. */
  busyMs: number;
  /** Self time of the heaviest functions, ms. */
  topSelf: { fn: string; ms: number }[];
  /** Inclusive time of the heaviest functions of the collector's own code (dist/src), ms. */
  topOwn: { fn: string; ms: number }[];
}

const frameName = (n: CpuProfileNode): string => {
  const url = n.callFrame.url.replace(/^.*\/(dist\/src|node_modules)\//, '$1/');
  return `${n.callFrame.functionName || '(anonymous)'}${url ? ` ${url}:${n.callFrame.lineNumber + 1}` : ''}`;
};

interface Tally {
  total: number;
  idle: number;
  self: Map<string, number>;
  own: Map<string, number>;
}

function addProfile(file: string, t: Tally): void {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const timePerNode = new Map<number, number>();
  p.samples.forEach((id, i) => timePerNode.set(id, (timePerNode.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  for (const [id, us] of timePerNode) {
    const n = byId.get(id)!;
    t.total += us;
    const name = frameName(n);
    if (n.callFrame.functionName === '(idle)') t.idle += us;
    t.self.set(name, (t.self.get(name) ?? 0) + us);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!;
      if (!f.callFrame.url.includes('/dist/src/')) continue;
      const k = frameName(f);
      if (seen.has(k)) continue;
      seen.add(k);
      t.own.set(k, (t.own.get(k) ?? 0) + us);
    }
  }
}

/**
 * All profiles in `dir` (every daemon the run started; the dke-loader
 * processes are native and not profiled by V8) merged.
 * Sample times are wall-clock intervals: on a busy machine they include time
 * the thread waited for a CPU, so read the shares, not the absolute values.
 */
export function summarizeProfiles(dir: string, top = 15): ProfileSummary | undefined {
  if (!fs.existsSync(dir)) return undefined;
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return undefined;
  const t: Tally = { total: 0, idle: 0, self: new Map(), own: new Map() };
  for (const f of files) addProfile(path.join(dir, f), t);
  const rank = (m: Map<string, number>): { fn: string; ms: number }[] =>
    [...m]
      .filter(([k]) => !k.startsWith('(idle)') && !k.startsWith('(program)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, us]) => ({ fn, ms: Math.round(us / 100) / 10 }));
  return { files: files.length, sampledMs: Math.round(t.total / 1000), busyMs: Math.round((t.total - t.idle) / 1000), topSelf: rank(t.self), topOwn: rank(t.own) };
}
