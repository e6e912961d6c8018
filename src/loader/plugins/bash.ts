// Loader side of the ebpf-bash plugin: the readline uretprobe (bpf/bash.bpf.c)
// attached to every bash binary found, its lines streamed to the daemon as
// raw records. Loads nothing of ebpf-net, so either plugin runs without the
// other and one failing cannot take the other down (separate children).
import fs from 'node:fs';
import { ElfError, findFunctionOffsetInFile } from '../../bash/elf';
import { assertBashLayout } from '../../bash/record';
import type { AttachResult } from '../native';
import { loadAddon, type NativeBashTracer, type NativeError } from '../native';
import { LoaderFatal, type LoaderPlugin } from './types';

export interface BashLoaderOptions {
  /** Bash binaries to probe, as the user gave them; empty: DEFAULT_BASH_PATHS. */
  paths: string[];
}

/** Facts the daemon needs from the loader (ready.info). */
export interface BashLoaderInfo {
  /** The binaries whose readline() is probed. */
  binaries: string[];
  /** How the uretprobe is attached: 'uprobe_multi link' or 'perf uprobe'. */
  mode: string;
}

export const BASH_STREAM_LINES = 'bash_lines';
export const DEFAULT_BASH_PATHS = ['/bin/bash', '/usr/bin/bash'];
const PROGRAM = 'dke_bash_readline';

export interface BashBinary {
  path: string;
  /** Other given paths that are the same file (symlinks, merged /usr). */
  aliases: string[];
}

/**
 * The distinct files among `paths` (a uprobe belongs to a file, so a symlink
 * or a merged-/usr twin must be probed once) and why the others were skipped.
 * Paths are kept as given: the kernel resolves them itself, and a path through
 * /proc/<pid>/root must not be rewritten to the host's view.
 */
export function findBashBinaries(paths: string[], stat: (p: string) => fs.Stats = fs.statSync): { binaries: BashBinary[]; skipped: string[] } {
  const binaries: BashBinary[] = [];
  const seen = new Map<string, BashBinary>();
  const skipped: string[] = [];
  for (const p of paths) {
    let st: fs.Stats;
    try {
      st = stat(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') skipped.push(`${p}: no such file`);
      else if (code === 'EACCES') skipped.push(`${p}: not accessible to the loader (uid ${process.getuid?.()}; a path into /proc/<pid>/root needs --user root)`);
      else skipped.push(`${p}: ${(e as Error).message}`);
      continue;
    }
    if (!st.isFile()) {
      skipped.push(`${p}: not a regular file`);
      continue;
    }
    const key = `${st.dev}:${st.ino}`;
    const known = seen.get(key);
    if (known) {
      if (known.path !== p) known.aliases.push(p);
      continue;
    }
    const b: BashBinary = { path: p, aliases: [] };
    seen.set(key, b);
    binaries.push(b);
  }
  return { binaries, skipped };
}

/** Why a bash binary cannot be probed, in one line, or undefined when it can: its readline offset. */
export function readlineOffset(path: string, find = findFunctionOffsetInFile): { offset: number } | { error: string } {
  let offset: number | undefined;
  try {
    offset = find(path, 'readline');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err instanceof ElfError) return { error: `${path} is not a program this collector can probe (${err.message})` };
    return { error: `${path} cannot be read (${err.code ?? err.message})` };
  }
  if (offset === undefined) {
    return {
      error: `${path} has no readline symbol (not bash, or a bash linked against a shared libreadline): point --bash-path at a bash that exports readline`,
    };
  }
  return { offset };
}

const EPERM = 1;
const EACCES = 13;

export type AttachResults = { path: string; ok: boolean; error?: string; errno?: number }[];
export type Attempt<T> = { tracer: T & { close(): void }; results: AttachResults } | { loadError: string };

function why(a: Attempt<unknown>): string {
  if ('loadError' in a) return a.loadError;
  return a.results.map((r) => `${r.path}: ${r.error}`).join('; ');
}

const failed = (a: Attempt<unknown>): boolean => 'loadError' in a || a.results.every((r) => !r.ok);

/**
 * A uprobe_multi link needs only CAP_BPF + CAP_PERFMON but Linux >= 6.6; a
 * perf uprobe works on older kernels but needs CAP_SYS_ADMIN (CVE-2025-38466
 * fix). Tries the first, falls back to the second when it got nowhere.
 */
export function attachBest<T>(attempt: (uprobeMulti: boolean) => Attempt<T>): { tracer: T & { close(): void }; results: AttachResults; mode: string } {
  const multi = attempt(true);
  if (!failed(multi) && 'tracer' in multi) return { ...multi, mode: 'uprobe_multi link' };
  if ('tracer' in multi) multi.tracer.close();
  const perf = attempt(false);
  if (!failed(perf) && 'tracer' in perf) return { ...perf, mode: 'perf uprobe' };
  if ('tracer' in perf) perf.tracer.close();
  const denied = 'results' in perf && perf.results.some((r) => r.errno === EACCES || r.errno === EPERM);
  throw new LoaderFatal(
    'EBPF_ATTACH',
    `attaching the readline uretprobe failed: as a uprobe_multi link (Linux >= 6.6): ${why(multi)}; as a perf uprobe: ${why(perf)}` +
      (denied ? '; a perf uprobe needs CAP_SYS_ADMIN (a uprobe_multi link, Linux >= 6.6, only CAP_BPF + CAP_PERFMON): run the bash loader as root' : ''),
  );
}

function nativeAttempt(targets: { path: string; offset: number }[]): (uprobeMulti: boolean) => Attempt<NativeBashTracer> {
  return (uprobeMulti) => {
    const addon = loadAddon();
    let tracer: NativeBashTracer;
    try {
      tracer = new addon.BashTracer({ uprobeMulti });
    } catch (e) {
      const err = e as NativeError;
      const tail = err.libbpfLog ? ` [libbpf: ${err.libbpfLog.split('\n').slice(-3).join(' | ')}]` : '';
      return { loadError: `${err.message}${tail}` };
    }
    return { tracer, results: targets.map((t) => ({ path: t.path, ...tracer.attach(t.path, t.offset) })) };
  };
}

export const bashLoader: LoaderPlugin = {
  open(options, emit) {
    const opts = options as unknown as BashLoaderOptions;
    const explicit = opts.paths.length > 0;
    const { binaries, skipped } = findBashBinaries(explicit ? opts.paths : DEFAULT_BASH_PATHS);
    if (binaries.length === 0) {
      throw new LoaderFatal(
        'EBPF_ATTACH',
        explicit
          ? `no bash binary to probe: ${skipped.join('; ')}; fix --bash-path`
          : `no bash on this host (${DEFAULT_BASH_PATHS.join(', ')} missing): install bash or point --bash-path at it, or disable ebpf-bash`,
      );
    }
    const unusable: string[] = [];
    const targets: { path: string; offset: number }[] = [];
    for (const b of binaries) {
      const r = readlineOffset(b.path);
      if ('error' in r) unusable.push(r.error);
      else targets.push({ path: b.path, offset: r.offset });
    }
    if (targets.length === 0) throw new LoaderFatal('EBPF_ATTACH', unusable.join('; '));
    assertBashLayout(loadAddon().BashTracer.layout);

    const { tracer, results, mode } = attachBest(nativeAttempt(targets));

    const attached: AttachResult[] = results.map((r) => ({
      program: PROGRAM,
      section: `uretprobe/${r.path}:readline`,
      ok: r.ok,
      ...(r.error ? { error: r.error } : {}),
    }));
    const probed = results.filter((r) => r.ok).map((r) => r.path);
    // A path the user named that is missing is worth a warning; a default one
    // is not (merged /usr has one, older layouts the other).
    const degraded = [
      ...results.filter((r) => !r.ok).map((r) => `attaching the readline uretprobe to ${r.path} failed: ${r.error}`),
      ...unusable,
      ...(explicit ? skipped.map((s) => `${s}: not probed`) : []),
    ];

    tracer.startEvents((records) => emit(BASH_STREAM_LINES, records));
    const info: BashLoaderInfo = { binaries: probed, mode };
    return {
      hookSet: { name: `uretprobe readline in ${probed.join(', ')} (${mode})`, attached, degraded },
      info,
      handle(op) {
        if (op === 'telemetry') return tracer.readTelemetry();
        throw new Error(`unknown bash loader operation ${op}`);
      },
      close: () => tracer.close(),
    };
  },
};
