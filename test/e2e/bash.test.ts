// ebpf-bash end to end: real interactive bash sessions on a pty (as root and
// as a user created while the collector runs), the real daemon with the real
// readline uretprobe, a real receiver; every received point is checked field
// by field. Also: ebpf-bash alone loads no network programs, and one plugin
// failing (at start-up or later) leaves the other running.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatRfc3339 } from '../../src/bash/log';
import type { ParsedPoint } from '../../src/lineproto/parse';
import { startReceiver, type Receiver } from '../../src/receiver/receiver';
import { startInteractiveBash, type InteractiveBash } from '../helpers/bash-pty';
import { spawnCli, startDaemon, tempStateDir, waitFor, type RunningDaemon } from '../helpers/daemon';
import { createHostPair, runPeer, startServer, type HostPair } from '../helpers/netns';

const RECEIVER_PORT = 25400;
const NET_PORT = 25401;
const HOST = 'dke-bash-e2e';

let receiver: Receiver;
let hosts: HostPair;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-bash-e2e-'));
// A daemon started without --user root drops to nobody: it must see in here.
fs.chmodSync(tmp, 0o755);
const shells: InteractiveBash[] = [];

beforeAll(async () => {
  receiver = await startReceiver({ host: '127.0.0.1', port: RECEIVER_PORT });
  hosts = createHostPair(4);
});

afterAll(async () => {
  for (const s of shells) s.kill();
  await receiver?.close();
  hosts?.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function bash(opts: Parameters<typeof startInteractiveBash>[0] = {}): Promise<InteractiveBash> {
  const s = await startInteractiveBash(opts);
  shells.push(s);
  return s;
}

/** Types each line and remembers when, for the timestamp check. */
async function typeAll(shell: InteractiveBash, lines: string[]): Promise<{ line: string; at: number }[]> {
  const out: { line: string; at: number }[] = [];
  for (const line of lines) {
    const at = Date.now();
    await shell.type(line);
    out.push({ line, at });
  }
  return out;
}

function pointsOf(pid: number): ParsedPoint[] {
  return receiver
    .points('bash')
    .filter((p) => p.fields.pid === String(pid))
    .sort((a, b) => (a.timestamp! < b.timestamp! ? -1 : a.timestamp! > b.timestamp! ? 1 : 0));
}

function bashWrites() {
  return receiver.writes.filter((w) => w.input === 'ebpf-bash');
}

/** Every point of one session, compared field by field with what was typed. */
function expectSession(pid: number, user: string, typed: { line: string; at: number }[], expectedCmd: (line: string) => string): void {
  const pts = pointsOf(pid);
  expect(pts.map((p) => p.fields.cmd)).toEqual(typed.map((t) => expectedCmd(t.line)));
  pts.forEach((p, i) => {
    const cmd = expectedCmd(typed[i]!.line);
    const truncated = Buffer.byteLength(typed[i]!.line) > 4096;
    const when = formatRfc3339(new Date(Number(p.timestamp! / 1_000_000n)));
    expect(p.measurement).toBe('bash');
    expect(p.tags).toEqual({ host: HOST, service: 'ebpf', source: 'bash', team: 'audit' });
    expect(p.fields).toEqual({
      pid: String(pid),
      user,
      cmd,
      message: `${when} pid:\`${pid}\` user:\`${user}\` cmd:\`${cmd}\``,
      status: 'info',
      ...(truncated ? { cmd_truncated: true } : {}),
    });
    expect(p.fieldTypes).toEqual({ pid: 'string', user: 'string', cmd: 'string', message: 'string', status: 'string', ...(truncated ? { cmd_truncated: 'bool' } : {}) });
    // The time the line was read, not the time it was sent.
    const ms = Number(p.timestamp! / 1_000_000n);
    expect(ms).toBeGreaterThanOrEqual(typed[i]!.at - 50);
    expect(ms).toBeLessThanOrEqual(typed[i]!.at + 2000);
  });
}

function startedLog(d: RunningDaemon): Record<string, unknown> {
  return d.logs.find((l) => String(l.msg).startsWith('datakit-ebpf started'))!;
}

function exitOf(proc: import('node:child_process').ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (proc.exitCode !== null ? resolve(proc.exitCode) : proc.once('exit', (c) => resolve(c))));
}

describe('interactive bash commands as DataKit logs', () => {
  it('logs what root and a user created after start-up type, exactly, with secrets masked before they leave the collector', async () => {
    const state = tempStateDir();
    const daemon = await startDaemon(`127.0.0.1:${RECEIVER_PORT}`, [
      '--enabled', 'ebpf-bash', '--hostname', HOST, '--tags', 'team=audit', '--state-dir', state,
      '--bash-redact', 'password,authorization,aws',
    ]);
    const user = `dkeb${process.pid % 100000}`;
    try {
      // Created while the collector runs: its name must still resolve.
      execFileSync('useradd', ['-m', '-s', '/bin/bash', user]);
      const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
      expect(uid).toBeGreaterThan(0);

      const root = await bash();
      const long = `echo ${'0123456789'.repeat(20)}`; // 205 bytes: upstream kept 128
      const unicode = 'echo héllo wörld 世界 🙂';
      const secret = ": curl -H 'Authorization: Bearer eyJhbGci.s3cr3t' -d password=hunter2 https://example.invalid/ && export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENG";
      const huge = `: ${'y'.repeat(5000)}`; // past the 4 KiB the kernel keeps
      const rootTyped = await typeAll(root, ['echo dke-root', long, unicode, secret, huge, 'exit']);

      const alice = await bash({ user });
      const userTyped = await typeAll(alice, ['echo dke-user', 'id -un', 'exit']);
      expect(alice.output()).toContain(`\r\n${user}\r\n`);

      await waitFor(() => pointsOf(root.pid).length >= rootTyped.length && pointsOf(alice.pid).length >= userTyped.length, 15_000);
      const masked = ": curl -H 'Authorization: Bearer ***' -d password=*** https://example.invalid/ && export AWS_SECRET_ACCESS_KEY=***";
      expectSession(root.pid, 'root', rootTyped, (l) => (l === secret ? masked : l === huge ? huge.slice(0, 4096) : l));
      expectSession(alice.pid, user, userTyped, (l) => l);

      for (const w of bashWrites()) expect(w.url).toBe('/v1/write/logging?input=ebpf-bash&precision=ns');
      // Redaction happens before the spool and the log: the secret is nowhere.
      await new Promise((r) => setTimeout(r, 200));
      const everything = [
        JSON.stringify(daemon.logs),
        ...bashWrites().map((w) => w.body),
        ...fs.readdirSync(state, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => fs.readFileSync(path.join(e.parentPath, e.name), 'latin1')),
      ].join('\n');
      for (const s of ['hunter2', 's3cr3t', 'wJalrXUtnFEMIK7MDENG']) expect(everything).not.toContain(s);
    } finally {
      expect(await daemon.stop()).toBe(0);
      execFileSync('userdel', ['-r', user], { stdio: 'ignore' });
    }
  });

  it('sends as soon as 128 lines wait, without waiting for the interval, and masks nothing unless asked', async () => {
    receiver.clear();
    const daemon = await startDaemon(`127.0.0.1:${RECEIVER_PORT}`, ['--enabled', 'ebpf-bash', '--hostname', HOST, '--tags', 'team=audit', '--interval', '60s']);
    try {
      const sh = await bash();
      const first = Array.from({ length: 127 }, (_, i) => `: line-${i}`);
      await typeAll(sh, first);
      await new Promise((r) => setTimeout(r, 700)); // all 127 are in the daemon's buffer
      expect(pointsOf(sh.pid)).toHaveLength(0);
      const t128 = Date.now();
      await sh.type('echo password=hunter2');
      const flushed = await waitFor(() => pointsOf(sh.pid).length > 0 || undefined, 10_000);
      expect(flushed).toBe(true);
      expect(Date.now() - t128).toBeLessThan(5000); // the interval is 60 s
      const writes = bashWrites();
      expect(writes).toHaveLength(1);
      expect(writes[0]!.points).toHaveLength(128);
      expect(pointsOf(sh.pid).at(-1)!.fields.cmd).toBe('echo password=hunter2');

      await typeAll(sh, [': after-1', ': after-2', 'exit']);
      await new Promise((r) => setTimeout(r, 500));
      expect(pointsOf(sh.pid)).toHaveLength(128); // the rest waits for the interval or the stop
      expect(await daemon.stop()).toBe(0);
      expect(pointsOf(sh.pid).map((p) => p.fields.cmd).slice(-3)).toEqual([': after-1', ': after-2', 'exit']);
      expect(pointsOf(sh.pid)).toHaveLength(131);
    } finally {
      await daemon.stop();
    }
  });

  it('probes the binary --bash-path names instead of the default one', async () => {
    receiver.clear();
    const copy = path.join(tmp, 'bash-copy');
    fs.copyFileSync('/bin/bash', copy);
    fs.chmodSync(copy, 0o755);
    const daemon = await startDaemon(`127.0.0.1:${RECEIVER_PORT}`, ['--enabled', 'ebpf-bash', '--hostname', HOST, '--tags', 'team=audit', '--bash-path', copy]);
    try {
      expect(startedLog(daemon).hookSet).toBe(`ebpf-bash: uretprobe readline in ${copy} (perf uprobe)`);
      const other = await bash({ bash: copy });
      const typed = await typeAll(other, ['echo from-the-copy', 'exit']);
      const system = await bash();
      await typeAll(system, ['echo from-bin-bash', 'exit']);
      await waitFor(() => pointsOf(other.pid).length >= 2, 10_000);
      await new Promise((r) => setTimeout(r, 1500));
      expectSession(other.pid, 'root', typed, (l) => l);
      expect(pointsOf(system.pid)).toHaveLength(0);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });

  it('audits a bash in another mount namespace (as in a container) through /proc/<pid>/root', async () => {
    receiver.clear();
    // A "container": its own mount namespace where /usr/bin/bash is another file.
    const image = path.join(tmp, 'container-bash');
    fs.copyFileSync('/bin/bash', image);
    fs.chmodSync(image, 0o755);
    const holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount --bind ${image} /usr/bin/bash && echo ready && exec sleep 60`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.once('data', () => resolve());
        holder.once('exit', (c) => reject(new Error(`unshare exited ${c}`)));
      });
      const inContainer = `/proc/${holder.pid}/root/usr/bin/bash`;
      expect(fs.statSync(inContainer).ino).toBe(fs.statSync(image).ino);
      const daemon = await startDaemon(`127.0.0.1:${RECEIVER_PORT}`, ['--enabled', 'ebpf-bash', '--hostname', HOST, '--tags', 'team=audit', '--bash-path', inContainer]);
      try {
        const contained = await bash({ mountNsOf: holder.pid!, bash: '/usr/bin/bash' });
        const typed = await typeAll(contained, ['echo inside', 'exit']);
        const host = await bash({ bash: '/usr/bin/bash' });
        await typeAll(host, ['echo outside', 'exit']);
        await waitFor(() => pointsOf(contained.pid).length >= 2, 10_000);
        await new Promise((r) => setTimeout(r, 1500));
        expectSession(contained.pid, 'root', typed, (l) => l);
        expect(pointsOf(host.pid)).toHaveLength(0);
      } finally {
        expect(await daemon.stop()).toBe(0);
      }
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

describe('plugins stay apart', () => {
  it('runs ebpf-bash alone with no network program loaded', async () => {
    const daemon = await startDaemon(`127.0.0.1:${RECEIVER_PORT}`, ['--enabled', 'ebpf-bash']);
    try {
      const started = startedLog(daemon);
      expect(started.plugins).toEqual(['ebpf-bash']);
      expect(started.hookSet).toBe('ebpf-bash: uretprobe readline in /bin/bash (perf uprobe)');
      const pids = started.loaderPids as Record<string, number>;
      expect(Object.keys(pids)).toEqual(['ebpf-bash']);
      // What the loader holds, from the kernel's view of its file descriptors.
      const progTypes: number[] = [];
      const mapTypes: number[] = [];
      const fdDir = `/proc/${pids['ebpf-bash']}/fdinfo`;
      for (const fd of fs.readdirSync(fdDir)) {
        const info = fs.readFileSync(path.join(fdDir, fd), 'utf8');
        const prog = /^prog_type:\s+(\d+)$/m.exec(info);
        if (prog && !/^link_type:/m.test(info)) progTypes.push(Number(prog[1]));
        const map = /^map_type:\s+(\d+)$/m.exec(info);
        if (map) mapTypes.push(Number(map[1]));
      }
      expect(progTypes).toEqual([2]); // one BPF_PROG_TYPE_KPROBE (the uretprobe); no tracing or cgroup_skb
      // The percpu telemetry array and the ring buffer; none of netflow's hash maps.
      expect(mapTypes.sort((a, b) => a - b)).toEqual([6, 27]);
      expect(daemon.logs.filter((l) => Number(l.level) >= 40 && l.plugin === 'ebpf-bash')).toEqual([]);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });

  it('keeps ebpf-net running when ebpf-bash cannot start, and says why in one line', async () => {
    receiver.clear();
    const missing = path.join(tmp, 'no-such-bash');
    const daemon = await startDaemon(`127.0.0.1:${RECEIVER_PORT}`, ['--enabled', 'ebpf-net,ebpf-bash', '--bash-path', missing]);
    try {
      const err = daemon.logs.find((l) => l.plugin === 'ebpf-bash' && String(l.msg).startsWith('plugin ebpf-bash cannot run'));
      expect(err?.msg).toBe(`plugin ebpf-bash cannot run: no bash binary to probe: ${missing}: no such file; fix --bash-path`);
      expect(startedLog(daemon).plugins).toEqual(['ebpf-net']);
      const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(NET_PORT), '300']);
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(NET_PORT), '2', '100']);
      const flows = await waitFor(() => {
        const pts = receiver.points('netflow').filter((p) => p.tags.direction === 'outgoing' && p.tags.dst_port === String(NET_PORT));
        return pts.reduce((a, p) => a + Number(p.fields.tcp_closed ?? 0), 0) >= 2 ? pts : undefined;
      }, 20_000);
      await server.stop();
      expect(flows!.reduce((a, p) => a + Number(p.fields.bytes_written ?? 0), 0)).toBe(200);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });

  it('exits with the reason when ebpf-bash is the only plugin and cannot start', async () => {
    for (const [bashPath, reason] of [
      [path.join(tmp, 'no-such-bash'), /no bash binary to probe: .*no-such-bash: no such file; fix --bash-path/],
      ['/usr/bin/ls', /\/usr\/bin\/ls has no readline symbol/],
    ] as const) {
      const { proc, stderr } = spawnCli(['run', '--enabled', 'ebpf-bash', '--bash-path', bashPath, '--log', 'stdout', '--state-dir', tempStateDir(), '--pin-root', 'off', '--datakit-apiserver', `127.0.0.1:${RECEIVER_PORT}`]);
      expect(await exitOf(proc)).toBe(1);
      await new Promise((r) => setTimeout(r, 50));
      expect(stderr.join('\n')).toMatch(reason);
    }
  });

  it('restarts a killed bash loader without touching the network loader', async () => {
    receiver.clear();
    const daemon = await startDaemon(`127.0.0.1:${RECEIVER_PORT}`, ['--enabled', 'ebpf-net,ebpf-bash', '--hostname', HOST, '--tags', 'team=audit']);
    try {
      const pids = startedLog(daemon).loaderPids as Record<string, number>;
      expect(Object.keys(pids).sort()).toEqual(['ebpf-bash', 'ebpf-net']);
      process.kill(pids['ebpf-bash']!, 'SIGKILL');
      const restarted = await waitFor(() => daemon.logs.find((l) => l.plugin === 'ebpf-bash' && l.msg === 'eBPF loader restarted'), 15_000);
      expect(restarted).toBeDefined();
      expect(() => process.kill(pids['ebpf-net']!, 0)).not.toThrow();
      expect(daemon.logs.some((l) => l.plugin === 'ebpf-net' && String(l.msg).includes('eBPF loader exited'))).toBe(false);
      const sh = await bash();
      const typed = await typeAll(sh, ['echo after-restart', 'exit']);
      await waitFor(() => pointsOf(sh.pid).length >= 2, 10_000);
      expectSession(sh.pid, 'root', typed, (l) => l);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });
});
