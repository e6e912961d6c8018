// The pure parts of the privilege split: which user --user means, which
// capabilities each loader keeps, whether a user can reach the files a loader
// restart needs, the paths the daemon prepares and checks for that user, and
// the pidfile's clean-up when its directory is not ours.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { accessibleBy, capNames, loaderCapNumbers, resolveUser, statusCaps } from '../../src/daemon/privileges';
import { parseCommandLine } from '../../src/config/cli';
import { createLogger } from '../../src/daemon/logger';
import { Pidfile } from '../../src/daemon/pidfile';
import { checkPaths, explain, makeDirs } from '../../src/daemon/workpaths';
import { isCollectorError } from '../../src/errors';
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

describe('paths the daemon uses after the drop', () => {
  // As root every permission check passes; the refusals for another user,
  // a read-only and a full file system run for real in test/e2e/lifecycle.test.ts.
  const run = (extra: string[]) => {
    const r = parseCommandLine(['run', '--pin-root', 'off', ...extra], {});
    if (r.kind !== 'run') throw new Error('bad test config');
    return r.config;
  };

  it('creates missing parents traversable by any user whatever the umask (was: 0750 root, unreachable after the drop)', () => {
    const old = process.umask(0o077);
    try {
      const base = fs.mkdtempSync(path.join(tmp, 'mk-'));
      const leaf = path.join(base, 'usr/local/datakit/externals/datakit-ebpf.state');
      expect(makeDirs(leaf, 0o750)).toEqual(['usr', 'usr/local', 'usr/local/datakit', 'usr/local/datakit/externals', 'usr/local/datakit/externals/datakit-ebpf.state'].map((d) => path.join(base, d)));
      expect(fs.statSync(path.join(base, 'usr/local/datakit')).mode & 0o777).toBe(0o755);
      expect(fs.statSync(leaf).mode & 0o777).toBe(0o750);
      fs.chmodSync(base, 0o700);
      expect(makeDirs(leaf, 0o750)).toEqual([]);
      expect(fs.statSync(base).mode & 0o777).toBe(0o700); // what existed stays as it was
    } finally {
      process.umask(old);
    }
  });

  it('checks the state directory by using it: spool created, no probe left; a path that cannot be a directory is one line with the fix', () => {
    const state = path.join(fs.mkdtempSync(path.join(tmp, 'st-')), 'state');
    checkPaths(run(['--state-dir', state]), 'root');
    expect(fs.readdirSync(state)).toEqual(['spool']);
    expect(fs.readdirSync(path.join(state, 'spool'))).toEqual([]);

    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, '');
    const err = (() => {
      try {
        checkPaths(run(['--state-dir', path.join(file, 'state')]), 'nobody');
      } catch (e) {
        return e;
      }
    })();
    expect(isCollectorError(err, 'PATH_UNUSABLE')).toBe(true);
    expect((err as Error).message).toBe(
      `state directory ${file}/state cannot be used by user nobody: ${file}/state or one of its parents is not a directory; pass --state-dir with a directory nobody can write (e.g. /var/lib/datakit-ebpf), or --user root`,
    );
  });

  it('names read-only and full file systems in words', () => {
    expect(explain('/x', Object.assign(new Error('EROFS'), { code: 'EROFS' }))).toBe('it is on a read-only file system');
    expect(explain('/x', Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }))).toBe('its file system is full');
    expect(explain('/x', Object.assign(new Error('EDQUOT'), { code: 'EDQUOT' }))).toBe('its file system is full');
  });

  it('creates the log file 0640 (was: 0644, readable by every local user) and says how to fix a log path that cannot work', () => {
    const old = process.umask(0o022);
    try {
      const log = path.join(fs.mkdtempSync(path.join(tmp, 'log-')), 'a/b/collector.log');
      createLogger(log, 'info').info('hello');
      expect(fs.statSync(log).mode & 0o777).toBe(0o640);
      expect(fs.statSync(path.dirname(log)).mode & 0o777).toBe(0o755);
      const file = path.join(tmp, 'not-a-dir');
      fs.writeFileSync(file, '');
      expect(() => createLogger(path.join(file, 'x.log'), 'info')).toThrow(`log file ${file}/x.log cannot be written: ${file}/x.log or one of its parents is not a directory; pass --log stdout or another --log file`);
    } finally {
      process.umask(old);
    }
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
