// Test hosts: two network namespaces joined by a veth pair, with IPv4 and
// IPv6 addresses that exist only inside them. Test traffic never leaves.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';

export interface HostPair {
  a: string;
  b: string;
  ipA: string;
  ipB: string;
  ip6A: string;
  ip6B: string;
  destroy(): void;
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function inNs(ns: string, cmd: string, args: string[]): string {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args]);
}

/** `octet` picks the subnet (10.201.<octet>.0/24) so files can run side by side. */
export function createHostPair(octet: number): HostPair {
  const tag = `dke${process.pid % 10000}x${octet}`;
  const a = `${tag}a`;
  const b = `${tag}b`;
  const ipA = `10.201.${octet}.1`;
  const ipB = `10.201.${octet}.2`;
  const ip6A = `fd00:dea:${octet}::1`;
  const ip6B = `fd00:dea:${octet}::2`;
  const destroy = (): void => {
    for (const ns of [a, b]) {
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        /* not there */
      }
    }
  };
  destroy();
  sh('ip', ['netns', 'add', a]);
  sh('ip', ['netns', 'add', b]);
  sh('ip', ['link', 'add', `${tag}va`, 'netns', a, 'type', 'veth', 'peer', 'name', `${tag}vb`, 'netns', b]);
  for (const [ns, dev, ip, ip6] of [
    [a, `${tag}va`, ipA, ip6A],
    [b, `${tag}vb`, ipB, ip6B],
  ] as const) {
    inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
    inNs(ns, 'ip', ['addr', 'add', `${ip}/24`, 'dev', dev]);
    inNs(ns, 'ip', ['-6', 'addr', 'add', `${ip6}/64`, 'dev', dev, 'nodad']);
    inNs(ns, 'ip', ['link', 'set', dev, 'up']);
  }
  return { a, b, ipA, ipB, ip6A, ip6B, destroy };
}

const PEER = path.join(__dirname, 'peer.cjs');

export interface PeerResult {
  pid: number;
  [k: string]: unknown;
}

/** Runs test/helpers/peer.cjs (in `ns`, or the host namespace if undefined). */
export function startPeer(ns: string | undefined, args: string[]): { proc: ChildProcess; lines: AsyncIterableIterator<string> } {
  const cmd = ns ? 'ip' : process.execPath;
  const argv = ns ? ['netns', 'exec', ns, process.execPath, PEER, ...args] : [PEER, ...args];
  const proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: proc.stdout! });
  return { proc, lines: rl[Symbol.asyncIterator]() };
}

export async function nextJson(lines: AsyncIterableIterator<string>, timeoutMs = 30_000): Promise<PeerResult> {
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`peer said nothing within ${timeoutMs} ms`)), timeoutMs).unref(),
  );
  const r = await Promise.race([lines.next(), timeout]);
  if (r.done) throw new Error('peer exited without output');
  return JSON.parse(r.value) as PeerResult;
}

/** Runs a client peer to completion and returns its result line. */
export async function runPeer(ns: string | undefined, args: string[]): Promise<PeerResult> {
  const { proc, lines } = startPeer(ns, args);
  const res = await nextJson(lines);
  await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));
  if (res.error) throw new Error(`peer ${args.join(' ')} failed: ${String(res.error)}`);
  return res;
}

/** Starts a server peer and waits until it listens. */
export async function startServer(ns: string | undefined, args: string[]): Promise<{ pid: number; stop(): Promise<PeerResult> }> {
  const { proc, lines } = startPeer(ns, args);
  const ready = await nextJson(lines);
  return {
    pid: ready.pid,
    async stop() {
      proc.kill('SIGTERM');
      return nextJson(lines, 5000);
    },
  };
}

/** A counter from /proc/net/snmp of a namespace, e.g. snmp(ns, 'Tcp', 'RetransSegs'). */
export function snmp(ns: string, proto: string, field: string): number {
  const lines = inNs(ns, 'cat', ['/proc/net/snmp']).split('\n').filter((l) => l.startsWith(`${proto}:`));
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  return Number(values[names.indexOf(field)]);
}
