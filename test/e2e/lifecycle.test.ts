// Never crash, never leave hooks behind (issue 11), the daemon's side: a
// start on a host without DataKit's directories, paths that cannot work, stops
// by signal (to the whole process group, and a second one), one collector per
// pin root, and `datakit-ebpf cleanup`. The installed copy runs with the real
// privilege drop, real eBPF and real signals; what stays attached is checked
// with bpftool, following the ids of this collector's own programs (other
// collectors on the machine run dke_ programs too).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataKitError, startReceiver, type Receiver } from '../../src/receiver/receiver';
import { tempPinRoot, tempStateDir } from '../helpers/daemon';
import { fakeDataKit, jsonLines, runInstall, uidOf, type FakeDataKit } from '../helpers/install';
import { waitUntil } from '../helpers/log-capture';
import { createHostPair, inNs, runPeer, startPeer, startServer, type HostPair } from '../helpers/netns';
import { loadedPrograms, pinnedFiles, pinnedProgramIds, waitProgramsGone } from '../helpers/pins';

let hosts: HostPair;
let receiver: Receiver;
let dk: FakeDataKit;
let main: string;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-life-'));
const running: ChildProcess[] = [];
/** The user the daemon drops to: the installer's, else nobody. */
const user = uidOf('datakit-ebpf') !== undefined ? 'datakit-ebpf' : 'nobody';

beforeAll(async () => {
  hosts = createHostPair(11);
  receiver = await startReceiver({ host: '127.0.0.1', port: 0 });
  // An installed copy is world-readable, so the daemon really drops to `user`.
  dk = fakeDataKit();
  const r = runInstall(['--root', dk.root]);
  if (r.code !== 0) throw new Error(`install failed: ${r.out}`);
  main = path.join(dk.externals, 'datakit-ebpf.d/dist/src/cli/main.js');
  fs.chmodSync(scratch, 0o755);
});

afterAll(async () => {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await receiver?.close();
  hosts?.destroy();
  fs.rmSync(scratch, { recursive: true, force: true });
  if (dk) fs.rmSync(dk.root, { recursive: true, force: true });
});

interface Run {
  proc: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
  logs(): Record<string, unknown>[];
}

/**
 * Runs the installed collector. `setup` is a shell script run first in a
 * private mount namespace (mounts there are seen by the collector only);
 * `group` gives it a process group of its own, as a shell does.
 */
function run(args: string[], opts: { setup?: string; group?: boolean; logFile?: string } = {}): Run {
  const argv = [main, ...args];
  const proc = opts.setup
    ? spawn('unshare', ['-m', 'bash', '-c', `set -e\n${opts.setup}\nexec "$@"`, 'bash', process.execPath, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], detached: opts.group })
    : spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: opts.group });
  running.push(proc);
  const stdout: string[] = [];
  const stderr: string[] = [];
  readline.createInterface({ input: proc.stdout! }).on('line', (l) => stdout.push(l));
  readline.createInterface({ input: proc.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, stdout, stderr, exited, logs: () => (opts.logFile ? jsonLines(opts.logFile) : jsonLines(stdout)) };
}

async function started(r: Run): Promise<Record<string, unknown>> {
  let line: Record<string, unknown> | undefined;
  await waitUntil(
    'the collector to start',
    () => {
      if (r.proc.exitCode !== null) throw new Error(`collector exited ${r.proc.exitCode}: ${r.stderr.join(' | ')}`);
      line = r.logs().find((l) => String(l.msg).startsWith('datakit-ebpf started'));
      return line !== undefined;
    },
    30_000,
  );
  return line!;
}

async function exitOf(r: Run, timeoutMs = 30_000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`collector did not exit within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([r.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : ((v as number) ?? 0));

/** Outgoing netflow totals of this file's client namespace to `port`. */
function totals(recv: Receiver, port: number) {
  const netns = String(fs.statSync(`/run/netns/${hosts.a}`).ino);
  const pts = recv.points('netflow').filter((p) => p.tags.direction === 'outgoing' && p.tags.dst_port === String(port) && p.tags.netns === netns);
  const s = (f: string): number => pts.reduce((a, p) => a + num(p.fields[f]), 0);
  return { bytes_written: s('bytes_written'), bytes_read: s('bytes_read'), tcp_established: s('tcp_established'), tcp_closed: s('tcp_closed') };
}

const mode = (p: string): number => fs.statSync(p).mode & 0o7777;

/** What is left in a pin root (the directory itself may stay). */
const leftIn = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir) : []);

/** A process that runs (a zombie waiting for its reaper does not). */
function runs(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

/** A setup script that makes /usr/local/datakit not exist (the rest of /usr/local stays reachable); `dir` keeps what the collector creates there. */
function withoutDataKit(dir: string): string {
  fs.mkdirSync(path.join(dir, 'orig'), { recursive: true });
  fs.chmodSync(dir, 0o755);
  return [
    `mount --bind /usr/local ${dir}/orig`,
    `for e in ${dir}/orig/*; do b=\${e##*/}; [ "$b" = datakit ] || ln -sfn "/usr/local/orig/$b" "${dir}/$b"; done`,
    `mount --bind ${dir} /usr/local`,
    // The bind above hid the original /usr/local; the links point at it through orig/.
    `mount --bind ${dir}/orig /usr/local/orig`,
  ].join('\n');
}

describe('start-up on a host without DataKit', () => {
  it('runs DataKit\'s command line, delivers exact bytes and detaches at stop (was: EACCES in MarksStore.clear, an uncaught exception, programs left attached)', async () => {
    const dir = path.join(scratch, 'usr-local');
    const pins = tempPinRoot();
    const log = path.join(dir, 'datakit/externals/datakit-ebpf.log');
    // DataKit's command line (no --log, no --state-dir); only the pin root is this test's own.
    const r = run(['run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--interval', '1s', '--pin-root', pins], { setup: withoutDataKit(dir), logFile: log });
    await started(r);
    // Parents every user can traverse; the state directory is the daemon's user's; the log is not world-readable.
    expect(mode(path.join(dir, 'datakit'))).toBe(0o755);
    expect(mode(path.join(dir, 'datakit/externals'))).toBe(0o755);
    const state = path.join(dir, 'datakit/externals/datakit-ebpf.state');
    expect(fs.statSync(state).uid).toBe(uidOf(user));
    expect(mode(state)).toBe(0o750);
    expect(mode(log)).toBe(0o640);
    expect(r.logs().some((l) => String(l.msg).includes('kept in memory only'))).toBe(false);

    const port = 21100;
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '500']);
    await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '3', '1000']);
    await waitUntil('3 closed connections delivered', () => totals(receiver, port).tcp_closed >= 3, 20_000);
    await server.stop();
    expect(totals(receiver, port)).toEqual({ bytes_written: 3000, bytes_read: 1500, tcp_established: 3, tcp_closed: 3 });
    // The spool is in use.
    expect(fs.readdirSync(path.join(state, 'spool')).length).toBeGreaterThan(0);

    const progs = pinnedProgramIds(pins);
    expect(progs.length).toBeGreaterThan(0);
    r.proc.kill('SIGTERM');
    expect(await exitOf(r)).toBe(0);
    expect(r.logs().filter((l) => (l.level as number) >= 50)).toEqual([]);
    await waitProgramsGone(progs);
    expect(leftIn(pins)).toEqual([]);
  });
});

describe('paths that cannot work', () => {
  const cases: { name: string; setup: (dir: string) => string; state: (dir: string) => string; why: (dir: string) => RegExp }[] = [
    {
      name: 'a read-only file system',
      setup: (dir) => `mount -t tmpfs -o ro,mode=0755 tmpfs ${dir}`,
      state: (dir) => path.join(dir, 'state'),
      why: () => /it is on a read-only file system/,
    },
    {
      name: 'a full file system',
      setup: (dir) => `mount -t tmpfs -o size=64k,mode=0755 tmpfs ${dir}\nhead -c 1M /dev/zero > ${dir}/fill 2>/dev/null || true`,
      state: (dir) => path.join(dir, 'state'),
      why: () => /its file system is full/,
    },
    {
      name: 'a parent the user cannot traverse',
      setup: (dir) => `mkdir -m 0750 ${dir}/private
touch ${dir}/private/someone-elses`,
      state: (dir) => path.join(dir, 'private/externals/datakit-ebpf.state'),
      why: (dir) => new RegExp(`${dir}/private is not searchable by this user \\(mode 0750, owner uid 0 gid 0\\)`),
    },
  ];
  for (const c of cases) {
    it(`a state directory on ${c.name}: one line naming the path, the user and the fix, exit 2, nothing attached`, async () => {
      const dir = fs.mkdtempSync(path.join(scratch, 'paths-'));
      fs.chmodSync(dir, 0o755);
      const pins = tempPinRoot();
      const state = c.state(dir);
      const r = run(['run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--log', 'stdout', '--pin-root', pins, '--state-dir', state], { setup: c.setup(dir) });
      expect(await exitOf(r)).toBe(2);
      expect(r.stderr).toHaveLength(1);
      const line = r.stderr[0]!;
      expect(line).toContain(`state directory ${state} cannot be used by user ${user}: `);
      expect(line).toMatch(c.why(dir));
      expect(line).toMatch(/pass --state-dir with a directory \S+ can write \(e\.g\. \/var\/lib\/datakit-ebpf\), or --user root$/);
      expect(r.logs().some((l) => String(l.msg).startsWith('datakit-ebpf started'))).toBe(false);
      expect(pinnedFiles(pins)).toEqual([]);
    });
  }
});

describe('what an earlier version left', () => {
  it('a parent it created 0750 root that holds only the collector\'s files is made traversable, and the collector runs', async () => {
    const dir = fs.mkdtempSync(path.join(scratch, 'old-'));
    fs.chmodSync(dir, 0o755);
    // As the start-up before this fix left /usr/local/datakit on a host without DataKit.
    const state = path.join(dir, 'datakit/externals/datakit-ebpf.state');
    fs.mkdirSync(path.join(state, 'spool'), { recursive: true, mode: 0o750 });
    for (const d of ['datakit', 'datakit/externals']) fs.chmodSync(path.join(dir, d), 0o750);
    const pins = tempPinRoot();
    const r = run(['run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--log', 'stdout', '--pin-root', pins, '--state-dir', state]);
    await started(r);
    expect(mode(path.join(dir, 'datakit'))).toBe(0o751); // search, not read, for others
    expect(r.logs().filter((l) => String(l.msg).startsWith('made ')).map((l) => l.dir)).toEqual([path.join(dir, 'datakit'), path.join(dir, 'datakit/externals')]);
    r.proc.kill('SIGTERM');
    expect(await exitOf(r)).toBe(0);
  });
});

describe('stopping by signal', () => {
  it('SIGINT to the whole process group: the last interval is delivered exactly, no loader is restarted, nothing stays attached', async () => {
    const pins = tempPinRoot();
    // One long interval: everything below is in the last one, flushed by the stop.
    const r = run(['run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--interval', '60s', '--log', 'stdout', '--pin-root', pins, '--state-dir', tempStateDir()], { group: true });
    await started(r);
    const port = 21200;
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '400']);
    // One connection stays open (1 byte sent), three come and go.
    const held = startPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '1', '300', '600000']);
    try {
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '3', '1000']);
      await waitUntil('the held connection', () => inNs(hosts.a, 'ss', ['-Htn', 'state', 'established', `dst ${hosts.ipB}:${port}`]).trim() !== '', 10_000);
      const progs = pinnedProgramIds(pins);
      expect(progs.length).toBeGreaterThan(0);
      process.kill(-r.proc.pid!, 'SIGINT');
      expect(await exitOf(r)).toBe(0);
      expect(r.logs().filter((l) => /restarting in|eBPF loader restarted/.test(String(l.msg)))).toEqual([]);
      expect(r.logs().filter((l) => String(l.msg).startsWith('SIGINT: stopping'))).toHaveLength(1);
      await waitProgramsGone(progs);
      expect(leftIn(pins)).toEqual([]);
      // The open connection's byte and its open are only in the kernel maps:
      // exact only when the loaders ignore the group's signal and serve the last read.
      expect(totals(receiver, port)).toEqual({ bytes_written: 3001, bytes_read: 1200, tcp_established: 4, tcp_closed: 3 });
    } finally {
      held.proc.kill('SIGKILL');
      await server.stop();
    }
  });

  it('a second SIGINT stops at once and says in one line what was not flushed', async () => {
    const stuck = await startReceiver({ host: '127.0.0.1', port: 0 });
    stuck.setResponder(() => dataKitError(500, 'datakit.internalError', 'busy'));
    const pins = tempPinRoot();
    try {
      const r = run(['run', '--datakit-apiserver', `127.0.0.1:${stuck.port}`, '--interval', '1s', '--log', 'stdout', '--pin-root', pins, '--state-dir', tempStateDir()], { group: true });
      await started(r);
      const port = 21300;
      const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '10']);
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '2', '10']);
      await server.stop();
      // DataKit refuses: points wait in the spool, so the stop's drain cannot finish.
      await waitUntil('a refused delivery', () => r.logs().some((l) => l.status === 500), 20_000);
      const progs = pinnedProgramIds(pins);
      process.kill(-r.proc.pid!, 'SIGINT');
      await waitUntil('the stop to begin', () => r.logs().some((l) => String(l.msg).startsWith('SIGINT: stopping')), 10_000);
      const t0 = Date.now();
      process.kill(-r.proc.pid!, 'SIGINT');
      expect(await exitOf(r, 5_000)).toBe(1);
      expect(Date.now() - t0).toBeLessThan(3_000);
      const second = r.logs().filter((l) => String(l.msg).startsWith('second SIGINT'));
      expect(second).toHaveLength(1);
      expect(String(second[0]!.msg)).toMatch(/^second SIGINT: stopping at once; .*\d+ point\(s\) not yet delivered stay in the spool for the next start$/);
      await waitProgramsGone(progs);
      expect(leftIn(pins)).toEqual([]);
    } finally {
      await stuck.close();
    }
  });
});

describe('one collector per pin root', () => {
  it('a second collector on the same pin root names the pid holding it and exits 2', async () => {
    const pins = tempPinRoot();
    const a = run(['run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--log', 'stdout', '--pin-root', pins, '--state-dir', tempStateDir()]);
    await started(a);
    const b = run(['run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--log', 'stdout', '--pin-root', pins, '--state-dir', tempStateDir()]);
    expect(await exitOf(b)).toBe(2);
    expect(b.stderr).toEqual([
      `datakit-ebpf: another collector (pid ${a.proc.pid}) is running on the pin root ${pins}: stop it first, or give this one its own --pin-root (two collectors would count every flow twice)`,
    ]);
    // The refused one touched nothing of the running one.
    expect(a.proc.exitCode).toBeNull();
    expect(pinnedProgramIds(pins).length).toBeGreaterThan(0);
    a.proc.kill('SIGTERM');
    expect(await exitOf(a)).toBe(0);
  });

  it('a start right after a SIGKILL (as DataKit restarts) takes the pin root over instead of refusing', async () => {
    const pins = tempPinRoot();
    const state = tempStateDir();
    const args = ['run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--interval', '1s', '--log', 'stdout', '--pin-root', pins, '--state-dir', state];
    const a = run(args);
    const loaderPid = Number((await started(a)).loaderPid);
    a.proc.kill('SIGKILL');
    await exitOf(a);
    const b = run(args);
    await started(b);
    expect(runs(loaderPid)).toBe(false);
    // It resumed the killed one's pinned maps rather than starting over.
    expect(b.logs().some((l) => /^resuming counters from the pinned maps/.test(String(l.msg)))).toBe(true);
    b.proc.kill('SIGTERM');
    expect(await exitOf(b)).toBe(0);
  });
});

describe('datakit-ebpf cleanup', () => {
  const legacy = '/sys/fs/bpf/tcp_conns';
  const decoy = '/sys/fs/bpf/listeners';
  afterAll(() => {
    for (const p of [legacy, decoy]) fs.rmSync(p, { force: true });
  });

  it('refuses while a collector runs, then removes every pinned object of any build and its programs are gone', async () => {
    const pins = tempPinRoot();
    const a = run(['run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--log', 'stdout', '--pin-root', pins, '--state-dir', tempStateDir()]);
    await started(a);
    const refused = spawnSync(process.execPath, [main, 'cleanup', '--pin-root', pins], { encoding: 'utf8' });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toBe(`datakit-ebpf cleanup: another collector (pid ${a.proc.pid}) is running on the pin root ${pins}: stop it first\n`);
    expect(refused.stdout).toBe('');

    // DataKit stops its inputs with SIGKILL: the pinned programs keep running.
    const progs = pinnedProgramIds(pins);
    expect(progs.length).toBeGreaterThan(0);
    a.proc.kill('SIGKILL');
    await exitOf(a);
    await new Promise((r) => setTimeout(r, 500)); // give a wrongly unpinned program time to vanish
    expect(loadedPrograms(progs).map((p) => p.id)).toEqual(progs);
    const files = pinnedFiles(pins).filter((f) => path.basename(f) !== 'lock');

    // What a build before ab30f56 pinned with --pin-root off, and a map of someone else with one of its names.
    execFileSync('bpftool', ['map', 'create', legacy, 'type', 'hash', 'key', '8', 'value', '8', 'entries', '1', 'name', 'tcp_conns']);
    execFileSync('bpftool', ['map', 'create', decoy, 'type', 'array', 'key', '4', 'value', '4', 'entries', '1', 'name', 'not_ours']);

    const r = spawnSync(process.execPath, [main, 'cleanup', '--pin-root', pins], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = r.stdout.trim().split('\n');
    for (const f of files) expect(out).toContain(`removed ${f}`);
    expect(out).toContain(`removed ${legacy} (pinned by an older build)`);
    expect(out).toContain(`left alone ${decoy}: map "not_ours" of type array is not the collector's`);
    expect(out.at(-1)).toBe(`datakit-ebpf cleanup: removed ${files.length + 1} pinned object(s); their programs are detached`);
    await waitProgramsGone(progs);
    expect(leftIn(pins)).toEqual([]);
    expect(fs.existsSync(legacy)).toBe(false);
    expect(fs.existsSync(decoy)).toBe(true);

    const again = spawnSync(process.execPath, [main, 'cleanup', '--pin-root', pins], { encoding: 'utf8' });
    expect(again.status).toBe(0);
    expect(again.stdout.trim().split('\n').at(-1)).toBe(`datakit-ebpf cleanup: nothing pinned under ${pins}`);
  });
});
