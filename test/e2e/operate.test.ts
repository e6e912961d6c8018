// Day-2 operation of an installed collector: the systemd unit checked with
// systemd-analyze, check-config from the command line, the pidfile, SIGHUP
// reopening a rotated log as the unprivileged user, and a dry run printing
// line protocol instead of sending it. Real daemon, real eBPF.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/config/cli';
import { parseLines } from '../../src/lineproto/parse';
import { LOADER_CAPABILITIES } from '../../src/loader/privileges';
import { startReceiver, type Receiver } from '../../src/receiver/receiver';
import { waitFor } from '../helpers/daemon';
import { alive, fakeDataKit, jsonLines, launch, procCreds, REPO, runInstall, type FakeDataKit, type Launched } from '../helpers/install';
import { createHostPair, runPeer, startServer, type HostPair } from '../helpers/netns';

const CLI = path.join(REPO, 'dist/src/cli/main.js');
let hosts: HostPair;
let receiver: Receiver;
let dk: FakeDataKit;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-operate-'));
const running: Launched[] = [];
const pinRoot = `/sys/fs/bpf/dke-test-${process.pid}-operate`;

beforeAll(async () => {
  hosts = createHostPair(7);
  receiver = await startReceiver({ host: '127.0.0.1', port: 0 });
  dk = fakeDataKit();
  const r = runInstall(['--root', dk.root, '--systemd']);
  if (r.code !== 0) throw new Error(`install failed: ${r.out}`);
  fs.chmodSync(scratch, 0o755);
});

afterAll(async () => {
  for (const l of running) if (l.proc.exitCode === null) l.proc.kill('SIGKILL');
  await receiver?.close();
  hosts?.destroy();
  fs.rmSync(scratch, { recursive: true, force: true });
  if (dk) fs.rmSync(dk.root, { recursive: true, force: true });
  fs.rmSync(pinRoot, { recursive: true, force: true });
});

/** A directory only root may write to, as /var/run or DataKit's externals/ are. */
function rootDir(name: string): string {
  const d = path.join(scratch, name);
  fs.mkdirSync(d, { mode: 0o755 });
  return d;
}

function startInstalled(args: string[]): Launched {
  const l = launch(dk.launcher, ['run', '--interval', '1s', '--pin-root', pinRoot, '--state-dir', path.join(scratch, `datakit-ebpf.state-${running.length}`), ...args]);
  running.push(l);
  return l;
}

describe('systemd unit', () => {
  const unitFile = (): string => path.join(dk.root, 'etc/systemd/system/datakit-ebpf.service');

  /** The installed unit, with ExecStart pointing into the temporary root so systemd can check the command. */
  function checkable(): string {
    const dir = fs.mkdtempSync(path.join(scratch, 'unit-'));
    const text = fs.readFileSync(unitFile(), 'utf8').replace(/^ExecStart=\/usr\/local\/datakit\//m, `ExecStart=${dk.root}/usr/local/datakit/`);
    const file = path.join(dir, 'datakit-ebpf.service');
    fs.writeFileSync(file, text);
    return file;
  }

  it('passes systemd-analyze verify', () => {
    const r = spawnSync('systemd-analyze', ['verify', checkable()], { encoding: 'utf8', cwd: scratch });
    // Complaints about other units of the machine are not ours to fix.
    expect((r.stderr + r.stdout).split('\n').filter((l) => l.includes('datakit-ebpf'))).toEqual([]);
    expect(r.status, r.stderr).toBe(0);
  });

  it('has a security exposure of at most 3.0', () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', checkable()], { encoding: 'utf8', cwd: scratch });
    const m = /Overall exposure level for datakit-ebpf\.service: (\d+\.\d+)/.exec(r.stdout);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    const score = Number(m![1]);
    console.log(`[systemd] systemd-analyze security --offline=yes exposure: ${score}`);
    expect(score).toBeLessThanOrEqual(3.0);
  });

  it('runs the collector from ebpf.conf, logging to the journal, restarting with a rate limit, with only the loader capabilities', () => {
    const unit = fs.readFileSync(unitFile(), 'utf8');
    const key = (k: string): string[] => [...unit.matchAll(new RegExp(`^${k}=(.*)$`, 'gm'))].map((m) => m[1]!);
    const exec = key('ExecStart')[0]!.split(/\s+/);
    expect(exec[0]).toBe('/usr/local/datakit/externals/datakit-ebpf');
    // The flags it passes are ours and valid.
    const conf = path.join(dk.root, 'etc/datakit-ebpf/ebpf.conf');
    const argv = exec.slice(1).map((a) => a.replace('${STATE_DIRECTORY}', '/var/lib/datakit-ebpf').replace('/etc/datakit-ebpf/ebpf.conf', conf));
    expect(parseCommandLine(argv, {})).toMatchObject({ kind: 'run', config: { log: 'stdout', stateDir: '/var/lib/datakit-ebpf', configFile: conf, warnings: [] } });
    expect(exec).toContain('--config');
    expect(exec[exec.indexOf('--config') + 1]).toBe('/etc/datakit-ebpf/ebpf.conf');
    expect(key('StandardOutput')).toEqual(['journal']);
    expect(key('Restart')).toEqual(['on-failure']);
    expect(Number(key('StartLimitBurst')[0])).toBeGreaterThan(0);
    expect(key('StateDirectory')).toEqual(['datakit-ebpf']);
    expect(key('ProtectSystem')).toEqual(['strict']);
    expect(key('ProtectHome')).toEqual(['yes']);
    expect(key('NoNewPrivileges')).toEqual(['yes']);
    // The bounding set is exactly what ebpf-net's loader needs.
    const want = LOADER_CAPABILITIES.net!.map((c) => `CAP_${c}`).sort();
    expect(key('CapabilityBoundingSet')[0]!.split(/\s+/).sort()).toEqual(want);
    expect(key('AmbientCapabilities')[0]!.split(/\s+/).sort()).toEqual(want);
    // ebpf-bash's drop-in, as the unit documents it: exactly what its loader needs beyond ebpf-net's.
    const dropIn = (k: string): string[][] => [...unit.matchAll(new RegExp(`^#\\s+${k}=(.*)$`, 'gm'))].map((m) => m[1]!.split(/\s+/).sort());
    const bashExtra = LOADER_CAPABILITIES.bash!.filter((c) => !LOADER_CAPABILITIES.net!.includes(c)).map((c) => `CAP_${c}`).sort();
    expect(bashExtra).toEqual(['CAP_SYS_ADMIN', 'CAP_SYS_PTRACE']);
    expect(dropIn('CapabilityBoundingSet')).toEqual([bashExtra]);
    expect(dropIn('AmbientCapabilities')).toEqual([bashExtra]);
    // The config it reads is installed, and clean.
    const r = spawnSync(process.execPath, [CLI, 'check-config', conf], { encoding: 'utf8' });
    expect(r.status, r.stdout).toBe(0);
  });
});

describe('check-config', () => {
  it('exits 0 on the shipped sample and 2 on a broken file or a missing argument', () => {
    const ok = spawnSync(process.execPath, [CLI, 'check-config', path.join(REPO, 'conf.d/host/ebpf.conf')], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/ebpf\.conf: no problems\n$/);
    const bad = path.join(REPO, 'test/fixtures/check-config/wrong-types.conf');
    const r = spawnSync(dk.launcher, ['check-config', bad], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stdout.trim().split('\n')).toHaveLength(7);
    expect(r.stdout).toContain(`${bad}:10:19: error: key "ipv6_disabled"`);
    const usage = spawnSync(process.execPath, [CLI, 'check-config'], { encoding: 'utf8' });
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain('usage: datakit-ebpf check-config <ebpf.conf>');
  });

  it('the daemon refuses the same file at start-up with the first problem, exit 2', async () => {
    const bad = path.join(REPO, 'test/fixtures/check-config/wrong-types.conf');
    const r = spawnSync(process.execPath, [CLI, 'run', '--config', bad, '--log', 'stdout'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`datakit-ebpf: ${bad}:8: key "daemon": expected true or false (without quotes)\n`);
  });
});

describe('pidfile and log rotation as the unprivileged user', () => {
  it('writes the pidfile, reopens the log on SIGHUP after logrotate moved it, and cleans up at stop', async () => {
    const logDir = rootDir('log');
    const runDir = rootDir('run');
    const log = path.join(logDir, 'collector.log');
    const pidfile = path.join(runDir, 'datakit-ebpf.pid');
    const d = startInstalled(['--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--log', log, '--pidfile', pidfile]);
    await waitFor(() => jsonLines(log).find((l) => String(l.msg).startsWith('datakit-ebpf started')), 30_000, () =>
      d.proc.exitCode !== null ? `exited ${d.proc.exitCode}: ${d.stderr.join(' | ')}` : undefined,
    );
    const pid = d.proc.pid!;
    expect(fs.readFileSync(pidfile, 'utf8')).toBe(`${pid}\n`);
    // The pidfile stays root's: the unprivileged user cannot point it elsewhere.
    expect(fs.statSync(pidfile).uid).toBe(0);
    const { uid, gid } = procCreds(pid);
    expect(uid).not.toBe(0);
    expect(fs.statSync(log).uid).toBe(uid);
    // Not for every local user (was 0644).
    expect(fs.statSync(log).mode & 0o777).toBe(0o640);

    // logrotate without copytruncate: move, create a fresh file for the daemon's user, SIGHUP.
    fs.renameSync(log, `${log}.1`);
    fs.writeFileSync(log, '', { mode: 0o640 });
    fs.chownSync(log, uid, gid);
    process.kill(pid, 'SIGHUP');
    const reopened = await waitFor(() => jsonLines(log).find((l) => l.msg === 'SIGHUP: log file reopened'), 10_000);
    expect(reopened).toBeDefined();
    expect(fs.statSync(log).mode & 0o777).toBe(0o640);
    expect(jsonLines(`${log}.1`).some((l) => String(l.msg).startsWith('SIGHUP'))).toBe(false);

    // Moved with nothing created in a directory the user cannot write: it says so and keeps logging to the old file.
    fs.renameSync(log, `${log}.2`);
    process.kill(pid, 'SIGHUP');
    const refused = await waitFor(() => jsonLines(`${log}.2`).find((l) => String(l.msg).startsWith('SIGHUP: cannot reopen the log file')), 10_000);
    expect(refused).toBeDefined();
    expect(alive(pid)).toBe(true);

    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    // Its directory is root's: the pidfile cannot be removed, so it is emptied.
    expect(fs.readFileSync(pidfile, 'utf8')).toBe('');
    expect(jsonLines(`${log}.2`).some((l) => String(l.msg).includes('emptied it instead'))).toBe(true);
  });

  it('removes the pidfile at stop when its directory lets it', async () => {
    const runDir = rootDir('run-owned');
    const pidfile = path.join(runDir, 'datakit-ebpf.pid');
    const d = startInstalled(['--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--log', 'stdout', '--pidfile', pidfile]);
    await waitFor(() => jsonLines(d.stdout).find((l) => String(l.msg).startsWith('datakit-ebpf started')), 30_000, () =>
      d.proc.exitCode !== null ? `exited ${d.proc.exitCode}: ${d.stderr.join(' | ')}` : undefined,
    );
    expect(fs.readFileSync(pidfile, 'utf8')).toBe(`${d.proc.pid}\n`);
    const { uid, gid } = procCreds(d.proc.pid!);
    fs.chownSync(runDir, uid, gid); // as a RuntimeDirectory= or a tmpfiles.d entry would be
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    expect(fs.existsSync(pidfile)).toBe(false);
  });
});

describe('dry run', () => {
  it('prints the line protocol it would send and sends nothing', async () => {
    const quiet = await startReceiver({ host: '127.0.0.1', port: 0 });
    try {
      const d = startInstalled(['--datakit-apiserver', `127.0.0.1:${quiet.port}`, '--dry-run', '--log', 'stdout', '--include-loopback', '--hostname', 'dry-h7']);
      // stdout carries line protocol, so the JSON log moves to stderr.
      await waitFor(() => jsonLines(d.stderr).find((l) => String(l.msg).startsWith('datakit-ebpf started')), 30_000, () =>
        d.proc.exitCode !== null ? `exited ${d.proc.exitCode}: ${d.stderr.join(' | ')}` : undefined,
      );
      const port = 27080;
      // Other runs of this file elsewhere use the same addresses: only our client's namespace counts.
      const clientNetns = String(fs.statSync(`/run/netns/${hosts.a}`).ino);
      const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '300']);
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '2', '700']);
      const mine = (): ReturnType<typeof parseLines> =>
        parseLines(d.stdout.join('\n')).filter(
          (p) => p.measurement === 'netflow' && p.tags.dst_port === String(port) && p.tags.direction === 'outgoing' && p.tags.netns === clientNetns,
        );
      await waitFor(() => mine().reduce((a, p) => a + Number(p.fields.tcp_closed ?? 0), 0) >= 2 || undefined, 20_000);
      await server.stop();
      const pts = mine();
      expect(pts.reduce((a, p) => a + Number(p.fields.bytes_written ?? 0), 0)).toBe(1400);
      expect(pts[0]!.tags).toMatchObject({ host: 'dry-h7', transport: 'tcp', dst_ip: hosts.ipB });
      expect(d.stdout).toContainEqual(expect.stringMatching(/^# POST \/v1\/write\/network\?input=ebpf-net%2Fnetflow&precision=ns \(\d+ points\)$/));
      expect(d.stdout.filter((l) => l.startsWith('{'))).toEqual([]);
      d.proc.kill('SIGTERM');
      expect(await d.exited).toBe(0);
      expect(quiet.writes).toEqual([]);
      expect(quiet.lastErrors).toEqual([]);
    } finally {
      await quiet.close();
    }
  });
});

describe('--help', () => {
  it('lists the commands and groups the flags', () => {
    const out = execFileSync(dk.launcher, ['--help'], { encoding: 'utf8' });
    for (const heading of ['Sending to DataKit:', 'Tags on every point:', 'What to collect:', 'Logging:', 'Service, files and privileges:', 'Status endpoint:', 'Commands:']) {
      expect(out).toContain(heading);
    }
    expect(out).toMatch(/--user <name>/);
    expect(out).toMatch(/check-config <ebpf\.conf>/);
  });
});
