// Runs the real console (compiled CLI, `datakit-ebpf console`) on a free port
// with its own data directory, and talks to its API.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';

const CLI = path.resolve(__dirname, '../../dist/src/cli/main.js');

export interface RunningConsole {
  proc: ChildProcess;
  url: string;
  dataDir: string;
  stderr: string[];
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait until it is gone. */
  kill(): Promise<void>;
  /** GET an API route; throws unless 200. */
  api<T = Record<string, unknown>>(route: string, token?: string): Promise<T>;
}

/** Polls an (async) probe until it returns a value other than undefined/false; throws naming `what` on timeout. */
export async function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function tempDataDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'dke-console-'));
}

/** Starts `datakit-ebpf console`; `dataDir` reuses a directory (restart after a kill). */
export async function startConsole(extra: string[] = [], dataDir = tempDataDir()): Promise<RunningConsole> {
  const listen = extra.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const proc = spawn(process.execPath, [CLI, 'console', ...listen, '--data', dataDir, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr: string[] = [];
  readline.createInterface({ input: proc.stderr! }).on('line', (l) => stderr.push(l));
  const url = await until(
    'the console to listen',
    () => {
      if (proc.exitCode !== null) throw new Error(`console exited ${proc.exitCode}: ${stderr.join(' | ')}`);
      const line = stderr.find((l) => l.includes(' open http://'));
      return line ? /open (http:\/\/[^/\s]+)/.exec(line)![1]! : undefined;
    },
    30_000,
    50,
  ).catch((err: Error) => {
    proc.kill('SIGKILL');
    throw new Error(`${err.message}; stderr: ${stderr.join(' | ')}`);
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    proc,
    url,
    dataDir,
    stderr,
    stop: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
    api: async <T>(route: string, token?: string): Promise<T> => {
      const res = await fetch(url + route, { headers: token ? { authorization: `Bearer ${token}` } : {} });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`GET ${route}: HTTP ${res.status} ${text}`);
      return JSON.parse(text) as T;
    },
  };
}

/** POSTs line protocol like a collector (gzip unless told otherwise); returns the status and body. */
export async function postLines(url: string, category: string, input: string, body: string | Buffer, opts: { precision?: string; gzip?: boolean; token?: string; encoding?: string } = {}): Promise<{ status: number; text: string }> {
  const q = new URLSearchParams({ input });
  if (opts.precision) q.set('precision', opts.precision);
  if (opts.token) q.set('token', opts.token);
  const gzip = opts.gzip ?? true;
  const raw = typeof body === 'string' ? Buffer.from(body) : body;
  const res = await fetch(`${url}/v1/write/${category}?${q}`, {
    method: 'POST',
    body: gzip ? zlib.gzipSync(raw) : raw,
    headers: opts.encoding ? { 'content-encoding': opts.encoding } : gzip ? { 'content-encoding': 'gzip' } : {},
  });
  return { status: res.status, text: await res.text() };
}

export interface NetflowLine {
  host: string;
  src_ip: string;
  dst_ip: string;
  src_port?: string;
  dst_port: string;
  direction: 'incoming' | 'outgoing';
  transport?: 'tcp' | 'udp';
  process_name?: string;
  ts: number;
  fields: Record<string, number>;
}

/** One netflow point as the collector writes it (ms precision here). */
export function netflowLine(p: NetflowLine): string {
  const tags = {
    host: p.host, service: 'ebpf', source: 'netflow', family: p.src_ip.includes(':') ? 'IPv6' : 'IPv4', direction: p.direction, transport: p.transport ?? 'tcp',
    src_ip: p.src_ip, dst_ip: p.dst_ip, src_port: p.src_port ?? '*', dst_port: p.dst_port, src_ip_type: 'private', dst_ip_type: 'private', pid: '4242',
    process_name: p.process_name ?? 'app', netns: '4026531840',
  };
  const t = Object.entries(tags).map(([k, v]) => `${k}=${v}`).join(',');
  const f = Object.entries(p.fields).map(([k, v]) => `${k}=${v}i`).join(',');
  return `netflow,${t} ${f} ${p.ts}`;
}
