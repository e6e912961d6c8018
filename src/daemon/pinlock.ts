// One collector per pin root. Two collectors on the same pinned maps would
// read and delete each other's entries and DataKit would get every flow
// twice, so the daemon takes this lock before it starts a loader and gives it
// up only after its pins are gone; `datakit-ebpf cleanup` takes it too.
//
// The lock is a symlink `<pin root>/lock` whose target names the holder,
// `datakit-ebpf:<pid>:<start time>`, followed by `:<pid>:<start time>` for
// each of its loaders. Why that, there:
// - it is keyed by exactly what must not be shared, the pin root (two
//   instances can differ in state dir or pidfile and still share the maps);
// - bpffs holds no regular files, but it has symlinks, which are created
//   atomically (exclusive, like O_EXCL) and read back whole with readlink;
// - bpffs starts empty at boot, like the pins, so no lock outlives them;
// - Node has no flock(): a pid with its start time (field 22 of
//   /proc/<pid>/stat) says who holds the lock and whether it still lives,
//   even after the pid was reused;
// - recording the loaders lets a start right after a SIGKILL (DataKit's way of
//   stopping an input, and it restarts within a second) wait for the killed
//   daemon's loaders to die instead of sharing the maps with them.
// bpffs reserves names with a dot, hence `lock`, `lock-new-<pid>`, `lock-takeover`.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { CollectorError } from '../errors';

export const LOCK_NAME = 'lock';
const TAKEOVER = 'lock-takeover';
const PREFIX = 'datakit-ebpf';
/** How long a start waits for a dying holder (DataKit restarts an input within a second). */
export const LOCK_WAIT_MS = 3_000;
/** A takeover takes microseconds: a mutex this old was left by a process that died in it. */
const TAKEOVER_STALE_MS = 5_000;
const POLL_MS = 50;

interface Proc {
  pid: number;
  start: string;
}

export interface LockHolder {
  daemon: Proc;
  loaders: Proc[];
  /** The link's target as read. */
  raw: string;
}

/** Start time of a live process (not a zombie), from /proc/<pid>/stat. */
export function processStart(pid: number): string | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return fields[19];
}

function alive(p: Proc): boolean {
  return processStart(p.pid) === p.start;
}

function encode(procs: Proc[]): string {
  return [PREFIX, ...procs.map((p) => `${p.pid}:${p.start}`)].join(':');
}

function decode(raw: string): LockHolder | undefined {
  const parts = raw.split(':');
  if (parts[0] !== PREFIX || parts.length < 3 || parts.length % 2 === 0) return undefined;
  const procs: Proc[] = [];
  for (let i = 1; i < parts.length; i += 2) {
    const pid = Number(parts[i]);
    if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
    procs.push({ pid, start: parts[i + 1]! });
  }
  return { daemon: procs[0]!, loaders: procs.slice(1), raw };
}

function readHolder(file: string): LockHolder | { raw: string } | undefined {
  let raw: string;
  try {
    raw = fs.readlinkSync(file);
  } catch (err) {
    // Not a symlink: a file someone put there, no lock of ours.
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return { raw: '' };
    return undefined; // released meanwhile
  }
  return decode(raw) ?? { raw };
}

/** The live holder of `pinRoot`'s lock, if any: its daemon, or loaders a dead daemon left. */
export function lockHolder(pinRoot: string): { daemon?: number; loaders: number[] } | undefined {
  const h = readHolder(path.join(pinRoot, LOCK_NAME));
  if (!h || !('daemon' in h)) return undefined;
  const daemon = alive(h.daemon) ? h.daemon.pid : undefined;
  const loaders = h.loaders.filter(alive).map((l) => l.pid);
  return daemon !== undefined || loaders.length > 0 ? { daemon, loaders } : undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class PinRootLock {
  private readonly file: string;
  private content: string;
  private released = false;

  private constructor(
    readonly pinRoot: string,
    private readonly self: Proc,
    content: string,
  ) {
    this.file = path.join(pinRoot, LOCK_NAME);
    this.content = content;
  }

  /**
   * Takes the lock of `pinRoot` (which must exist). A holder that is still
   * alive gets `waitMs` to go; loaders a dead holder left behind are then
   * SIGKILLed (they are the dead collector's, checked by start time).
   * @throws CollectorError IN_USE naming the pid of a live collector.
   */
  static async acquire(pinRoot: string, opts: { waitMs?: number; log?: Logger; what?: string } = {}): Promise<PinRootLock> {
    const self = { pid: process.pid, start: processStart(process.pid) ?? '0' };
    const content = encode([self]);
    const file = path.join(pinRoot, LOCK_NAME);
    const deadline = Date.now() + (opts.waitMs ?? LOCK_WAIT_MS);
    let waitLogged = false;
    let killed = false;
    for (;;) {
      try {
        fs.symlinkSync(content, file);
        return new PinRootLock(pinRoot, self, content);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new CollectorError('PATH_UNUSABLE', `cannot lock the pin root ${pinRoot} (${(err as Error).message}); pass --pin-root off or another --pin-root`, { cause: err });
        }
      }
      const h = readHolder(file);
      if (!h) continue; // released meanwhile
      if (!('daemon' in h)) {
        // Not our format: nothing a collector holds.
        if (!takeOver(pinRoot, h.raw)) await sleep(POLL_MS);
        continue;
      }
      const daemonAlive = alive(h.daemon);
      const loaders = h.loaders.filter(alive);
      if (!daemonAlive && loaders.length === 0) {
        if (takeOver(pinRoot, h.raw)) opts.log?.info({ pinRoot, previousPid: h.daemon.pid }, `pin root ${pinRoot}: the collector that held it (pid ${h.daemon.pid}) is gone; taking over`);
        else await sleep(POLL_MS);
        continue;
      }
      if (Date.now() >= deadline) {
        if (daemonAlive) {
          throw new CollectorError(
            'IN_USE',
            `another collector (pid ${h.daemon.pid}) is running on the pin root ${pinRoot}: stop it first${opts.what === 'cleanup' ? '' : ', or give this one its own --pin-root (two collectors would count every flow twice)'}`,
          );
        }
        if (!killed) {
          killed = true;
          // Its daemon is dead: these loaders are orphans that did not die with it.
          for (const l of loaders) {
            try {
              if (alive(l)) process.kill(l.pid, 'SIGKILL');
            } catch {
              /* gone, or not ours to signal: waited for below */
            }
          }
          opts.log?.warn({ pinRoot, loaders: loaders.map((l) => l.pid) }, `ended eBPF loader(s) ${loaders.map((l) => l.pid).join(', ')} left by collector pid ${h.daemon.pid}, which is gone`);
        } else if (Date.now() >= deadline + 2_000) {
          throw new CollectorError('IN_USE', `eBPF loader(s) ${loaders.map((l) => l.pid).join(', ')} of a collector that is gone still hold the pin root ${pinRoot} and cannot be stopped: kill them, then start again`);
        }
      } else if (!waitLogged) {
        waitLogged = true;
        opts.log?.info(
          { pinRoot, holder: h.daemon.pid, loaders: loaders.map((l) => l.pid) },
          `pin root ${pinRoot} is held by collector pid ${h.daemon.pid}${daemonAlive ? '' : ' (gone; its loaders are still exiting)'}; waiting up to ${Math.round((deadline - Date.now()) / 100) / 10} s`,
        );
      }
      await sleep(POLL_MS);
    }
  }

  get held(): boolean {
    return !this.released;
  }

  /** Records the loaders' pids, so a successor waits for them too. Never throws. */
  recordLoaders(pids: readonly (number | undefined)[]): void {
    if (this.released) return;
    const loaders: Proc[] = [];
    for (const pid of pids) {
      const start = pid ? processStart(pid) : undefined;
      if (pid && start) loaders.push({ pid, start });
    }
    const content = encode([this.self, ...loaders]);
    if (content === this.content) return;
    const tmp = path.join(this.pinRoot, `${LOCK_NAME}-new-${process.pid}`);
    try {
      fs.rmSync(tmp, { force: true });
      fs.symlinkSync(content, tmp);
      fs.renameSync(tmp, this.file);
      this.content = content;
    } catch {
      fs.rmSync(tmp, { force: true });
    }
  }

  /** Gives the lock up if it is still ours. Idempotent; never throws. */
  release(): void {
    if (this.released) return;
    this.released = true;
    try {
      if (fs.readlinkSync(this.file).startsWith(encode([this.self]))) fs.unlinkSync(this.file);
    } catch {
      /* gone already */
    }
  }
}

/**
 * Removes a lock whose holder is gone, if it still reads `stale`; a mutex
 * directory keeps two starting collectors from both removing it and one of
 * them removing the other's fresh lock. Returns whether it removed it.
 */
function takeOver(pinRoot: string, stale: string): boolean {
  const mutex = path.join(pinRoot, TAKEOVER);
  try {
    fs.mkdirSync(mutex);
  } catch {
    try {
      if (Date.now() - fs.statSync(mutex).mtimeMs > TAKEOVER_STALE_MS) fs.rmdirSync(mutex);
    } catch {
      /* someone else's takeover finished */
    }
    return false;
  }
  try {
    const file = path.join(pinRoot, LOCK_NAME);
    let current: string | undefined;
    try {
      current = fs.readlinkSync(file);
    } catch (err) {
      // Not a symlink: a file someone put there; it is no lock of ours.
      if ((err as NodeJS.ErrnoException).code === 'EINVAL') current = stale;
    }
    if (current !== stale) return false;
    fs.rmSync(file, { force: true, recursive: true });
    return true;
  } finally {
    fs.rmdirSync(mutex);
  }
}
