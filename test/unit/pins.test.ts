// The pin-root lock (one collector per pin root) and what cleanup removes,
// on a plain temporary directory: symlinks behave there as on bpffs. Real
// processes stand in for holders; the bpftool checks of old-layout maps use a
// stand-in script. The same on bpffs with real collectors: test/e2e/lifecycle.test.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { lockHolder, PinRootLock, processStart } from '../../src/daemon/pinlock';
import { legacyPins, listPins, removePins } from '../../src/daemon/pins';
import { isCollectorError } from '../../src/errors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-pins-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const procs: ChildProcess[] = [];
afterEach(() => {
  for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

function root(): string {
  return fs.mkdtempSync(path.join(tmp, 'root-'));
}

/** A live process to hold a lock, and its start time. */
function sleeper(): { pid: number; start: string; proc: ChildProcess } {
  const proc = spawn('sleep', ['60'], { stdio: 'ignore' });
  procs.push(proc);
  return { pid: proc.pid!, start: processStart(proc.pid!)!, proc };
}

/** A pid that was alive once and is not any more. */
async function deadPid(): Promise<{ pid: number; start: string }> {
  const s = sleeper();
  s.proc.kill('SIGKILL');
  await new Promise((r) => s.proc.once('exit', r));
  return { pid: s.pid, start: s.start };
}

const exited = (p: ChildProcess): Promise<unknown> => new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.once('exit', r)));

describe('pin-root lock', () => {
  it('is taken, names its holder with its start time, and is released only by its holder', async () => {
    const dir = root();
    const lock = await PinRootLock.acquire(dir, { waitMs: 0 });
    expect(fs.readlinkSync(path.join(dir, 'lock'))).toBe(`datakit-ebpf:${process.pid}:${processStart(process.pid)}`);
    expect(lockHolder(dir)).toEqual({ daemon: process.pid, loaders: [] });
    const loader = sleeper();
    lock.recordLoaders([loader.pid, undefined]);
    expect(fs.readlinkSync(path.join(dir, 'lock'))).toBe(`datakit-ebpf:${process.pid}:${processStart(process.pid)}:${loader.pid}:${loader.start}`);
    expect(fs.readdirSync(dir)).toEqual(['lock']);
    lock.release();
    lock.release();
    expect(fs.existsSync(path.join(dir, 'lock'))).toBe(false);
  });

  it('refuses while its holder lives, naming the pid, after waiting for it', async () => {
    const dir = root();
    const holder = sleeper();
    fs.symlinkSync(`datakit-ebpf:${holder.pid}:${holder.start}`, path.join(dir, 'lock'));
    const t0 = Date.now();
    const err = await PinRootLock.acquire(dir, { waitMs: 300 }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(isCollectorError(err, 'IN_USE')).toBe(true);
    expect((err as Error).message).toBe(
      `another collector (pid ${holder.pid}) is running on the pin root ${dir}: stop it first, or give this one its own --pin-root (two collectors would count every flow twice)`,
    );
    expect(fs.readlinkSync(path.join(dir, 'lock'))).toBe(`datakit-ebpf:${holder.pid}:${holder.start}`);
  });

  it('waits for a holder that is going away (DataKit restarts within a second of its SIGKILL)', async () => {
    const dir = root();
    const holder = sleeper();
    fs.symlinkSync(`datakit-ebpf:${holder.pid}:${holder.start}`, path.join(dir, 'lock'));
    setTimeout(() => holder.proc.kill('SIGKILL'), 200);
    const lock = await PinRootLock.acquire(dir, { waitMs: 3_000 });
    expect(lock.held).toBe(true);
    expect(lockHolder(dir)?.daemon).toBe(process.pid);
    lock.release();
  });

  it('takes over from a dead holder, a reused pid and a lock it cannot read', async () => {
    const dead = await deadPid();
    const reused = sleeper(); // alive, but not the process that took the lock
    for (const stale of [`datakit-ebpf:${dead.pid}:${dead.start}`, `datakit-ebpf:${reused.pid}:1`, 'garbage']) {
      const dir = root();
      fs.symlinkSync(stale, path.join(dir, 'lock'));
      const lock = await PinRootLock.acquire(dir, { waitMs: 0 });
      expect(lockHolder(dir)?.daemon).toBe(process.pid);
      expect(fs.readdirSync(dir)).toEqual(['lock']);
      lock.release();
    }
  });

  it('ends the loaders a dead holder left behind after the wait, then takes over', async () => {
    const dir = root();
    const dead = await deadPid();
    const orphan = sleeper();
    fs.symlinkSync(`datakit-ebpf:${dead.pid}:${dead.start}:${orphan.pid}:${orphan.start}`, path.join(dir, 'lock'));
    expect(lockHolder(dir)).toEqual({ daemon: undefined, loaders: [orphan.pid] });
    const t0 = Date.now();
    const lock = await PinRootLock.acquire(dir, { waitMs: 300 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    await exited(orphan.proc);
    expect(orphan.proc.signalCode).toBe('SIGKILL');
    lock.release();
  });

  it('lets exactly one of many concurrent starts have a stale lock', async () => {
    const dir = root();
    const dead = await deadPid();
    fs.symlinkSync(`datakit-ebpf:${dead.pid}:${dead.start}`, path.join(dir, 'lock'));
    // Separate processes, as real starts are.
    const script = `require(${JSON.stringify(path.resolve(__dirname, '../../dist/src/daemon/pinlock.js'))}).PinRootLock.acquire(${JSON.stringify(dir)}, { waitMs: 500 })
      .then(() => { console.log('got'); setTimeout(() => {}, 1500); }, (e) => console.log(e.code));`;
    const runs = Array.from({ length: 4 }, () => spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] }));
    procs.push(...runs);
    const outs = await Promise.all(
      runs.map(
        (p) =>
          new Promise<string>((resolve) => {
            let out = '';
            p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
            p.once('exit', () => resolve(out.trim()));
          }),
      ),
    );
    expect(outs.sort()).toEqual(['IN_USE', 'IN_USE', 'IN_USE', 'got']);
  });
});

describe('pinned objects', () => {
  it('lists everything under the pin root but the lock, deepest first, and removes it', () => {
    const dir = root();
    fs.mkdirSync(path.join(dir, 'netflow-0123abcd'));
    for (const f of ['netflow-0123abcd/tcp_conns', 'netflow-0123abcd/link_dke_tcp_set_state', 'bash-77/link', 'other']) {
      fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      fs.writeFileSync(path.join(dir, f), '');
    }
    fs.symlinkSync('datakit-ebpf:1:1', path.join(dir, 'lock'));
    const listed = listPins(dir).map((p) => path.relative(dir, p));
    expect(listed).toEqual(['bash-77/link', 'bash-77', 'netflow-0123abcd/link_dke_tcp_set_state', 'netflow-0123abcd/tcp_conns', 'netflow-0123abcd', 'other']);
    const r = removePins(`${dir}/`);
    expect(r.failed).toEqual([]);
    expect(r.removed.map((p) => path.relative(dir, p))).toEqual(['bash-77/link', 'netflow-0123abcd/link_dke_tcp_set_state', 'netflow-0123abcd/tcp_conns', 'other']);
    expect(fs.readdirSync(dir)).toEqual(['lock']);
  });

  it('never treats a mount point (bpffs itself) as a pin root', () => {
    expect(() => listPins('/')).toThrow(/is a mount point/);
    expect(removePins('/').failed).toEqual([{ path: '/', error: '/ is a mount point, not a collector\'s pin root' }]);
  });

  it('removes an old build\'s map pinned by name only when bpftool confirms its name, type and key', () => {
    const dir = root();
    for (const n of ['tcp_conns', 'telemetry', 'listeners', 'tcp_closed_events']) fs.writeFileSync(path.join(dir, n), '');
    const bpftool = path.join(dir, 'fake-bpftool');
    // Answers like `bpftool -j map show pinned <file>`.
    fs.writeFileSync(
      bpftool,
      `#!/bin/sh
case "$5" in
  */tcp_conns) echo '{"name":"tcp_conns","type":"hash","bytes_key":8}' ;;
  */telemetry) echo '{"name":"telemetry","type":"array","bytes_key":4}' ;;
  */tcp_closed_events) echo '{"name":"tcp_closed_even","type":"ringbuf","bytes_key":0}' ;;
  *) echo "Error: bpf obj get ($5): Invalid argument" >&2; exit 255 ;;
esac
`,
      { mode: 0o755 },
    );
    const r = legacyPins(dir, bpftool);
    expect(r.ours.map((p) => path.basename(p)).sort()).toEqual(['tcp_closed_events', 'tcp_conns']);
    expect(r.unverified.map((u) => [path.basename(u.path), u.why])).toEqual([
      ['listeners', `not a BPF map (Error: bpf obj get (${dir}/listeners): Invalid argument)`],
      ['telemetry', 'map "telemetry" of type array is not the collector\'s'],
    ]);
    expect(legacyPins(dir, path.join(dir, 'no-such-bpftool')).unverified[0]!.why).toBe('bpftool is not installed to check it');
  });
});
