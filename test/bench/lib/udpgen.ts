// Typed wrappers around test/bench/gen/udpgen.c (built by scripts/bench into
// dist/bench/udpgen). Every count here is ground truth from the sockets.
import { runJson, startCountingServer, type CountingServer } from './spawn';
import { genPath } from './tcpgen';

export interface UdpServerCounts {
  datagrams: number;
  bytes: number;
}

export type UdpServer = CountingServer<UdpServerCounts>;

export function startUdpServer(ns: string, ip: string, port: number): Promise<UdpServer> {
  return startCountingServer(`udpgen server ${ip}:${port}`, 'ip', ['netns', 'exec', ns, genPath('udpgen'), 'server', ip, String(port)]);
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
