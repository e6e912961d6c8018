// What a collector left in the kernel, seen from outside with bpftool: the
// programs its pinned links run, and whether they are still loaded. Other
// collectors (other test files, other checkouts) run dke_ programs at the same
// time, so tests follow the ids of their own collector's programs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

function bpftoolJson<T>(args: string[]): T | undefined {
  try {
    return JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as T;
  } catch {
    return undefined;
  }
}

/** Every file under `pinRoot` (recursively). */
export function pinnedFiles(pinRoot: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk(pinRoot);
  return out;
}

/** Ids of the programs the pinned links under `pinRoot` run. */
export function pinnedProgramIds(pinRoot: string): number[] {
  const ids = new Set<number>();
  for (const f of pinnedFiles(pinRoot)) {
    const link = bpftoolJson<{ prog_id?: number }>(['link', 'show', 'pinned', f]);
    if (link?.prog_id) ids.add(link.prog_id);
  }
  return [...ids].sort((a, b) => a - b);
}

/** Which of `ids` are still loaded in the kernel, with their names. */
export function loadedPrograms(ids: number[]): { id: number; name: string }[] {
  const all = bpftoolJson<{ id: number; name?: string }[]>(['prog', 'show']) ?? [];
  const want = new Set(ids);
  return all.filter((p) => want.has(p.id)).map((p) => ({ id: p.id, name: p.name ?? '' }));
}

/** Waits until none of `ids` is loaded any more; throws naming the ones left. */
export async function waitProgramsGone(ids: number[], timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const left = loadedPrograms(ids);
    if (left.length === 0) return;
    if (Date.now() > end) throw new Error(`still loaded after ${timeoutMs} ms: ${JSON.stringify(left)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
