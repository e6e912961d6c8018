// Operating it like a DataKit user: scripts/install into a temporary root
// that looks like a DataKit install, DataKit's unchanged ebpf.conf starting
// the installed launcher with DataKit's full command line, netflow arriving at
// a receiver, the privilege split measured from /proc, a loader restart after
// the drop, DataKit's SIGKILL taking the loader down, and an uninstall that
// removes the pinned programs and leaves the tree exactly as it was. Real
// daemon, real eBPF.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readEbpfConf } from '../../src/config/ebpfconf';
import { startReceiver, type Receiver } from '../../src/receiver/receiver';
import { createHostPair, runPeer, startServer, type HostPair } from '../helpers/netns';
import { tempPinRoot, waitFor } from '../helpers/daemon';
import { pinnedProgramIds, waitProgramsGone } from '../helpers/pins';
import {
  alive,
  capMask,
  fakeDataKit,
  jsonLines,
  launch,
  procCreds,
  REPO,
  runInstall,
  snapshot,
  uidOf,
  type FakeDataKit,
  type Launched,
} from '../helpers/install';

let hosts: HostPair;
let receiver: Receiver;
const roots: string[] = [];
const running: Launched[] = [];

beforeAll(async () => {
  hosts = createHostPair(7);
  receiver = await startReceiver({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  for (const l of running) if (l.proc.exitCode === null) l.proc.kill('SIGKILL');
  await receiver?.close();
  hosts?.destroy();
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

function expectInstalled(args: string[]): void {
  const r = runInstall(args);
  expect(r.code, r.out).toBe(0);
}

function newRoot(): FakeDataKit {
  const dk = fakeDataKit();
  roots.push(dk.root);
  return dk;
}

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : ((v as number) ?? 0));

/** Network namespace inode of a test host: other runs of this file elsewhere use the same addresses. */
const netnsOf = (ns: string): string => String(fs.statSync(`/run/netns/${ns}`).ino);

function outgoing(port: number) {
  const pts = receiver
    .points('netflow')
    .filter((p) => p.tags.direction === 'outgoing' && p.tags.dst_port === String(port) && p.tags.dst_ip === hosts.ipB && p.tags.netns === netnsOf(hosts.a));
  const sum = (f: string): number => pts.reduce((a, p) => a + num(p.fields[f]), 0);
  return { points: pts, bytes_written: sum('bytes_written'), bytes_read: sum('bytes_read'), tcp_closed: sum('tcp_closed') };
}

/** The user the daemon drops to by default. */
function defaultUid(): number {
  const uid = uidOf('datakit-ebpf') ?? uidOf('nobody');
  if (uid === undefined) throw new Error('this machine has neither a datakit-ebpf nor a nobody user');
  return uid;
}

/** A capability set as this (root) process may hold it: CAP_SYS_RESOURCE is missing on our VMs. */
function bounded(names: string[]): bigint {
  return capMask([...names, 'CAP_SYS_RESOURCE']) & procCreds(process.pid).capBnd;
}
const NET_CAPS = ['CAP_BPF', 'CAP_PERFMON', 'CAP_NET_ADMIN'];
const BASH_CAPS = ['CAP_BPF', 'CAP_PERFMON', 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE'];

const hex = (v: bigint): string => `0x${v.toString(16)}`;

describe('scripts/install', () => {
  it('states the runtime requirements and checks them', () => {
    const text = fs.readFileSync(path.join(REPO, 'scripts/install'), 'utf8');
    expect(text).toMatch(/Node\.js >= 20, libbpf1 \(libbpf\.so\.1\), libelf1/);
    const dk = newRoot();
    // A node that is too old is named, with what to do.
    const fakeNode = path.join(dk.root, 'node18');
    fs.writeFileSync(fakeNode, '#!/bin/sh\necho v18.19.0\n', { mode: 0o755 });
    const r = runInstall(['--root', dk.root, '--node', fakeNode]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/needs at run time Node\.js >= 20, libbpf1 and libelf1; missing:\n {2}- Node\.js >= 20 \(found v18\.19\.0 at .*node18/);
    expect(fs.readFileSync(dk.launcher)).toEqual(dk.upstream);
  });

  it('puts a launcher where DataKit looks, backs up upstream, and --uninstall restores the tree exactly', () => {
    const dk = newRoot();
    const before = snapshot(dk.root);
    // DataKit's own ebpf.conf, unchanged, names the path the launcher takes over.
    expect(readEbpfConf(path.join(dk.root, 'usr/local/datakit/conf.d/host/ebpf.conf')).cmd).toBe('/usr/local/datakit/externals/datakit-ebpf');

    const r = runInstall(['--root', dk.root]);
    expect(r.code, r.out).toBe(0);
    const st = fs.statSync(dk.launcher);
    expect(st.mode & 0o777).toBe(0o755);
    expect(fs.readFileSync(dk.launcher, 'utf8')).toMatch(/^#!\/bin\/sh\n# datakit-ebpf launcher \(tracepoint edition\)\n/);
    const backup = path.join(dk.externals, 'datakit-ebpf.upstream');
    expect(fs.readFileSync(backup)).toEqual(dk.upstream);
    expect(fs.statSync(backup).mode & 0o777).toBe(0o750);

    const app = path.join(dk.externals, 'datakit-ebpf.d');
    for (const f of ['dist/src/cli/main.js', 'build/Release/dke-loader', 'build/Release/dke_native.node', 'package.json', 'node_modules/pino/package.json', 'node_modules/undici/package.json', 'node_modules/commander/package.json', 'node_modules/@iarna/toml/package.json', 'conf.d/host/ebpf.conf']) {
      expect(fs.existsSync(path.join(app, f)), f).toBe(true);
    }
    // Production dependencies only.
    for (const dev of ['vitest', 'typescript', '@influxdata/influxdb-client', 'cmake-js', 'node-addon-api']) {
      expect(fs.existsSync(path.join(app, 'node_modules', dev)), dev).toBe(false);
    }
    // Readable by the unprivileged user the daemon becomes.
    for (const f of ['build/Release/dke-loader', 'build/Release/dke_native.node', 'package.json']) {
      expect(fs.statSync(path.join(app, f)).mode & 0o004, f).toBe(0o004);
    }
    // The loader is a program the unprivileged daemon starts.
    expect(fs.statSync(path.join(app, 'build/Release/dke-loader')).mode & 0o001).toBe(0o001);

    // Installing again is an upgrade: the backup stays upstream's.
    expectInstalled(['--root', dk.root]);
    expect(fs.readFileSync(backup)).toEqual(dk.upstream);

    const u = runInstall(['--root', dk.root, '--uninstall']);
    expect(u.code, u.out).toBe(0);
    expect(snapshot(dk.root)).toEqual(before);
  });

  it('refuses to uninstall what is not there', () => {
    const dk = newRoot();
    const r = runInstall(['--root', dk.root, '--uninstall']);
    expect(r.code).toBe(1);
    expect(r.out).toContain('nothing to uninstall');
  });
});

describe('the installed collector started the way DataKit starts it', () => {
  it('sends netflow, runs its daemon unprivileged, survives a loader kill and dies with SIGKILL', async () => {
    const dk = newRoot();
    const before = snapshot(dk.root);
    // DataKit's command line has no --pin-root: this run uses the default one.
    const defaultPins = '/sys/fs/bpf/datakit-ebpf';
    const pinsExisted = fs.existsSync(defaultPins);
    expectInstalled(['--root', dk.root]);
    const log = path.join(dk.externals, 'datakit-ebpf.log');
    const uid = defaultUid();
    const caps = bounded(NET_CAPS);

    // REFERENCE §1: DataKit's full command line, quirks included; --interval
    // is what DataKit appends for `interval = "1s"` in ebpf.conf.
    const dataKitArgs = [
      'run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--hostname', 'dk-h7', '--enabled', 'ebpf-net',
      '--l7net-enabled', 'httpflow', '--pprof-host', '127.0.0.1', '--pprof-port', '27061', '--netlog-metric',
      '--res-net', '--trace-allprocess', '--tags', 'a=1;b=2', '--interval', '1s',
    ];
    const dk1 = launch(dk.launcher, dataKitArgs, {}, path.join(dk.root, 'usr/local/datakit'));
    running.push(dk1);
    const started = await waitFor(() => jsonLines(log).find((l) => String(l.msg).startsWith('datakit-ebpf started')), 30_000, () =>
      dk1.proc.exitCode !== null ? `collector exited ${dk1.proc.exitCode}: ${dk1.stderr.join(' | ')}` : undefined,
    );
    expect(started, dk1.stderr.join('\n')).toBeDefined();
    const parentPid = dk1.proc.pid!;
    // The launcher execs Node: the pid DataKit holds is the collector itself.
    expect(fs.readFileSync(`/proc/${parentPid}/cmdline`, 'utf8')).toContain('datakit-ebpf.d/dist/src/cli/main.js');
    const warnings = jsonLines(log).filter((l) => l.level === 40).map((l) => String(l.msg));
    for (const flag of ['--res-net', '--trace-allprocess', '--l7net-enabled', '--netlog-metric']) {
      expect(warnings.filter((w) => w.includes(flag)), flag).toHaveLength(1);
    }
    // Every hook (netflow's and dnsflow's) attached with the dropped privileges.
    expect(warnings.filter((w) => w.startsWith('degraded'))).toEqual([]);

    // The privilege split, from /proc.
    const loaderPid = Number(started!.loaderPid);
    const parent = procCreds(parentPid);
    const loader = procCreds(loaderPid);
    console.log(
      `[install] daemon pid ${parentPid}: uid ${parent.uid} CapEff ${hex(parent.capEff)} CapPrm ${hex(parent.capPrm)} CapAmb ${hex(parent.capAmb)} CapBnd ${hex(parent.capBnd)} NoNewPrivs ${parent.noNewPrivs}; ` +
        `loader pid ${loaderPid}: uid ${loader.uid} CapEff ${hex(loader.capEff)} CapPrm ${hex(loader.capPrm)}`,
    );
    expect(parent).toMatchObject({ uid, capEff: 0n, capPrm: caps, capInh: caps, capAmb: caps, capBnd: caps, noNewPrivs: 1 });
    expect(loader).toMatchObject({ uid, ppid: parentPid, capEff: caps, capPrm: caps });
    expect(caps & capMask(NET_CAPS)).toBe(capMask(NET_CAPS));
    // What the daemon writes after the drop belongs to that user.
    expect(fs.statSync(log).uid).toBe(uid);
    expect(fs.statSync(path.join(dk.externals, 'datakit-ebpf.state')).uid).toBe(uid);
    const status = (await (await fetch('http://127.0.0.1:27061/status')).json()) as { plugins: { loaderPid: number }[] };
    expect(status.plugins[0]!.loaderPid).toBe(loaderPid);

    // Netflow arrives, with DataKit's tags.
    const port = 27070;
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '2000']);
    try {
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '3', '1000']);
      await waitFor(() => outgoing(port).tcp_closed >= 3 || undefined, 20_000);
      expect(outgoing(port)).toMatchObject({ bytes_written: 3000, bytes_read: 6000, tcp_closed: 3 });
      for (const p of outgoing(port).points) expect(p.tags).toMatchObject({ host: 'dk-h7', a: '1', b: '2', service: 'ebpf', transport: 'tcp' });

      // A loader killed after the drop comes back with the same privileges and counts again.
      process.kill(loaderPid, 'SIGKILL');
      const restarted = await waitFor(() => jsonLines(log).find((l) => l.msg === 'eBPF loader restarted'), 20_000);
      expect(restarted).toBeDefined();
      const loader2Pid = Number(restarted!.loaderPid);
      expect(loader2Pid).not.toBe(loaderPid);
      expect(procCreds(loader2Pid)).toMatchObject({ uid, ppid: parentPid, capEff: caps });
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '2', '500']);
      await waitFor(() => outgoing(port).tcp_closed >= 5 || undefined, 20_000);
      expect(outgoing(port)).toMatchObject({ bytes_written: 4000, tcp_closed: 5 });

      // DataKit stops it with SIGKILL: the loader must not outlive it.
      dk1.proc.kill('SIGKILL');
      await dk1.exited;
      expect(await waitFor(() => !alive(loader2Pid) || undefined, 5000)).toBe(true);
    } finally {
      await server.stop();
    }

    // DataKit starts it again; a clean stop then leaves nothing pinned behind.
    const dk2 = launch(dk.launcher, dataKitArgs, {}, path.join(dk.root, 'usr/local/datakit'));
    running.push(dk2);
    await waitFor(() => jsonLines(log).filter((l) => String(l.msg).startsWith('datakit-ebpf started')).length >= 2 || undefined, 30_000, () =>
      dk2.proc.exitCode !== null ? `collector exited ${dk2.proc.exitCode}: ${dk2.stderr.join(' | ')}` : undefined,
    );
    dk2.proc.kill('SIGTERM');
    expect(await dk2.exited).toBe(0);

    const u = runInstall(['--root', dk.root, '--uninstall', '--purge']);
    expect(u.code, u.out).toBe(0);
    expect(snapshot(dk.root)).toEqual(before);
    // The clean stop removed the pins; the directory goes if this test made it (and nobody else uses it).
    if (!pinsExisted) {
      try {
        fs.rmdirSync(defaultPins);
      } catch {
        /* not empty: someone else's */
      }
    }
  });

  it('starts every implemented plugin with only the dropped privileges', async () => {
    const dk = newRoot();
    expectInstalled(['--root', dk.root]);
    const uid = defaultUid();
    const pinRoot = `/sys/fs/bpf/dke-test-${process.pid}-install`;
    const run = launch(dk.launcher, [
      'run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--enabled', 'ebpf-net,ebpf-bash', '--interval', '1s',
      '--log', 'stdout', '--pin-root', pinRoot,
    ]);
    running.push(run);
    try {
      const started = await waitFor(() => jsonLines(run.stdout).find((l) => String(l.msg).startsWith('datakit-ebpf started')), 30_000, () =>
        run.proc.exitCode !== null ? `collector exited ${run.proc.exitCode}: ${run.stderr.join(' | ')}` : undefined,
      );
      const broken = jsonLines(run.stdout).filter((l) => String(l.msg).includes('cannot run'));
      expect(broken.map((l) => l.msg)).toEqual([]);
      const pids = started!.loaderPids as Record<string, number>;
      expect(Object.keys(pids).sort()).toEqual(['ebpf-bash', 'ebpf-net']);
      // The daemon holds the union (permitted only); each loader narrows to its own set.
      expect(procCreds(run.proc.pid!)).toMatchObject({ uid, capEff: 0n, capPrm: bounded([...NET_CAPS, ...BASH_CAPS]) });
      expect(procCreds(pids['ebpf-net']!)).toMatchObject({ uid, ppid: run.proc.pid, capEff: bounded(NET_CAPS), capPrm: bounded(NET_CAPS) });
      expect(procCreds(pids['ebpf-bash']!)).toMatchObject({ uid, ppid: run.proc.pid, capEff: bounded(BASH_CAPS), capPrm: bounded(BASH_CAPS) });
      run.proc.kill('SIGTERM');
      expect(await run.exited).toBe(0);
    } finally {
      fs.rmSync(pinRoot, { recursive: true, force: true });
    }
  });

  it('--uninstall removes the pinned programs a SIGKILLed collector left, and refuses while one runs', async () => {
    const dk = newRoot();
    const before = snapshot(dk.root);
    expectInstalled(['--root', dk.root]);
    const pinRoot = tempPinRoot();
    const run = launch(dk.launcher, ['run', '--datakit-apiserver', `127.0.0.1:${receiver.port}`, '--log', 'stdout', '--pin-root', pinRoot]);
    running.push(run);
    await waitFor(() => jsonLines(run.stdout).find((l) => String(l.msg).startsWith('datakit-ebpf started')), 30_000, () =>
      run.proc.exitCode !== null ? `collector exited ${run.proc.exitCode}: ${run.stderr.join(' | ')}` : undefined,
    );
    const refused = runInstall(['--root', dk.root, '--uninstall', '--pin-root', pinRoot]);
    expect(refused.code).toBe(1);
    expect(refused.out).toContain(`datakit-ebpf cleanup: another collector (pid ${run.proc.pid}) is running on the pin root ${pinRoot}: stop it first\n`);
    expect(refused.out).toContain('stop the collector first (disable the ebpf input in DataKit, or systemctl stop datakit-ebpf); nothing was uninstalled');
    expect(fs.readFileSync(dk.launcher, 'utf8')).toContain('# datakit-ebpf launcher (tracepoint edition)');

    // DataKit removed the input: SIGKILL, and the pinned programs go on running.
    const progs = pinnedProgramIds(pinRoot);
    expect(progs.length).toBeGreaterThan(0);
    run.proc.kill('SIGKILL');
    await run.exited;
    const u = runInstall(['--root', dk.root, '--uninstall', '--purge', '--pin-root', pinRoot]);
    expect(u.code, u.out).toBe(0);
    expect(u.out).toMatch(/datakit-ebpf cleanup: removed \d+ pinned object\(s\); their programs are detached\n/);
    await waitProgramsGone(progs);
    expect(fs.existsSync(pinRoot)).toBe(false);
    expect(snapshot(dk.root)).toEqual(before);
  });

  it('names an unknown --user and exits 2 before touching BPF', async () => {
    const dk = newRoot();
    expectInstalled(['--root', dk.root]);
    const run = launch(dk.launcher, ['run', '--user', 'no-such-user-dke', '--log', 'stdout']);
    expect(await run.exited).toBe(2);
    expect(run.stderr.join('\n')).toMatch(/--user "no-such-user-dke": no such user; expected a user name or uid/);
  });
});
