// Typed wrappers around test/bench/gen/udpgen.c (built by scripts/bench into
// dist/bench/udpgen). Every count here is ground truth from the sockets.
import { runJson, spawnJson, type JsonProc } from './spawn';
import { genPath } from './tcpgen';

export interface UdpServerCounts {
  datagrams: number;
  bytes: number;
}

export interface UdpServer {
  pid: number;
  counts(): Promise<UdpServerCounts>;
  stop(): Promise<UdpServerCounts>;
}

export async function startUdpServer(ns: string, ip: string, port: number): Promise<UdpServer> {
  const p: JsonProc = spawnJson('ip', ['netns', 'exec', ns, genPath('udpgen'), 'server', ip, String(port)]);
  const ready = await p.next(10_000);
  if (ready.error) throw new Error(`udpgen server ${ip}:${port}: ${String(ready.error)}`);
  return {
    pid: p.pid,
    async counts() {
      p.kill('SIGUSR1');
      return (await p.next(5000)) as unknown as UdpServerCounts;
    },
    async stop() {
      p.kill('SIGTERM');
      const last = (await p.next(10_000)) as unknown as UdpServerCounts;
      await p.exited;
      return last;
    },
  };
}

export interface BurstResult {
  sockets: number;
  sent: number;
  bytes: number;
  failed: number;
  seconds: number;
  firstError: string;
}

/** `sockets` new UDP sockets, one datagram of `bytes` each, paced over `seconds`. */
export async function udpBurst(ns: string, ip: string, port: number, sockets: number, seconds: number, bytes: number): Promise<BurstResult> {
  const args = ['netns', 'exec', ns, genPath('udpgen'), 'burst', ip, String(port), String(sockets), String(seconds), String(bytes)];
  return (await runJson('ip', args, (seconds + 60) * 1000)) as unknown as BurstResult;
}
