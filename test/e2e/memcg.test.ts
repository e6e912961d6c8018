// The host's sockets are not the collector's memory (issue 10). Every TCP
// socket gets its socket-local storage at birth and loses it at death; had
// the collector's memory cgroup created that map, the kernel would charge
// and uncharge the collector's cgroup at each one, on the workload's CPU.
// The loader creates it from the root memory cgroup (or the daemon does,
// before it drops root), while the daemon and the loader themselves stay in
// the cgroup they were started in.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver } from '../../src/receiver/receiver';
import { startDaemon, tempPinRoot, waitFor } from '../helpers/daemon';
import { fakeDataKit, jsonLines, launch, procCreds, runInstall } from '../helpers/install';
import { inCgroup, memcgRoot, slabBytes, withReadOnlyCgroups } from '../helpers/memcg';
import { createHostPair, nextJson, startPeer, startServer, type HostPair } from '../helpers/netns';

const root = memcgRoot();
let hosts: HostPair;
let cgroup: string;
beforeAll(() => {
  // CI runs as root on a kernel with a memory controller: without one these tests cannot say anything.
  if (!root) throw new Error('no memory cgroup controller is mounted (cgroup v1 memory, or v2 with memory enabled): these tests need one');
  hosts = createHostPair(14);
  cgroup = `${root.dir}/dke-e2e-memcg-${process.pid}`;
  fs.mkdirSync(cgroup, { recursive: true });
});
const roots: string[] = [];
afterAll(() => {
  hosts?.destroy();
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
  // Empty by now (the daemon and its loader exited); memory still charged to it is reparented.
  if (cgroup) fs.rmdirSync(cgroup);
});

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : ((v as number) ?? 0));
const CONNS = 4000;
// Charged, 8,000 sockets' storage is about 465 bytes each (80-byte value,
// its element, the per-socket header): 3.7 MB. The cgroup's usage moves in
// batches of 256 KB per CPU, and the collector's own kernel memory grows a
// little over these seconds.
const UNCHARGED_BELOW = 2 * CONNS * 128;

/** A collector started in the test's memory cgroup. */
interface Started {
  pid: number;
  logs(): Record<string, unknown>[];
  stop(): Promise<number | null>;
}

/** The collector from the checkout (as root, like the other e2e tests); `wrap` may change what it sees. */
async function fromCheckout(apiServer: string, wrap: (command: string[]) => string[]): Promise<Started> {
  const d = await startDaemon(apiServer, ['--interval', '1s'], (c) => inCgroup(cgroup, wrap(c)));
  return { pid: d.proc.pid!, logs: () => d.logs, stop: () => d.stop() };
}

/** The installed collector as DataKit starts it (as root), dropping to its own user before it forks the loader. */
async function asInstalled(apiServer: string): Promise<Started> {
  const dk = fakeDataKit();
  roots.push(dk.root);
  const r = runInstall(['--root', dk.root]);
  expect(r.code, r.out).toBe(0);
  const args = ['run', '--datakit-apiserver', apiServer, '--enabled', 'ebpf-net', '--interval', '1s', '--pin-root', tempPinRoot(), '--log', 'stdout', '--log-level', 'debug'];
  const [cmd, ...rest] = inCgroup(cgroup, [dk.launcher, ...args]);
  const run = launch(cmd!, rest);
  const started = await waitFor(() => jsonLines(run.stdout).find((l) => String(l.msg).startsWith('datakit-ebpf started')), 30_000, () =>
    run.proc.exitCode !== null ? `collector exited ${run.proc.exitCode}: ${run.stderr.join(' | ')}` : undefined,
  );
  expect(started, run.stderr.join('\n')).toBeDefined();
  // Dropped: the daemon and its loader are not root.
  expect(procCreds(run.proc.pid!).uid).not.toBe(0);
  expect(procCreds(Number(started!.loaderPid)).uid).not.toBe(0);
  return {
    pid: run.proc.pid!,
    logs: () => jsonLines(run.stdout),
    stop: async () => {
      run.proc.kill('SIGTERM');
      return run.exited;
    },
  };
}

/**
 * Starts a collector, holds CONNS connections open and returns what its
 * memory cgroup was charged meanwhile, with the collector's log.
 */
async function holdConnections(port: number, start: (apiServer: string) => Promise<Started>): Promise<{ grown: number; logs: Record<string, unknown>[] }> {
  const rx = await startReceiver({ host: '127.0.0.1', port: 0 });
  const collector = await start(`127.0.0.1:${rx.port}`);
  const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '0']);
  const hold = startPeer(hosts.a, ['tcp-hold', hosts.ipB, String(port), String(CONNS)]);
  try {
    // The daemon and its loader run where they were started.
    const members = fs.readFileSync(`${cgroup}/cgroup.procs`, 'utf8').trim().split('\n').map(Number);
    expect(members).toContain(collector.pid);
    expect(members.length).toBeGreaterThanOrEqual(2);

    const before = slabBytes(cgroup, root!.v1);
    const held = await nextJson(hold.lines, 60_000);
    expect(held.held).toBe(CONNS);
    // Counted: each client socket and each accepted one has its storage by now.
    const established = () =>
      rx.points('netflow').filter((p) => p.tags.direction === 'outgoing' && p.tags.dst_port === String(port)).reduce((a, p) => a + num(p.fields.tcp_established), 0);
    expect(await waitFor(() => established() >= CONNS || undefined, 15_000)).toBe(true);
    expect(established()).toBe(CONNS);
    return { grown: slabBytes(cgroup, root!.v1) - before, logs: collector.logs() };
  } finally {
    hold.proc.kill('SIGTERM');
    await server.stop();
    expect(await collector.stop()).toBe(0);
    await rx.close();
  }
}

describe('socket storage and the memory cgroup', () => {
  it("is charged to no memory cgroup: 4,000 live connections add almost nothing to the collector's", async () => {
    const { grown, logs } = await holdConnections(26400, (rx) => fromCheckout(rx, (c) => c));
    expect(grown).toBeLessThan(UNCHARGED_BELOW);
    expect(logs.filter((l) => String(l.msg).includes('socket-state map'))).toEqual([]);
  });

  it('nor when the daemon drops root before it starts the loader, as it does under DataKit: it makes the map first', async () => {
    const { grown, logs } = await holdConnections(26402, asInstalled);
    expect(grown).toBeLessThan(UNCHARGED_BELOW);
    expect(logs.filter((l) => String(l.msg).includes('socket-state map'))).toEqual([]);
  });

  it('with cgroups read-only (systemd\'s ProtectControlGroups=yes) is charged to the collector, which says why at debug level and counts as before', async () => {
    const { grown, logs } = await holdConnections(26401, (rx) => fromCheckout(rx, (c) => withReadOnlyCgroups(root!.dir, c)));
    expect(grown).toBeGreaterThan(UNCHARGED_BELOW);
    const said = logs.filter((l) => String(l.msg).includes('socket-state map'));
    expect(said.map((l) => l.level)).toEqual([20]); // pino's debug
    expect(String(said[0]!.msg)).toMatch(/charged to the collector's memory cgroup .*cgroup\.procs: Read-only file system/);
  });
});
