// Typed wrappers around test/bench/gen/tcpgen.c (built by scripts/bench into
// dist/bench/tcpgen). Every count here is ground truth from the sockets.
// (dnsgen and udpgen have theirs in lib/dnsgen.ts and lib/udpgen.ts.)
import fs from 'node:fs';
import path from 'node:path';
import { runJson, spawnJson, startCountingServer, type CountingServer } from './spawn';
import { repoRoot } from './util';

/** A load generator built by scripts/bench from test/bench/gen/<name>.c. */
export function genPath(name: 'tcpgen' | 'dnsgen' | 'udpgen'): string {
  const p = path.join(repoRoot(), 'dist/bench', name);
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run the benchmark with npm run bench (scripts/bench builds it)`);
  return p;
}

export function tcpgenPath(): string {
  return genPath('tcpgen');
}

export interface ChurnResult {
  /** Connections that connected and sent their payload. */
  made: number;
  failed: number;
  inflightLeft: number;
  seconds: number;
  /** made / seconds */
  rate: number;
  /** Payload bytes written and, with expectReply, read (ground truth for byte counts). */
  bytesSent: number;
  bytesReceived: number;
  firstError: string;
}

export interface ChurnOptions {
  ns: string;
  ip: string;
  port: number;
  nports: number;
  seconds: number;
  /** New connections a second; 0: as fast as possible. */
  rate: number;
  concurrency?: number;
  /** Bytes each connection sends (default 64). */
  bytes?: number;
  /** Half-close after sending and read the server's answer (a server started with replyBytes) to EOF. */
  expectReply?: boolean;
}

export async function churn(o: ChurnOptions): Promise<ChurnResult> {
  const args = [
    'netns', 'exec', o.ns, tcpgenPath(), 'churn', o.ip, String(o.port), String(o.nports),
    String(o.seconds), String(o.rate), String(o.concurrency ?? 64), String(o.bytes ?? 64), o.expectReply ? '1' : '0',
  ];
  return (await runJson('ip', args, (o.seconds + 30) * 1000)) as unknown as ChurnResult;
}

export interface ServerCounts {
  accepted: number;
  closed: number;
  bytesRead: number;
  bytesWritten: number;
  replyFailed: number;
}

export type TcpServer = CountingServer<ServerCounts>;

/** Listens on port..port+nports-1; answers every connection with `replyBytes` once the client has sent everything. */
export function startTcpServer(ns: string, ip: string, port: number, nports: number, replyBytes = 0): Promise<TcpServer> {
  return startCountingServer(`tcpgen server ${ip}:${port}`, 'ip', ['netns', 'exec', ns, tcpgenPath(), 'server', ip, String(port), String(nports), String(replyBytes)]);
}

export interface HoldResult {
  open: number;
  failed: number;
  seconds: number;
  firstError: string;
}

export interface Holder {
  result: HoldResult;
  stop(): Promise<void>;
}

/** Opens `count` connections and keeps them open until stop(). */
export async function hold(ns: string, ip: string, port: number, count: number, bytes = 16, concurrency = 256): Promise<Holder> {
  const p = spawnJson('ip', ['netns', 'exec', ns, tcpgenPath(), 'hold', ip, String(port), String(count), String(bytes), String(concurrency)]);
  const line = await p.next(120_000);
  if (line.error) throw new Error(`tcpgen hold ${ip}:${port}: ${String(line.error)}`);
  return {
    result: line as unknown as HoldResult,
    async stop() {
      p.kill('SIGTERM');
      await p.exited;
    },
  };
}
