// netflow end to end: real sockets between two network namespaces (and on
// loopback), the real daemon with the real eBPF programs, a real HTTP
// receiver. Every number is checked against what the test itself moved or
// what the kernel says (/proc/net/snmp, ss -tin).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../../src/receiver/receiver';
import { createHostPair, inNs, runPeer, snmp, startServer, type HostPair } from '../helpers/netns';
import { startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon';

type Fields = Record<string, unknown>;
interface NetPoint {
  tags: Record<string, string>;
  fields: Fields;
}

let receiver: Receiver;
let daemon: RunningDaemon;
let hosts: HostPair;

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : (v as number) ?? 0);

function netflow(filter: (t: Record<string, string>) => boolean): NetPoint[] {
  return (receiver.points('netflow') as NetPoint[]).filter((p) => filter(p.tags));
}

function sum(points: NetPoint[], field: string): number {
  return points.reduce((acc, p) => acc + num(p.fields[field]), 0);
}

interface Totals {
  bytes_written: number;
  bytes_read: number;
  tcp_established: number;
  tcp_closed: number;
  retransmits: number;
}

function totals(points: NetPoint[]): Totals {
  return {
    bytes_written: sum(points, 'bytes_written'),
    bytes_read: sum(points, 'bytes_read'),
    tcp_established: sum(points, 'tcp_established'),
    tcp_closed: sum(points, 'tcp_closed'),
    retransmits: sum(points, 'retransmits'),
  };
}

/** Waits until the points matching `filter` add up to `want` (they arrive over several intervals). */
async function waitForTotals(filter: (t: Record<string, string>) => boolean, want: Partial<Totals>, timeoutMs = 20_000): Promise<Totals> {
  let last: Totals | undefined;
  await waitFor(() => {
    last = totals(netflow(filter));
    return Object.entries(want).every(([k, v]) => last![k as keyof Totals] >= (v as number)) || undefined;
  }, timeoutMs);
  // One more interval: nothing may arrive beyond the expected totals.
  await new Promise((r) => setTimeout(r, 2500));
  return totals(netflow(filter));
}

/** A server listening before the collector starts (its listen() is never seen). */
let olderServer: Awaited<ReturnType<typeof startServer>>;
const OLDER_PORT = 18090;

beforeAll(async () => {
  hosts = createHostPair(1);
  receiver = await startReceiver({ host: '127.0.0.1', port: 0 });
  olderServer = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(OLDER_PORT), '0']);
  daemon = await startDaemon(`127.0.0.1:${receiver.port}`, ['--include-loopback', '--tags', 'suite=netflow;team=e2e']);
});

afterAll(async () => {
  const code = daemon ? await daemon.stop() : 0;
  await olderServer?.stop();
  await receiver?.close();
  hosts?.destroy();
  // A clean SIGTERM stop flushes and exits 0.
  expect(code).toBe(0);
});

describe('netflow over TCP', () => {
  const K = 5;
  const N = 12_345;
  const M = 54_321;

  async function tcpRound(serverIp: string, port: number, family: 'IPv4' | 'IPv6') {
    const server = await startServer(hosts.b, ['tcp-server', serverIp, String(port), String(M)]);
    const client = await runPeer(hosts.a, ['tcp-client', serverIp, String(port), String(K), String(N)]);
    expect(client.sent).toBe(K * N);
    expect(client.received).toBe(K * M);

    // pid too: another run of this file on the same machine uses the same addresses in its own namespaces.
    const isClient = (t: Record<string, string>) => t.direction === 'outgoing' && t.dst_ip === serverIp && t.dst_port === String(port) && t.pid === String(client.pid);
    const isServer = (t: Record<string, string>) => t.direction === 'incoming' && t.src_ip === serverIp && t.src_port === String(port) && t.pid === String(server.pid);
    const out = await waitForTotals(isClient, { bytes_written: K * N, bytes_read: K * M, tcp_established: K, tcp_closed: K });
    const inc = await waitForTotals(isServer, { bytes_read: K * N, bytes_written: K * M, tcp_established: K, tcp_closed: K });
    await server.stop();

    expect(out).toMatchObject({ bytes_written: K * N, bytes_read: K * M, tcp_established: K, tcp_closed: K });
    expect(inc).toMatchObject({ bytes_read: K * N, bytes_written: K * M, tcp_established: K, tcp_closed: K });

    console.info(`${family} TCP K=${K} N=${N} M=${M}: client ${JSON.stringify(out)}, server ${JSON.stringify(inc)}`);
    // Every point of the flow, not just one, names the real processes.
    for (const p of netflow(isClient)) expect(p.tags).toMatchObject({ pid: String(client.pid), process_name: 'dke-tcp-client' });
    for (const p of netflow(isServer)) expect(p.tags).toMatchObject({ pid: String(server.pid), process_name: 'dke-tcp-server' });
    const cp = netflow(isClient)[0]!;
    expect(cp.tags).toMatchObject({
      family,
      transport: 'tcp',
      src_port: '*',
      conn_side: 'client',
      client_port: '*',
      server_ip: serverIp,
      server_port: String(port),
      src_ip_type: 'private',
      dst_ip_type: 'private',
      dst_nat_ip: 'N/A',
      dst_nat_port: 'N/A',
      pid: String(client.pid),
      process_name: 'dke-tcp-client',
      service: 'ebpf',
      suite: 'netflow',
      team: 'e2e',
    });
    expect(Number(cp.tags.netns)).toBeGreaterThan(0);
    expect(num(cp.fields.client_sent)).toBe(num(cp.fields.bytes_written));
    const sp = netflow(isServer)[0]!;
    expect(sp.tags).toMatchObject({ conn_side: 'server', dst_port: '*', server_ip: serverIp, server_ip_type: 'private', pid: String(server.pid), process_name: 'dke-tcp-server' });
    expect(sp.tags.netns).not.toBe(cp.tags.netns);
    return { out, inc };
  }

  it('counts bytes, opens and closes between two namespaces over IPv4', async () => {
    await tcpRound(hosts.ipB, 18080, 'IPv4');
  });

  it('counts bytes, opens and closes over IPv6', async () => {
    await tcpRound(hosts.ip6B, 18081, 'IPv6');
  });

  it('names the listener older than the collector as the owner of connections it accepts, even with no byte moved', async () => {
    // No data: the server side never makes a send or receive that would
    // name its process, so the owner can only come from the listener, which
    // the loader finds among the open files at start-up.
    const client = await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(OLDER_PORT), '3', '0']);
    expect(client.sent).toBe(0);
    const isServer = (t: Record<string, string>) => t.direction === 'incoming' && t.src_ip === hosts.ipB && t.src_port === String(OLDER_PORT);
    const inc = await waitForTotals(isServer, { tcp_established: 3, tcp_closed: 3 });
    expect(inc).toMatchObject({ tcp_established: 3, tcp_closed: 3, bytes_read: 0, bytes_written: 0 });
    for (const p of netflow(isServer)) expect(p.tags).toMatchObject({ pid: String(olderServer.pid), process_name: 'dke-tcp-server' });
  });

  it('sees loopback flows with --include-loopback', async () => {
    const port = 18082;
    const server = await startServer(undefined, ['tcp-server', '127.0.0.1', String(port), String(M)]);
    const client = await runPeer(undefined, ['tcp-client', '127.0.0.1', String(port), String(K), String(N)]);
    const isClient = (t: Record<string, string>) => t.direction === 'outgoing' && t.dst_port === String(port) && t.pid === String(client.pid);
    const isServer = (t: Record<string, string>) => t.direction === 'incoming' && t.src_port === String(port);
    const out = await waitForTotals(isClient, { bytes_written: K * N, tcp_closed: K });
    const inc = await waitForTotals(isServer, { bytes_read: K * N, tcp_closed: K });
    await server.stop();
    expect(out).toMatchObject({ bytes_written: K * N, bytes_read: K * M, tcp_established: K, tcp_closed: K });
    expect(inc).toMatchObject({ bytes_read: K * N, bytes_written: K * M, tcp_established: K, tcp_closed: K });
    expect(netflow(isClient)[0]!.tags).toMatchObject({ src_ip: '127.0.0.1', dst_ip: '127.0.0.1', src_ip_type: 'loopback' });
  });

  it('reports retransmits close to the kernel count when segments are dropped', async () => {
    const port = 18083;
    const ipt = (args: string[]) => inNs(hosts.b, 'iptables', args);
    const rule = ['INPUT', '-p', 'tcp', '--dport', String(port), '-m', 'statistic', '--mode', 'random', '--probability', '0.2', '-j', 'DROP'];
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '1000']);
    const before = snmp(hosts.a, 'Tcp', 'RetransSegs');
    ipt(['-A', ...rule]);
    try {
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '3', String(400_000)]);
    } finally {
      ipt(['-D', ...rule]);
    }
    const kernel = snmp(hosts.a, 'Tcp', 'RetransSegs') - before;
    const isClient = (t: Record<string, string>) => t.direction === 'outgoing' && t.dst_port === String(port);
    const out = await waitForTotals(isClient, { tcp_closed: 3, retransmits: kernel });
    await server.stop();
    console.info(`retransmits: collector ${out.retransmits}, kernel RetransSegs ${kernel}`);
    expect(kernel).toBeGreaterThan(0);
    expect(out.retransmits).toBeGreaterThan(0);
    expect(Math.abs(out.retransmits - kernel)).toBeLessThanOrEqual(Math.max(2, kernel * 0.1));
  });

  it('counts the server side SYN-ACK retransmits exactly, once each', async () => {
    // Every other SYN-ACK is lost on its way to the client: the server sends
    // it again (its request's count, born into the accepted socket, and seen
    // by the SYN-ACK retransmit hook: it must count once).
    const port = 18085;
    const ipt = (args: string[]) => inNs(hosts.a, 'iptables', args);
    const rule = ['INPUT', '-p', 'tcp', '--sport', String(port), '--tcp-flags', 'SYN,ACK', 'SYN,ACK', '-m', 'statistic', '--mode', 'nth', '--every', '2', '--packet', '0', '-j', 'DROP'];
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '1000']);
    const before = snmp(hosts.b, 'Tcp', 'RetransSegs');
    ipt(['-A', ...rule]);
    try {
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '4', '1000']);
    } finally {
      ipt(['-D', ...rule]);
    }
    const isServer = (t: Record<string, string>) => t.transport === 'tcp' && t.direction === 'incoming' && t.src_port === String(port);
    const out = await waitForTotals(isServer, { tcp_closed: 4 });
    await server.stop();
    const kernel = snmp(hosts.b, 'Tcp', 'RetransSegs') - before;
    console.info(`SYN-ACK retransmits: collector ${out.retransmits}, kernel RetransSegs ${kernel}`);
    expect(kernel).toBeGreaterThanOrEqual(2);
    expect(out.retransmits).toBe(kernel);
  });

  it('counts connections ended by a reset once each, whichever end resets (SO_LINGER 0; close() with unread data)', async () => {
    // A reset ends a connection at once (ESTABLISHED -> CLOSE), in the
    // closer's syscall on one end and in a softirq on the other, where the
    // application still holds the socket. Even connections: the client
    // aborts (SO_LINGER 0). Odd ones: the server closes with the client's
    // last byte unread. Each is closed once, on both ends.
    const port = 18086;
    const conns = 6;
    const n = 3000;
    const prelude = ['import select, socket, struct, sys', `K, N = ${conns}, ${n}`];
    const serverScript = [
      ...prelude,
      'l = socket.socket()',
      'l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
      `l.bind(("${hosts.ipB}", ${port})); l.listen(16)`,
      'print("ready", flush=True)',
      'for i in range(K):',
      '    c, _ = l.accept()',
      '    got = 0',
      '    while got < N:',
      '        b = c.recv(N - got)',
      '        if not b: sys.exit("short read")',
      '        got += len(b)',
      '    c.sendall(b"k")',
      '    if i % 2 == 0:',
      '        try:',
      '            while c.recv(65536): pass',
      '        except ConnectionResetError: pass',
      '    else:',
      '        select.select([c], [], [])',
      '    c.close()',
    ].join('\n');
    const clientScript = [
      ...prelude,
      'for i in range(K):',
      `    s = socket.create_connection(("${hosts.ipB}", ${port}))`,
      '    s.sendall(b"x" * N)',
      '    assert s.recv(1) == b"k"',
      '    if i % 2 == 0:',
      '        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))',
      '    else:',
      '        s.sendall(b"z")',
      '        try:',
      '            while s.recv(65536): pass',
      '        except ConnectionResetError: pass',
      '    s.close()',
    ].join('\n');
    const exited = (p: ReturnType<typeof spawn>) => new Promise<number | null>((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', r)));
    const server = spawn('ip', ['netns', 'exec', hosts.b, 'python3', '-c', serverScript], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout!.once('data', () => resolve());
        server.once('exit', (code) => reject(new Error(`reset server exited ${code} before listening`)));
      });
      const client = spawn('ip', ['netns', 'exec', hosts.a, 'python3', '-c', clientScript], { stdio: 'inherit' });
      expect(await exited(client)).toBe(0);
      expect(await exited(server)).toBe(0);
      const isClient = (t: Record<string, string>) => t.direction === 'outgoing' && t.dst_port === String(port) && t.pid === String(client.pid);
      const isServer = (t: Record<string, string>) => t.direction === 'incoming' && t.src_port === String(port) && t.pid === String(server.pid);
      const out = await waitForTotals(isClient, { tcp_closed: conns });
      const inc = await waitForTotals(isServer, { tcp_closed: conns });
      console.info(`resets: client ${JSON.stringify(out)}, server ${JSON.stringify(inc)}`);
      expect(out).toMatchObject({ bytes_written: conns * n + conns / 2, bytes_read: conns, tcp_established: conns, tcp_closed: conns });
      expect(inc).toMatchObject({ bytes_read: conns * n, bytes_written: conns, tcp_established: conns, tcp_closed: conns });
    } finally {
      server.kill('SIGKILL');
    }
  });

  it('reports rtt and rtt_var in line with ss -tin for the same socket', async () => {
    const port = 18084;
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '100']);
    // Hold the connection open for a few intervals so both we and ss see it live.
    const clientDone = runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '1', '200000', '4000']);
    await new Promise((r) => setTimeout(r, 2000));
    const ss = inNs(hosts.a, 'ss', ['-tin', 'dst', `${hosts.ipB}:${port}`]);
    const m = /rtt:([\d.]+)\/([\d.]+)/.exec(ss);
    expect(m, `ss -tin output: ${ss}`).not.toBeNull();
    const ssRttUs = Number(m![1]) * 1000;
    const ssVarUs = Number(m![2]) * 1000;
    await clientDone;
    const isClient = (t: Record<string, string>) => t.direction === 'outgoing' && t.dst_port === String(port);
    await waitForTotals(isClient, { tcp_closed: 1 });
    await server.stop();
    const rtts = netflow(isClient).map((p) => num(p.fields.rtt)).filter((v) => v > 0);
    const vars = netflow(isClient).map((p) => num(p.fields.rtt_var));
    console.info(`rtt: collector ${rtts.join(',')}us / rtt_var ${vars.join(',')}us; ss -tin ${ssRttUs}/${ssVarUs}us`);
    expect(rtts.length).toBeGreaterThan(0);
    const within = (ours: number, theirs: number) => Math.abs(ours - theirs) <= Math.max(theirs * 4, 500);
    expect(rtts.some((r) => within(r, ssRttUs)), `ours ${rtts} vs ss ${ssRttUs}us`).toBe(true);
    expect(vars.some((v) => within(v, ssVarUs)), `ours ${vars} vs ss ${ssVarUs}us`).toBe(true);
  });
});

describe('netflow over UDP', () => {
  it('counts datagram payload bytes exactly in both directions', async () => {
    const port = 15353;
    const C = 20;
    const N = 300;
    const M = 700;
    const server = await startServer(hosts.b, ['udp-server', hosts.ipB, String(port), String(M)]);
    const client = await runPeer(hosts.a, ['udp-client', hosts.ipB, String(port), String(C), String(N), String(M)]);
    const isClient = (t: Record<string, string>) =>
      t.transport === 'udp' && t.direction === 'outgoing' && t.dst_ip === hosts.ipB && t.dst_port === String(port) && t.pid === String(client.pid);
    const isServer = (t: Record<string, string>) =>
      t.transport === 'udp' && t.direction === 'incoming' && t.src_ip === hosts.ipB && t.src_port === String(port) && t.pid === String(server.pid);
    const out = await waitForTotals(isClient, { bytes_written: C * N, bytes_read: C * M });
    const inc = await waitForTotals(isServer, { bytes_read: C * N, bytes_written: C * M });
    await server.stop();
    console.info(`UDP C=${C} N=${N} M=${M}: client ${JSON.stringify(out)}, server ${JSON.stringify(inc)}`);
    expect(out.bytes_written).toBe(C * N);
    expect(out.bytes_read).toBe(C * M);
    expect(inc.bytes_read).toBe(C * N);
    expect(inc.bytes_written).toBe(C * M);
    const cp = netflow(isClient)[0]!;
    expect(cp.tags).toMatchObject({ pid: String(client.pid), process_name: 'dke-udp-client', src_port: '*', family: 'IPv4' });
    expect(cp.fields.retransmits).toBeUndefined();
    expect(netflow(isServer)[0]!.tags).toMatchObject({ pid: String(server.pid), process_name: 'dke-udp-server', conn_side: 'server' });
  });

  it('counts UDP over IPv6', async () => {
    const port = 15354;
    const server = await startServer(hosts.b, ['udp-server', hosts.ip6B, String(port), '50']);
    await runPeer(hosts.a, ['udp-client', hosts.ip6B, String(port), '10', '100', '50']);
    const isClient = (t: Record<string, string>) => t.transport === 'udp' && t.direction === 'outgoing' && t.dst_ip === hosts.ip6B;
    const out = await waitForTotals(isClient, { bytes_written: 1000, bytes_read: 500 });
    await server.stop();
    expect(out.bytes_written).toBe(1000);
    expect(out.bytes_read).toBe(500);
    expect(netflow(isClient)[0]!.tags.family).toBe('IPv6');
  });
});

describe('what reaches DataKit', () => {
  it('posts strict line protocol to /v1/write/network with input ebpf-net/netflow and precision ns', () => {
    const netflowWrites = receiver.writes.filter((w) => w.input === 'ebpf-net/netflow');
    expect(netflowWrites.length).toBeGreaterThan(0);
    for (const w of receiver.writes) {
      // ebpf-net also sends dnsflow (from the host's own lookups) on the same path.
      expect(['ebpf-net/netflow', 'ebpf-net/dnsflow']).toContain(w.input);
      expect(w.category).toBe('network');
      expect(w.precision).toBe('ns');
      expect(w.status).toBe(200);
      expect(w.points.length).toBeGreaterThan(0);
      expect(w.points.every((p) => p.measurement === w.input.split('/')[1])).toBe(true);
    }
    const fieldsOk = (receiver.points('netflow') as NetPoint[]).every((p) =>
      ['bytes_read', 'bytes_written'].every((f) => typeof p.fields[f] === 'number' || typeof p.fields[f] === 'bigint'),
    );
    expect(fieldsOk).toBe(true);
  });

  it('logs a start-up line with kernel, hook set, plugins, interval and API server', () => {
    const line = daemon.logs.find((l) => String(l.msg).startsWith('datakit-ebpf started'))!;
    expect(line).toMatchObject({ plugins: ['ebpf-net'], intervalMs: 1000, apiServer: `http://127.0.0.1:${receiver.port}` });
    expect(String(line.kernel)).toMatch(/^\d+\.\d+/);
    expect(String(line.hookSet)).toContain('tp_btf');
  });
});

describe('process names', () => {
  // Upstream reports the process's own name, never a thread's, and the
  // command line's basename when the kernel cut the name at 15 characters.
  it('names a process by itself, not by its renamed sending thread, with its full long name even after it exited', async () => {
    const port = 18095;
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '10']);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-names-'));
    const longName = 'dke-long-process-name-client'; // comm keeps 'dke-long-proces'
    fs.symlinkSync(fs.realpathSync('/usr/bin/python3'), path.join(dir, longName));
    const script = [
      'import ctypes, socket, sys, threading',
      'libc = ctypes.CDLL(None)',
      'def send():',
      '    libc.prctl(15, b"sender-thread", 0, 0, 0)  # PR_SET_NAME',
      `    s = socket.create_connection(("${hosts.ipB}", ${port}))`,
      '    s.sendall(b"x" * 4321)',
      '    s.shutdown(socket.SHUT_WR)',
      '    while s.recv(65536): pass',
      '    s.close()',
      'for _ in range(3):',
      '    t = threading.Thread(target=send); t.start(); t.join()',
    ].join('\n');
    try {
      const child = spawn('ip', ['netns', 'exec', hosts.a, path.join(dir, longName), '-c', script], { stdio: 'inherit' });
      const code = await new Promise((r) => child.once('exit', r));
      expect(code).toBe(0);
      const pid = String(child.pid);
      const isClient = (t: Record<string, string>) => t.direction === 'outgoing' && t.dst_port === String(port) && t.pid === pid;
      const out = await waitForTotals(isClient, { bytes_written: 3 * 4321, tcp_closed: 3 });
      expect(out).toMatchObject({ bytes_written: 3 * 4321, tcp_established: 3, tcp_closed: 3 });
      // One process, one name, in every point of its flow.
      expect([...new Set(netflow(isClient).map((p) => p.tags.process_name))]).toEqual([longName]);
    } finally {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
