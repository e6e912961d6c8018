// ebpf-bash end to end: real interactive bash sessions on a pty (as root and
// as a user created while the collector runs), the real daemon with the real
// readline uretprobe, a real receiver; every received point is checked field
// by field. Also: ebpf-bash alone loads no network programs, and one plugin
// failing (at start-up or later) leaves the other running.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatRfc3339 } from '../../src/bash/log';
import { capNames } from '../../src/daemon/privileges';
import type { ParsedPoint } from '../../src/lineproto/parse';
import { startReceiver, type Receiver } from '../../src/receiver/receiver';
import { startInteractiveBash, type InteractiveBash } from '../helpers/bash-pty';
import { bashImage, cgroupNamed, inContainer, overlayRoot, type Mounted } from '../helpers/containers';
import { spawnCli, startDaemon, tempStateDir, waitFor, type RunningDaemon } from '../helpers/daemon';
import { fakeDataKit, jsonLines, launch, procCreds, runInstall } from '../helpers/install';
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
/** Mounts and cgroups, removed in reverse order after the shells are gone. */
const mounted: Mounted[] = [];

beforeAll(async () => {
  receiver = await startReceiver({ host: '127.0.0.1', port: RECEIVER_PORT });
  hosts = createHostPair(4);
});

afterAll(async () => {
  for (const s of shells) s.kill();
  await new Promise((r) => setTimeout(r, 200));
  for (const m of mounted.reverse()) m.remove();
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

/** Every point of one session, compared field by field with what was typed; `tags`: beyond the common ones. */
function expectSession(
  pid: number,
  user: string,
  typed: { line: string; at: number }[],
  expectedCmd: (line: string) => string,
  tags: Record<string, string> = {},
): void {
  const pts = pointsOf(pid);
  expect(pts.map((p) => p.fields.cmd)).toEqual(typed.map((t) => expectedCmd(t.line)));
  pts.forEach((p, i) => {
    const cmd = expectedCmd(typed[i]!.line);
    const truncated = Buffer.byteLength(typed[i]!.line) > 4096;
    const when = formatRfc3339(new Date(Number(p.timestamp! / 1_000_000n)));
    expect(p.measurement).toBe('bash');
    expect(p.tags).toEqual({ host: HOST, service: 'ebpf', source: 'bash', team: 'audit', ...tags });
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

/** The loader's perf-event BPF links: one per uprobe it holds. */
function perfLinks(loaderPid: number): number {
  const dir = `/proc/${loaderPid}/fdinfo`;
  return fs.readdirSync(dir).filter((fd) => {
    try {
      return /^link_type:\s+perf$/m.test(fs.readFileSync(path.join(dir, fd), 'utf8'));
    } catch {
      return false; // closed meanwhile
    }
  }).length;
}

const PROBING = 'ebpf-bash: probing readline in a bash binary of another mount namespace';
const DETACHED = 'ebpf-bash: no process runs this bash binary any more: probe detached';

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

describe('bash in containers, found without configuration', () => {
  // A user only the image knows: a name taken from the host would be wrong.
  const CTR_UID = 4242;
  const PASSWD = `root:x:0:0:root:/root:/bin/bash\nctruser:x:${CTR_UID}:${CTR_UID}:only in the image:/:/bin/bash\n`;
  let image: string;
  let imageBash: fs.Stats;

  beforeAll(() => {
    expect(spawnSync('getent', ['passwd', String(CTR_UID)]).status, `uid ${CTR_UID} must not exist on this host`).not.toBe(0);
    image = bashImage(path.join(tmp, 'image'), PASSWD);
    imageBash = fs.statSync(path.join(image, 'bin/bash'));
    expect(imageBash.ino).not.toBe(fs.statSync('/bin/bash').ino);
  });

  const devOf = (st: fs.Stats): string => `${Math.floor(st.dev / 256) & 0xfff}:${(st.dev & 0xff) | ((st.dev >> 12) & 0xfff00)}`;

  it('audits the shells of two containers of one image through one probe, with the image\'s user names and the container id, as the unprivileged collector', async () => {
    receiver.clear();
    // The installed collector, as DataKit runs it: the daemon drops to an
    // unprivileged user and the bash loader keeps only its own capabilities.
    const dk = fakeDataKit();
    const installed = runInstall(['--root', dk.root]);
    expect(installed.code, installed.out).toBe(0);
    const run = launch(dk.launcher, [
      'run', '--datakit-apiserver', `127.0.0.1:${RECEIVER_PORT}`, '--enabled', 'ebpf-bash', '--hostname', HOST, '--tags', 'team=audit',
      '--interval', '1s', '--log', 'stdout', '--pin-root', 'off',
    ]);
    const logs = (): Record<string, unknown>[] => jsonLines(run.stdout);
    try {
      const started = await waitFor(() => logs().find((l) => String(l.msg).startsWith('datakit-ebpf started')), 30_000, () =>
        run.proc.exitCode !== null ? `collector exited ${run.proc.exitCode}: ${run.stderr.join(' | ')}` : undefined,
      );
      expect(started!.hookSet).toBe('ebpf-bash: uretprobe readline in /bin/bash (perf uprobe) + bash in other mount namespaces (sched_process_exec)');
      const loaderPid = (started!.loaderPids as Record<string, number>)['ebpf-bash']!;
      const loader = procCreds(loaderPid);
      expect(loader.uid).not.toBe(0);
      expect(capNames(loader.capEff).sort()).toEqual(['CAP_BPF', 'CAP_PERFMON', 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE']);
      expect(perfLinks(loaderPid)).toBe(1); // /bin/bash (= /usr/bin/bash)

      // Two containers of one image: their own mount namespaces, overlay
      // roots over the same layer; the first in a cgroup named as Docker's
      // systemd driver names one.
      const id = randomBytes(32).toString('hex');
      const cgroup = cgroupNamed(`docker-${id}.scope`);
      const ctr1 = overlayRoot(image, path.join(tmp, 'ctr1'));
      const ctr2 = overlayRoot(image, path.join(tmp, 'ctr2'));
      mounted.push(cgroup, ctr1, ctr2);

      const one = await bash({ via: inContainer(ctr1.dir, CTR_UID, cgroup) });
      const probing = await waitFor(() => logs().find((l) => l.msg === PROBING), 10_000);
      // The layer's file (what both overlays map), not /bin/bash and not an overlay inode.
      expect(probing).toMatchObject({ binary: path.join(ctr1.dir, 'bin/bash'), dev: devOf(imageBash), ino: imageBash.ino, pid: one.pid, container_id: id, catch_up: true });
      console.log(`[bash] container shell ${one.pid}: probed ${probing!.binary} dev ${probing!.dev} ino ${probing!.ino} (host /bin/bash ino ${fs.statSync('/bin/bash').ino}), container ${id.slice(0, 12)}`);
      expect(perfLinks(loaderPid)).toBe(3); // + readline's return and entry in the image's bash

      // What it takes to read another user's /proc/<pid>/root: CAP_SYS_PTRACE, not CAP_SYS_ADMIN or CAP_DAC_READ_SEARCH.
      const asLoader = (caps: string) =>
        spawnSync('setpriv', [`--reuid=${loader.uid}`, `--regid=${loader.gid}`, '--clear-groups', `--inh-caps=${caps}`, `--ambient-caps=${caps}`, 'cat', `/proc/${one.pid}/root/etc/passwd`], { encoding: 'utf8' });
      expect(asLoader('+sys_admin,+dac_read_search,+bpf,+perfmon').stderr).toContain('Permission denied');
      expect(asLoader('+sys_ptrace').stdout).toBe(PASSWD);

      const typedOne = await typeAll(one, ['echo from-container-one', 'echo $UID']);
      expect(one.output()).toContain(`\r\n${CTR_UID}\r\n`);
      const two = await bash({ via: inContainer(ctr2.dir, CTR_UID) });
      const typedTwo = await typeAll(two, ['echo from-container-two', 'exit']);
      const host = await bash();
      const typedHost = await typeAll(host, ['echo from-the-host', 'exit']);
      // The second container's shell exited: the first still runs the file.
      await new Promise((r) => setTimeout(r, 700));
      expect(logs().filter((l) => l.msg === DETACHED)).toEqual([]);
      typedOne.push(...(await typeAll(one, ['exit'])));

      const detached = await waitFor(() => logs().find((l) => l.msg === DETACHED), 10_000);
      expect(detached).toMatchObject({ dev: devOf(imageBash), ino: imageBash.ino });
      expect(perfLinks(loaderPid)).toBe(1);
      expect(logs().filter((l) => l.msg === PROBING)).toHaveLength(1);
      await waitFor(() => pointsOf(one.pid).length >= 3 && pointsOf(two.pid).length >= 2 && pointsOf(host.pid).length >= 2, 15_000);
      await new Promise((r) => setTimeout(r, 1500)); // nothing more, nothing twice
      expectSession(one.pid, 'ctruser', typedOne, (l) => l, { container_id: id });
      expectSession(two.pid, 'ctruser', typedTwo, (l) => l);
      expectSession(host.pid, 'root', typedHost, (l) => l);
      expect(logs().filter((l) => Number(l.level) >= 40 && l.plugin === 'ebpf-bash')).toEqual([]);
    } finally {
      run.proc.kill('SIGTERM');
      expect(await run.exited).toBe(0);
      fs.rmSync(dk.root, { recursive: true, force: true });
    }
  });

  it('audits a container shell that was running before the collector started, from the first line typed after', async () => {
    receiver.clear();
    const id = randomBytes(32).toString('hex');
    const cgroup = cgroupNamed(`docker/${id}`); // Docker's cgroupfs driver
    mounted.push(cgroupNamed('docker'), cgroup);
    const running = await bash({ via: inContainer(image, CTR_UID, cgroup) });
    const daemon = await startDaemon(`127.0.0.1:${RECEIVER_PORT}`, ['--enabled', 'ebpf-bash', '--hostname', HOST, '--tags', 'team=audit']);
    try {
      const probing = await waitFor(() => daemon.logs.find((l) => l.msg === PROBING), 10_000);
      expect(probing).toMatchObject({ pid: running.pid, ino: imageBash.ino, container_id: id, catch_up: true });
      // It sat in readline() when the probe came: the first line is caught up at the next prompt.
      // Then the shell execs a bash again (the same pid, the same file): still audited, probed once.
      const typed = await typeAll(running, ['echo typed-after-start', 'echo again', 'exec /bin/bash --norc --noprofile -i', 'echo after-exec', 'exit']);
      await waitFor(() => pointsOf(running.pid).length >= typed.length, 10_000);
      await new Promise((r) => setTimeout(r, 1000));
      expectSession(running.pid, 'ctruser', typed, (l) => l, { container_id: id });
      await waitFor(() => daemon.logs.find((l) => l.msg === DETACHED), 10_000);
      expect(daemon.logs.filter((l) => l.msg === PROBING || l.msg === DETACHED).map((l) => l.msg)).toEqual([PROBING, DETACHED]);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });
});

describe('plugins stay apart', () => {
  it('runs ebpf-bash alone with no network program loaded', async () => {
    const daemon = await startDaemon(`127.0.0.1:${RECEIVER_PORT}`, ['--enabled', 'ebpf-bash']);
    try {
      const started = startedLog(daemon);
      expect(started.plugins).toEqual(['ebpf-bash']);
      expect(started.hookSet).toBe('ebpf-bash: uretprobe readline in /bin/bash (perf uprobe) + bash in other mount namespaces (sched_process_exec)');
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
      // BPF_PROG_TYPE_KPROBE: readline's return and entry; BPF_PROG_TYPE_TRACING: sched_process_exec,
      // sched_process_exit and the task iterator (finding bash in containers). No cgroup_skb.
      expect(progTypes.sort((a, b) => a - b)).toEqual([2, 2, 26, 26, 26]);
      // Hash maps of tracked shells, ignored binaries and catch-ups; the iterator's config and
      // .rodata arrays; the telemetry percpu array; the lines' and the process starts' ring buffers.
      expect(mapTypes.sort((a, b) => a - b)).toEqual([1, 1, 1, 2, 2, 6, 27, 27]);
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
