// Typed wrappers around test/bench/gen/tcpgen.c (built by scripts/bench into
// dist/bench/tcpgen). Every count here is ground truth from the sockets.
import fs from 'node:fs';
import path from 'node:path';
import { runJson, spawnJson, type JsonProc } from './spawn';
import { repoRoot } from './util';

export function tcpgenPath(): string {
  const p = path.join(repoRoot(), 'dist/bench/tcpgen');
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run the benchmark with npm run bench (scripts/bench builds it)`);
  return p;
}

export interface ChurnResult {
  /** Connections that connected and sent their payload. */
  made: number;
  failed: number;
  inflightLeft: number;
  seconds: number;
  /** made / seconds */
  rate: number;
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
  bytes?: number;
}

export async function churn(o: ChurnOptions): Promise<ChurnResult> {
  const args = [
    'netns', 'exec', o.ns, tcpgenPath(), 'churn', o.ip, String(o.port), String(o.nports),
    String(o.seconds), String(o.rate), String(o.concurrency ?? 64), String(o.bytes ?? 64),
  ];
  return (await runJson('ip', args, (o.seconds + 30) * 1000)) as unknown as ChurnResult;
}

export interface ServerCounts {
  accepted: number;
  closed: number;
}

export interface TcpServer {
  pid: number;
  /** Cumulative counts so far. */
  counts(): Promise<ServerCounts>;
  stop(): Promise<ServerCounts>;
}

export async function startTcpServer(ns: string, ip: string, port: number, nports: number): Promise<TcpServer> {
  const p: JsonProc = spawnJson('ip', ['netns', 'exec', ns, tcpgenPath(), 'server', ip, String(port), String(nports)]);
  const ready = await p.next(10_000);
  if (ready.error) throw new Error(`tcpgen server ${ip}:${port}: ${String(ready.error)}`);
  return {
    pid: p.pid,
    async counts() {
      p.kill('SIGUSR1');
      return (await p.next(5000)) as unknown as ServerCounts;
    },
    async stop() {
      p.kill('SIGTERM');
      const last = (await p.next(10_000)) as unknown as ServerCounts;
      await p.exited;
      return last;
    },
  };
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
