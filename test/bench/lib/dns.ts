// dnsmasq as the resolver of the benchmark's test hosts and dnsgen
// (test/bench/gen/dnsgen.c) as its client. dnsmasq (Debian's dnsmasq-base,
// installed by scripts/bench) answers from local records only: no upstream,
// no /etc files, no cache to warm, no log.
import { execFileSync } from 'node:child_process';
import { runJson, spawnJson, type JsonProc } from './spawn';
import { genPath } from './tcpgen';
import { sleep, waitUntil } from './util';

export const DNS_ZONE = 'bench.test';

/** The benchmark's DNS load, the same in the dns and bpf-cost scenarios: dnsmasq on b's port 53 answering every name with `answer`, dnsgen on a keeping `inflight` lookups outstanding over as many sockets. */
export const BENCH_DNS = { port: 53, answer: '10.201.6.99', inflight: 16 } as const;

export interface Resolver {
  pid: number;
  stop(): Promise<void>;
}

export function checkDnsmasq(): void {
  try {
    execFileSync('dnsmasq', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('dnsmasq is not installed: run the benchmark with npm run bench (scripts/bench installs dnsmasq-base)');
  }
}

/** dnsmasq in `ns` on ip:port, answering every name under DNS_ZONE with `answer`. */
export async function startResolver(ns: string, ip: string, port: number, answer: string): Promise<Resolver> {
  checkDnsmasq();
  const p: JsonProc = spawnJson('ip', [
    'netns', 'exec', ns, 'dnsmasq',
    '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--no-poll',
    '--bind-interfaces', `--listen-address=${ip}`, `--port=${port}`,
    `--address=/${DNS_ZONE}/${answer}`, '--pid-file=', '--user=root', '--log-facility=/dev/null',
    '--cache-size=0', '--dns-forward-max=1000',
  ]);
  // Listening: dig-free check through /proc/net/udp of the namespace.
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const up = await waitUntil(() => {
    if (p.proc.exitCode !== null) return null;
    try {
      return execFileSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/udp'], { encoding: 'utf8' }).includes(`:${hexPort} `) || undefined;
    } catch {
      return undefined;
    }
  }, 5000);
  if (!up) {
    p.kill('SIGKILL');
    throw new Error(`dnsmasq on ${ip}:${port} did not start: ${p.stderr.join(' | ')}`);
  }
  return {
    pid: p.pid,
    async stop() {
      p.kill('SIGTERM');
      await Promise.race([p.exited, sleep(5000)]);
      p.kill('SIGKILL');
    },
  };
}

export interface DnsgenResult {
  sent: number;
  answered: number;
  timeouts: number;
  unfinished: number;
  late: number;
  errors: number;
  sendFailed: number;
  seconds: number;
  /** answered / seconds */
  rate: number;
}

/** dnsgen: `inflight` lookups outstanding over `sockets` connected UDP sockets for `seconds`. */
export async function dnsgen(ns: string, ip: string, port: number, seconds: number, inflight = 16, sockets = 16): Promise<DnsgenResult> {
  const args = ['netns', 'exec', ns, genPath('dnsgen'), ip, String(port), String(seconds), String(inflight), String(sockets), DNS_ZONE];
  return (await runJson('ip', args, (seconds + 30) * 1000)) as unknown as DnsgenResult;
}
