// Bulk TCP throughput with Debian's iperf3 (installed by scripts/setup).
import { execFileSync } from 'node:child_process';
import { runText, spawnJson, type JsonProc } from './spawn';
import { sleep } from './util';

export interface IperfResult {
  /** Receiver-side goodput. */
  bitsPerSecond: number;
  retransmits: number;
  /** CPU iperf3 itself measured for the sender and receiver processes, percent. */
  senderCpu: number;
  receiverCpu: number;
}

export interface IperfServer {
  stop(): Promise<void>;
}

export function checkIperf(): void {
  try {
    execFileSync('iperf3', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('iperf3 is not installed: run bash scripts/setup (it installs the Debian package)');
  }
}

/** A long-running iperf3 server (one test at a time, as the rounds are). */
export async function startIperfServer(ns: string, bindIp: string, port: number): Promise<IperfServer> {
  const p: JsonProc = spawnJson('ip', ['netns', 'exec', ns, 'iperf3', '--server', '--bind', bindIp, '--port', String(port)]);
  await sleep(300);
  if (p.proc.exitCode !== null) throw new Error(`iperf3 server on ${bindIp}:${port} exited: ${p.stderr.join(' | ')}`);
  return {
    async stop() {
      p.kill('SIGTERM');
      await p.exited;
    },
  };
}

interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bits_per_second?: number };
    sum_sent?: { retransmits?: number };
    cpu_utilization_percent?: { host_total?: number; remote_total?: number };
  };
}

/**
 * One iperf3 client run. `omitSec` seconds of slow start are left out of the
 * result; `len` sets the write size (e.g. '1K': many more syscalls per byte,
 * which is where per-syscall hooks show); `affinity` pins the client and the
 * server ('0,0': both on CPU 0).
 */
export async function iperf(ns: string, host: string, port: number, seconds: number, omitSec: number, len?: string, affinity?: string): Promise<IperfResult> {
  const args = ['netns', 'exec', ns, 'iperf3', '--client', host, '--port', String(port), '--time', String(seconds), '--omit', String(omitSec), '--json'];
  if (len) args.push('--length', len);
  if (affinity) args.push('--affinity', affinity);
  let lastErr = '';
  // The server may still be finishing the previous test.
  for (let attempt = 0; attempt < 5; attempt++) {
    const { stdout: out, stderr } = await runText('ip', args, (seconds + omitSec + 20) * 1000);
    let j: IperfJson;
    try {
      j = JSON.parse(out) as IperfJson;
    } catch {
      lastErr = `unparsable iperf3 output: ${out.slice(0, 200)} ${stderr}`;
      await sleep(500);
      continue;
    }
    if (j.error) {
      lastErr = j.error;
      await sleep(500);
      continue;
    }
    return {
      bitsPerSecond: j.end?.sum_received?.bits_per_second ?? NaN,
      retransmits: j.end?.sum_sent?.retransmits ?? 0,
      senderCpu: j.end?.cpu_utilization_percent?.host_total ?? NaN,
      receiverCpu: j.end?.cpu_utilization_percent?.remote_total ?? NaN,
    };
  }
  throw new Error(`iperf3 to ${host}:${port} failed: ${lastErr}`);
}
