// The benchmark's two test hosts: namespaces a (clients) and b (servers)
// joined by a veth pair (10.201.6.0/24, octet 6 belongs to the benchmarks).
// Loopback runs use a's own lo, so nothing touches the host's namespace
// except the collector's upload to the receiver.
import { execFileSync } from 'node:child_process';
import { createHostPair, inNs, type HostPair } from '../../helpers/netns';
import { sleep } from './util';

export const BENCH_OCTET = 6;

export interface BenchHosts extends HostPair {
  /** argv prefix that runs a command inside namespace `ns`. */
  exec(ns: string, cmd: string, args: string[]): [string, string[]];
  /**
   * Waits until no TCP connection in either host is open or closing (only
   * listeners and TIME_WAIT left), so every close has happened in the kernel
   * before the collector's last flush; returns how many were still open.
   */
  settleTcp(timeoutMs?: number): Promise<number>;
}

function openTcp(ns: string): number {
  try {
    const out = execFileSync('ip', ['netns', 'exec', ns, 'ss', '-Htn', 'state', 'connected', 'exclude', 'time-wait'], { encoding: 'utf8', maxBuffer: 256 << 20 });
    return out.split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

export function createBenchHosts(): BenchHosts {
  const pair = createHostPair(BENCH_OCTET);
  // Clients: short connections leave TIME_WAIT behind; reuse them after 1 s
  // and widen the port range, or churn runs out of ports within seconds.
  inNs(pair.a, 'sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65000']);
  // Servers: bursts of connects must not overflow the accept queue (a
  // dropped handshake would be a connection the client counted and the
  // server never saw).
  inNs(pair.b, 'sysctl', ['-q', '-w', 'net.core.somaxconn=8192', 'net.ipv4.tcp_max_syn_backlog=8192']);
  inNs(pair.a, 'sysctl', ['-q', '-w', 'net.core.somaxconn=8192']);
  return {
    ...pair,
    exec: (ns, cmd, args) => ['ip', ['netns', 'exec', ns, cmd, ...args]],
    async settleTcp(timeoutMs = 5000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const n = openTcp(pair.a) + openTcp(pair.b);
        if (n === 0 || Date.now() >= end) return n;
        await sleep(100);
      }
    },
  };
}
