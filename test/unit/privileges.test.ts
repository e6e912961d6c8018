// The pure parts of the privilege split: which user --user means, which
// capabilities each loader keeps, whether a user can reach the files a loader
// restart needs, and the pidfile's clean-up when its directory is not ours.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { accessibleBy, capNames, loaderCapNumbers, resolveUser, statusCaps } from '../../src/daemon/privileges';
import { Pidfile } from '../../src/daemon/pidfile';
import type { PasswdEntry } from '../../src/loader/native';
import { CAP, LOADER_CAPABILITIES, loaderCapabilities } from '../../src/loader/privileges';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-priv-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const users: PasswdEntry[] = [
  { name: 'root', uid: 0, gid: 0, home: '/root' },
  { name: 'nobody', uid: 65534, gid: 65534, home: '/nonexistent' },
  { name: 'daemon', uid: 1, gid: 1, home: '/usr/sbin' },
];
const lookup =
  (extra: PasswdEntry[] = []) =>
  (u: string | number): PasswdEntry | null =>
    [...users, ...extra].find((e) => (typeof u === 'number' ? e.uid === u : e.name === u)) ?? null;

describe('--user', () => {
  it('defaults to the installer\'s datakit-ebpf user, else nobody', () => {
    expect(resolveUser(undefined, lookup())).toEqual({ name: 'nobody', uid: 65534, gid: 65534 });
    const dedicated = { name: 'datakit-ebpf', uid: 998, gid: 997, home: '/nonexistent' };
    expect(resolveUser(undefined, lookup([dedicated]))).toEqual({ name: 'datakit-ebpf', uid: 998, gid: 997 });
  });

  it('keeps root for "root", "" and anything that is uid 0', () => {
    expect(resolveUser('root', lookup())).toBeNull();
    expect(resolveUser('', lookup())).toBeNull();
    expect(resolveUser('0', lookup())).toBeNull();
  });

  it('takes a name or a uid, and names an unknown user', () => {
    expect(resolveUser('daemon', lookup())).toEqual({ name: 'daemon', uid: 1, gid: 1 });
    expect(resolveUser('65534', lookup())).toEqual({ name: 'nobody', uid: 65534, gid: 65534 });
    expect(resolveUser('4321', lookup())).toEqual({ name: '4321', uid: 4321, gid: 4321 });
    expect(() => resolveUser('no-such', lookup())).toThrow(/--user "no-such": no such user; expected a user name or uid/);
  });
});

describe('loader capabilities', () => {
  const bits = (nums: number[]): string[] => capNames(nums.reduce((m, n) => m | (1n << BigInt(n)), 0n)).sort();

  it('gives ebpf-net only what tp_btf and cgroup_skb need', () => {
    expect(bits(loaderCapNumbers(['ebpf-net'], 40))).toEqual(['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_SYS_RESOURCE']);
  });

  it('adds CAP_SYS_ADMIN (a uprobe) and CAP_SYS_PTRACE (other users\' /proc/<pid>/root) only when ebpf-bash is enabled', () => {
    expect(bits(loaderCapNumbers(['ebpf-net', 'ebpf-bash'], 40))).toEqual(['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE', 'CAP_SYS_RESOURCE']);
    expect(loaderCapabilities('net', 40)).not.toContain('SYS_ADMIN');
    expect(loaderCapabilities('net', 40)).not.toContain('SYS_PTRACE');
    expect(loaderCapabilities('bash', 40)).toContain('SYS_ADMIN');
    expect(loaderCapabilities('bash', 40)).toContain('SYS_PTRACE');
  });

  it('uses CAP_SYS_ADMIN instead of CAP_BPF and CAP_PERFMON before Linux 5.8', () => {
    expect(loaderCapabilities('net', 37).sort()).toEqual(['NET_ADMIN', 'SYS_ADMIN', 'SYS_RESOURCE']);
  });

  it('gives a loader it does not know every loader\'s set, so a new plugin still starts', () => {
    const all = new Set(Object.values(LOADER_CAPABILITIES).flat());
    expect(new Set(loaderCapabilities('future', 40))).toEqual(new Set([...all, 'SYS_RESOURCE']));
  });

  it('reads the sets of /proc/<pid>/status', () => {
    const s = statusCaps('Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nCapInh:\t000000c000001000\nCapPrm:\t000000c000001000\nCapEff:\t0000000000000000\nCapBnd:\t000000c000001000\nCapAmb:\t000000c000001000\n');
    expect(s).toEqual({ uid: 65534, gid: 65534, eff: 0n, prm: 0xc000001000n, inh: 0xc000001000n, amb: 0xc000001000n, bnd: 0xc000001000n });
    expect(capNames(s.prm).sort()).toEqual(['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON']);
    expect(CAP.BPF).toBe(39);
  });
});

describe('what the dropped user can reach', () => {
  it('follows owner, group and other bits along the whole path', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'app-'));
    fs.chmodSync(dir, 0o755);
    const file = path.join(dir, 'child.js');
    fs.writeFileSync(file, '', { mode: 0o644 });
    fs.chmodSync(tmp, 0o755);
    expect(accessibleBy(file, 65534, 65534)).toBe(true);
    fs.chmodSync(file, 0o640);
    expect(accessibleBy(file, 65534, 65534)).toBe(false);
    fs.chownSync(file, 0, 65534);
    expect(accessibleBy(file, 65534, 65534)).toBe(true);
    fs.chmodSync(file, 0o644);
    fs.chmodSync(dir, 0o700); // a checkout in root's home
    expect(accessibleBy(file, 65534, 65534)).toBe(false);
    expect(accessibleBy(path.join(dir, 'missing.js'), 65534, 65534)).toBe(false);
    expect(accessibleBy(process.execPath, 65534, 65534, true)).toBe(true);
  });
});

describe('pidfile', () => {
  it('holds the pid and is removed', () => {
    const p = path.join(tmp, 'a.pid');
    const f = Pidfile.write(p, 4242);
    expect(fs.readFileSync(p, 'utf8')).toBe('4242\n');
    f.remove();
    f.remove();
    expect(fs.existsSync(p)).toBe(false);
  });
  // Emptied instead of removed when its directory is root's: test/e2e/operate.test.ts (needs a real unprivileged user).
});
