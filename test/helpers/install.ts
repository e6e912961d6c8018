// An installed collector in a temporary root (scripts/install --root), run the
// way DataKit runs it, and what the tests read back: the file tree before and
// after, JSON log lines from its log file, credentials from /proc.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

export const REPO = path.resolve(__dirname, '../..');
const INSTALL = path.join(REPO, 'scripts', 'install');

export interface FakeDataKit {
  /** The install root (stands for `/`). */
  root: string;
  /** <root>/usr/local/datakit/externals */
  externals: string;
  /** What DataKit's conf.d/host/ebpf.conf names as cmd. */
  launcher: string;
  /** The fake upstream binary's bytes. */
  upstream: Buffer;
}

/**
 * A temporary root holding what a DataKit install looks like: externals/ with
 * an upstream datakit-ebpf (odd mode and old mtime, so a sloppy restore
 * shows), another external, and conf.d/host/ebpf.conf. World-traversable, as
 * / is, so the dropped daemon user can reach the installed files.
 */
export function fakeDataKit(): FakeDataKit {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-install-'));
  fs.chmodSync(root, 0o755);
  const dk = path.join(root, 'usr/local/datakit');
  const externals = path.join(dk, 'externals');
  fs.mkdirSync(externals, { recursive: true, mode: 0o755 });
  fs.mkdirSync(path.join(dk, 'conf.d/host'), { recursive: true, mode: 0o755 });
  fs.mkdirSync(path.join(dk, 'data'), { recursive: true, mode: 0o700 });
  for (const d of ['usr', 'usr/local', 'usr/local/datakit', 'usr/local/datakit/externals', 'usr/local/datakit/conf.d', 'usr/local/datakit/conf.d/host']) {
    fs.chmodSync(path.join(root, d), 0o755);
  }
  const upstream = Buffer.concat([Buffer.from('\x7fELF upstream datakit-ebpf '), crypto.randomBytes(4096)]);
  const launcher = path.join(externals, 'datakit-ebpf');
  fs.writeFileSync(launcher, upstream, { mode: 0o750 });
  fs.chmodSync(launcher, 0o750);
  fs.utimesSync(launcher, new Date('2024-05-06T07:08:09Z'), new Date('2024-05-06T07:08:09Z'));
  fs.writeFileSync(path.join(externals, 'datakit-other-input'), 'another external\n', { mode: 0o755 });
  fs.copyFileSync(path.join(REPO, 'conf.d/host/ebpf.conf'), path.join(dk, 'conf.d/host/ebpf.conf'));
  return { root, externals, launcher, upstream };
}

export function runInstall(args: string[]): { code: number; out: string } {
  try {
    const out = execFileSync('bash', [INSTALL, '--no-build', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, out };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { code: e.status, out: `${e.stdout}${e.stderr}` };
  }
}

export interface Entry {
  type: 'file' | 'dir' | 'link';
  mode: string;
  uid: number;
  gid: number;
  /** Files: size, sha256 and mtime; links: the target. Directory times change with their entries and are left out. */
  size?: number;
  sha256?: string;
  mtimeMs?: number;
  target?: string;
}

/** Every path under `root` with type, mode, owner and (files) content and mtime. */
export function snapshot(root: string): Record<string, Entry> {
  const out: Record<string, Entry> = {};
  const walk = (dir: string): void => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      const st = fs.lstatSync(p);
      const rel = path.relative(root, p);
      const base = { mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid };
      if (st.isSymbolicLink()) out[rel] = { type: 'link', ...base, target: fs.readlinkSync(p) };
      else if (st.isDirectory()) {
        out[rel] = { type: 'dir', ...base };
        walk(p);
      } else {
        const sha256 = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
        out[rel] = { type: 'file', ...base, size: st.size, sha256, mtimeMs: st.mtimeMs };
      }
    }
  };
  walk(root);
  return out;
}

export interface Launched {
  proc: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

/** Starts a program as DataKit does: its own process, DataKit's environment plus `env`. */
export function launch(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): Launched {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, cwd });
  const stdout: string[] = [];
  const stderr: string[] = [];
  readline.createInterface({ input: proc.stdout! }).on('line', (l) => stdout.push(l));
  readline.createInterface({ input: proc.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, stdout, stderr, exited };
}

/** JSON lines of a log file (or of collected stdout lines). */
export function jsonLines(source: string | string[]): Record<string, unknown>[] {
  let lines: string[];
  if (Array.isArray(source)) lines = source;
  else {
    try {
      lines = fs.readFileSync(source, 'utf8').split('\n');
    } catch {
      return [];
    }
  }
  const out: Record<string, unknown>[] = [];
  for (const l of lines) {
    if (!l.startsWith('{')) continue;
    try {
      out.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      /* a line being written */
    }
  }
  return out;
}

export interface ProcCreds {
  uid: number;
  gid: number;
  capEff: bigint;
  capPrm: bigint;
  capInh: bigint;
  capAmb: bigint;
  capBnd: bigint;
  noNewPrivs: number;
  ppid: number;
}

/** Credentials of a live process from /proc/<pid>/status. */
export function procCreds(pid: number): ProcCreds {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string): string => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '';
  const hex = (k: string): bigint => BigInt(`0x${field(k) || '0'}`);
  return {
    uid: Number(field('Uid').split(/\s+/)[0]),
    gid: Number(field('Gid').split(/\s+/)[0]),
    capEff: hex('CapEff'),
    capPrm: hex('CapPrm'),
    capInh: hex('CapInh'),
    capAmb: hex('CapAmb'),
    capBnd: hex('CapBnd'),
    noNewPrivs: Number(field('NoNewPrivs') || 0),
    ppid: Number(field('PPid')),
  };
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** uid of a user name, or undefined. */
export function uidOf(user: string): number | undefined {
  try {
    return Number(execFileSync('id', ['-u', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    return undefined;
  }
}

/** The capability mask the loader is meant to keep, bounded by what this process may hold. */
export function capMask(names: string[]): bigint {
  const nums: Record<string, number> = { CAP_NET_ADMIN: 12, CAP_NET_RAW: 13, CAP_SYS_PTRACE: 19, CAP_SYS_ADMIN: 21, CAP_SYS_RESOURCE: 24, CAP_PERFMON: 38, CAP_BPF: 39 };
  return names.reduce((m, n) => m | (1n << BigInt(nums[n]!)), 0n);
}
