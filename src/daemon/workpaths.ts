// The paths the daemon uses after it dropped root: the log file (reopened on
// SIGHUP), the state directory (spool, collect log) and the pin root. As root,
// before the drop, they are created with parents every user can traverse and
// the collector's own directories are given to the daemon's user; after the
// drop, before any eBPF program is attached, they are checked as that user by
// doing what the daemon will do (create, write, fsync, remove). A path that
// cannot work (not reachable, read-only, full) stops the collector with one
// line naming the path, the user and the fix.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { CollectorConfig } from '../config/types';
import { CollectorError } from '../errors';
import { LOADER_BIN } from '../paths';

export interface PathOwner {
  name: string;
  uid: number;
  gid: number;
}

/**
 * mkdir -p in which every directory created is made traversable by any user
 * (0755, whatever the umask) and the last one gets `leafMode`. Existing
 * directories are left as they are. Returns the directories it created.
 */
export function makeDirs(dir: string, leafMode: number): string[] {
  const abs = path.resolve(dir);
  const created: string[] = [];
  let cur = '/';
  for (const part of abs.split('/').filter(Boolean)) {
    cur = path.join(cur, part);
    try {
      fs.mkdirSync(cur);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw err;
    }
    fs.chmodSync(cur, cur === abs ? leafMode : 0o755);
    created.push(cur);
  }
  return created;
}

/** lchown a tree without following symlinks. */
function chownTree(root: string, uid: number, gid: number): void {
  fs.lchownSync(root, uid, gid);
  if (!fs.lstatSync(root).isDirectory()) return;
  for (const e of fs.readdirSync(root, { withFileTypes: true })) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) chownTree(p, uid, gid);
    else fs.lchownSync(p, uid, gid);
  }
}

/**
 * A directory we may hand over wholesale: one we create now, an empty one, one
 * the user already owns, or one named after us. Never a shared directory such
 * as /var/lib that someone pointed --state-dir at.
 */
function ours(dir: string, uid: number): boolean {
  const st = fs.statSync(dir);
  return st.uid === uid || path.basename(dir).includes('datakit-ebpf') || fs.readdirSync(dir).length === 0;
}

function isMountedBpffs(mountPoint: string): boolean {
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mountPoint && l.split(' ')[2] === 'bpf');
}

/**
 * The pin root on bpffs, mounting bpffs where the system did not (only root
 * can; the loader no longer can once the daemon dropped privileges). Returns
 * false, with a warning, when pins cannot be kept: the loader then runs
 * without them (counters restart with it).
 */
function preparePinRoot(pinRoot: string, log: Logger): boolean {
  const mountPoint = path.dirname(pinRoot);
  try {
    if (!isMountedBpffs(mountPoint)) {
      if (process.getuid?.() !== 0) return fs.existsSync(pinRoot);
      execFileSync('mount', ['-t', 'bpf', 'bpf', mountPoint], { stdio: 'ignore' });
    }
    if (!fs.existsSync(pinRoot)) fs.mkdirSync(pinRoot, { mode: 0o750 });
    return true;
  } catch (err) {
    log.warn({ mountPoint, err: (err as Error).message.split('\n')[0] }, `cannot use bpffs at ${mountPoint}: BPF maps are not pinned`);
    return false;
  }
}

/**
 * Whether everything under `dir` is the collector's: directories leading to
 * `keep` (the state directory, the log) and files named datakit-ebpf*.
 */
function onlyOurs(dir: string, keep: string[]): boolean {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return false;
  }
  return entries.every((e) => {
    const p = path.join(dir, e.name);
    if (e.name.startsWith('datakit-ebpf')) return true;
    return e.isDirectory() && keep.some((k) => k.startsWith(`${p}/`)) && onlyOurs(p, keep);
  });
}

/**
 * Earlier versions created missing parents 0750 root (e.g. /usr/local/datakit
 * on a host without DataKit), which the daemon's user cannot traverse. Such a
 * parent, holding nothing but the collector's files, gets the search bit
 * (not the read bit) for everyone; any other parent is left alone and
 * checkPaths() names it.
 */
function repairOurParents(paths: string[], owner: PathOwner, log: Logger): void {
  for (const target of paths) {
    let cur = '/';
    for (const part of path.resolve(target).split('/').filter(Boolean).slice(0, -1)) {
      cur = path.join(cur, part);
      let st: fs.Stats;
      try {
        st = fs.statSync(cur);
      } catch {
        break;
      }
      const searchable = ((st.mode >> (st.uid === owner.uid ? 6 : st.gid === owner.gid ? 3 : 0)) & 1) !== 0;
      if (searchable || st.uid !== 0 || !onlyOurs(cur, paths)) continue;
      try {
        fs.chmodSync(cur, (st.mode & 0o7777) | 0o011);
        log.info({ dir: cur }, `made ${cur} traversable for ${owner.name}: it holds only the collector's files (an earlier version created it 0750)`);
      } catch {
        /* checkPaths() names it */
      }
    }
  }
}

/**
 * As root, before the drop to another user: the net loader's socket-state
 * map, made from the root memory cgroup and pinned where the loader reuses
 * it; the loader, as that user, cannot join that cgroup to make it there
 * (native/loader/root_memcg.h says why it matters). What the loader says is
 * debug: a few percent of a busy host's connection rate, nothing lost.
 */
function prepareSocketStateMap(pinRoot: string, log: Logger): string[] {
  const pinned = (): string[] =>
    fs
      .readdirSync(pinRoot)
      .filter((d) => d.startsWith('net-'))
      .map((d) => path.join(pinRoot, d, 'sock_state'))
      .filter((p) => fs.existsSync(p));
  const before = new Set(pinned());
  const r = spawnSync(LOADER_BIN, ['net', '--pin-root', pinRoot, '--prepare-socket-map', '1'], { encoding: 'utf8', timeout: 20_000 });
  const said = r.stdout?.trim() || r.error?.message;
  if (said) log.debug({ pinRoot }, said);
  return pinned().filter((p) => !before.has(p));
}

/**
 * Before the privilege drop (usually as root): creates the state directory
 * and the pin root, and with `owner` gives the log file, the state directory
 * and the pin root (with the socket-state map made for the net loader) to the
 * user the daemon becomes. Returns whether the pin root exists, and what it
 * pinned there (for a start that fails before any loader runs to remove). Never throws: what is left wrong, checkPaths() names after the drop.
 */
export function preparePaths(config: CollectorConfig, owner: PathOwner | undefined, log: Logger): { pinRoot: boolean; madePins: string[] } {
  const pinRoot = config.pinRoot !== '' && preparePinRoot(config.pinRoot, log);
  if (!config.dryRun) {
    try {
      makeDirs(config.stateDir, 0o750);
    } catch {
      /* checkPaths() says why */
    }
  }
  if (!owner) return { pinRoot, madePins: [] };
  const { uid, gid } = owner;
  repairOurParents([...(config.dryRun ? [] : [config.stateDir]), ...(config.log === 'stdout' || config.log === 'stderr' ? [] : [config.log])], owner, log);
  if (config.log !== 'stdout' && config.log !== 'stderr') {
    try {
      fs.chownSync(config.log, uid, gid);
    } catch (err) {
      log.warn({ file: config.log, err: (err as Error).message }, `cannot give the log file to ${owner.name}; reopening it on SIGHUP may fail`);
    }
  }
  // A dry run never opens the spool.
  const dirs = config.dryRun ? [] : [{ dir: config.stateDir, what: 'state directory' }];
  if (pinRoot) dirs.push({ dir: config.pinRoot, what: 'pin directory' });
  for (const { dir, what } of dirs) {
    try {
      if (!fs.existsSync(dir)) continue;
      if (!ours(dir, uid)) {
        log.warn({ dir }, `${what} ${dir} holds files that are not the collector's; not giving it to ${owner.name}: point it at a directory of its own`);
        continue;
      }
      chownTree(dir, uid, gid);
    } catch (err) {
      log.warn({ dir, err: (err as Error).message }, `cannot prepare the ${what} ${dir} for ${owner.name}: ${(err as Error).message}`);
    }
  }
  // Into a pin root the loader can use (given to the user above), given too.
  let madePins: string[] = [];
  try {
    if (pinRoot && config.enabled.includes('ebpf-net') && fs.statSync(config.pinRoot).uid === uid) {
      madePins = prepareSocketStateMap(config.pinRoot, log);
      chownTree(config.pinRoot, uid, gid);
    }
  } catch (err) {
    log.warn({ dir: config.pinRoot, err: (err as Error).message }, `cannot prepare the pin directory ${config.pinRoot} for ${owner.name}: ${(err as Error).message}`);
  }
  return { pinRoot, madePins };
}

function describeStat(p: string): string {
  try {
    const st = fs.statSync(p);
    return `mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${st.uid} gid ${st.gid}`;
  } catch {
    return 'cannot stat it';
  }
}

/** The first existing ancestor of `p` (or `p`) the current user cannot search, if any. */
function unsearchableAncestor(p: string): string | undefined {
  let cur = '/';
  for (const part of path.resolve(p).split('/').filter(Boolean)) {
    try {
      fs.accessSync(cur, fs.constants.X_OK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return cur;
    }
    cur = path.join(cur, part);
    if (!fs.existsSync(cur)) return undefined;
  }
  return undefined;
}

/** Why an operation on `p` failed, in words a user can act on. */
export function explain(p: string, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'EACCES':
    case 'EPERM': {
      const blocked = unsearchableAncestor(p);
      if (blocked) return `${blocked} is not searchable by this user (${describeStat(blocked)})`;
      const dir = fs.existsSync(p) ? p : path.dirname(p);
      return `${dir} is not writable by this user (${describeStat(dir)})`;
    }
    case 'EROFS':
      return 'it is on a read-only file system';
    case 'ENOSPC':
    case 'EDQUOT':
      return 'its file system is full';
    case 'ENOENT':
      return `its directory ${path.dirname(p)} does not exist`;
    case 'ENOTDIR':
    case 'EEXIST':
      return `${p} or one of its parents is not a directory`;
    default:
      return e.message ?? String(err);
  }
}

/** Creates, writes, fsyncs and removes a small file in `dir`, as the daemon's spool and marks do. */
function probeWrite(dir: string): void {
  const probe = path.join(dir, `.probe-${process.pid}`);
  const fd = fs.openSync(probe, 'w', 0o600);
  try {
    // Large enough that a full file system says so (one spool record).
    fs.writeSync(fd, Buffer.alloc(4096));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(probe, { force: true });
  }
}

function unusable(what: string, p: string, user: string, err: unknown, fix: string): CollectorError {
  return new CollectorError('PATH_UNUSABLE', `${what} ${p} cannot be used by user ${user}: ${explain(p, err)}; ${fix}`, { cause: err });
}

/**
 * After the privilege drop, as the user the daemon now is: checks every path
 * it will use by using it. `user` names that user in messages.
 * @throws CollectorError PATH_UNUSABLE with one line: the path, the user, why and the fix.
 */
export function checkPaths(config: CollectorConfig, user: string): void {
  const keepRoot = user === 'root' ? '' : ', or --user root';
  const stateFix = `pass --state-dir with a directory ${user} can write (e.g. /var/lib/datakit-ebpf)${keepRoot}`;
  if (config.dryRun) {
    // A dry run writes no spool, but a clean stop removes the netflow collect log from the state directory.
    const blocked = unsearchableAncestor(config.stateDir);
    if (blocked) throw unusable('state directory', config.stateDir, user, Object.assign(new Error('EACCES'), { code: 'EACCES' }), stateFix);
  } else {
    let step = config.stateDir;
    try {
      makeDirs(config.stateDir, 0o750);
      probeWrite(config.stateDir);
      step = path.join(config.stateDir, 'spool');
      makeDirs(step, 0o750);
      probeWrite(step);
      // Spool segments and the collect log of an earlier run are appended to or replaced.
      for (const dir of [config.stateDir, path.join(config.stateDir, 'spool')]) {
        for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
          if (!e.isFile()) continue;
          step = path.join(dir, e.name);
          fs.accessSync(step, fs.constants.R_OK | fs.constants.W_OK);
        }
      }
    } catch (err) {
      throw unusable(step === config.stateDir ? 'state directory' : 'state file', step, user, err, stateFix);
    }
  }
  if (config.pinRoot !== '' && fs.existsSync(config.pinRoot)) {
    try {
      fs.accessSync(config.pinRoot, fs.constants.W_OK | fs.constants.X_OK);
    } catch (err) {
      throw unusable('pin directory', config.pinRoot, user, err, `pass --pin-root off (counters then restart with the collector)${keepRoot}`);
    }
  }
}

/**
 * Whether the log file can be reopened (SIGHUP) by the current user. Not
 * fatal: the file is open and logging works; only rotation would not.
 */
export function checkLogReopen(config: CollectorConfig, user: string, log: Logger): void {
  if (config.log === 'stdout' || config.log === 'stderr') return;
  try {
    fs.accessSync(config.log, fs.constants.W_OK);
  } catch (err) {
    log.warn({ file: config.log, err: (err as Error).message }, `user ${user} cannot reopen the log file ${config.log} (${explain(config.log, err)}): SIGHUP will keep writing to the old file`);
  }
}
