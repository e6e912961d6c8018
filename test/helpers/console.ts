// Runs the real console (compiled CLI, `datakit-ebpf console`) on a free port
// with its own data directory, and talks to its API.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';
import { expect } from 'vitest';

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


/** Two hosts talking for the three hours before `NOW`, every 30 s, plus traffic to the outside. */
export function sampleTraffic(NOW: number): NetflowLine[] {
  const MIN = 60_000;
  const out: NetflowLine[] = [];
  for (let i = 0; i < 360; i++) {
    const ts = NOW - 3 * 60 * MIN + i * 30_000 + 17;
    const k = i % 7;
    out.push({ host: 'web-1', src_ip: '10.1.0.1', dst_ip: '10.1.0.2', dst_port: '5432', direction: 'outgoing', ts, process_name: 'app', fields: { bytes_written: 1000 + k, bytes_read: 5000 + i, rtt: 200 + k * 10, rtt_var: 20 + k, tcp_established: k % 2, tcp_closed: k % 3 === 0 ? 1 : 0, retransmits: k === 6 ? 1 : 0 } });
    out.push({ host: 'db-1', src_ip: '10.1.0.2', src_port: '5432', dst_ip: '10.1.0.1', dst_port: '*', direction: 'incoming', ts, process_name: 'postgres', fields: { bytes_written: 5000 + i, bytes_read: 1000 + k, rtt: 150 + k, rtt_var: 15, tcp_established: k % 2, tcp_closed: k % 3 === 0 ? 1 : 0, retransmits: 0 } });
    out.push({ host: 'web-1', src_ip: '10.1.0.1', dst_ip: '93.184.216.34', dst_port: '443', direction: 'outgoing', ts, process_name: 'curl', fields: { bytes_written: 300, bytes_read: 7000 + k, rtt: 9000 + k * 100, rtt_var: 800, tcp_established: 1, tcp_closed: 1, retransmits: i % 50 === 0 ? 2 : 0 } });
    out.push({ host: 'web-1', src_ip: '10.1.0.1', dst_ip: '10.1.0.53', dst_port: '53', direction: 'outgoing', transport: 'udp', ts, process_name: 'resolver', fields: { bytes_written: 40, bytes_read: 120 } });
  }
  return out;
}

/** What the API must answer for these points: sums, and means for rtt and rtt_var. */
export function sums(points: NetflowLine[]) {
  const sum = (k: string) => points.reduce((a, p) => a + (p.fields[k] ?? 0), 0);
  const mean = (k: string) => {
    const v = points.filter((p) => p.fields[k] !== undefined);
    return v.length ? v.reduce((a, p) => a + p.fields[k]!, 0) / v.length : null;
  };
  return { bytes_written: sum('bytes_written'), bytes_read: sum('bytes_read'), rtt: mean('rtt'), rtt_var: mean('rtt_var'), tcp_established: sum('tcp_established'), retransmits: sum('retransmits'), tcp_closed: sum('tcp_closed') };
}

export function expectMetrics(got: Record<string, unknown>, want: ReturnType<typeof sums>): void {
  for (const [k, v] of Object.entries(want)) {
    if (v === null) expect(got[k], k).toBeNull();
    else expect(got[k] as number, k).toBeCloseTo(v, 9);
  }
}

/** Posts points in collector-sized batches, several at once. */
export async function postAll(url: string, points: NetflowLine[], batch = 120): Promise<void> {
  const posts: Promise<{ status: number; text: string }>[] = [];
  for (let i = 0; i < points.length; i += batch) {
    posts.push(postLines(url, 'network', 'ebpf-net/netflow', points.slice(i, i + batch).map(netflowLine).join('\n') + '\n', { precision: 'ms' }));
  }
  for (const r of await Promise.all(posts)) expect(r).toEqual({ status: 200, text: '' });
}

