// The collector's pinned BPF objects. Everything under the pin root
// (/sys/fs/bpf/datakit-ebpf: `net-<build hash>/` with its maps and links,
// older builds' `netflow-<build hash>/`, other loaders' directories, the
// lock) belongs to the collector: the lock
// (src/daemon/pinlock.ts) makes it one collector's at a time. Removing a
// pinned link detaches its program once no process holds it open.
//
// One older layout existed: builds before "no default /sys/fs/bpf pins
// without a pin root" (commit ab30f56), run with `--pin-root off`, let libbpf
// pin the netflow maps by name directly in /sys/fs/bpf. Those names are
// generic, so they are removed only when bpftool confirms each is a map of
// that name and type.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { LOCK_NAME } from './pinlock';

/** The netflow maps of builds up to df31840, pinned by name in bpffs' root with --pin-root off. */
export const LEGACY_MAPS: readonly { name: string; type: string; keySize?: number }[] = [
  { name: 'tcp_conns', type: 'hash', keySize: 8 },
  { name: 'udp_flows', type: 'lru_hash' },
  { name: 'sock_owners', type: 'lru_hash', keySize: 8 },
  { name: 'listeners', type: 'hash' },
  { name: 'tcp_closed_events', type: 'ringbuf' },
  { name: 'telemetry', type: 'percpu_array', keySize: 4 },
];

function isMountPoint(dir: string): boolean {
  const abs = path.resolve(dir);
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === abs);
}

/**
 * Every entry under `pinRoot` except the lock, deepest first (the order to
 * remove them in). Refuses a bpffs mount point itself: that is everyone's.
 */
export function listPins(dir: string): string[] {
  const pinRoot = path.resolve(dir);
  if (isMountPoint(pinRoot)) throw new Error(`${pinRoot} is a mount point, not a collector's pin root`);
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (d === pinRoot && e.name === LOCK_NAME) continue;
      if (e.isDirectory()) walk(p);
      out.push(p);
    }
  };
  walk(pinRoot);
  return out;
}

export interface RemovedPins {
  /** Pinned objects removed (directories are not counted). */
  removed: string[];
  failed: { path: string; error: string }[];
}

/** Removes what listPins() lists. Never throws. */
export function removePins(pinRoot: string): RemovedPins {
  const res: RemovedPins = { removed: [], failed: [] };
  let entries: string[];
  try {
    entries = listPins(pinRoot);
  } catch (err) {
    res.failed.push({ path: pinRoot, error: (err as Error).message });
    return res;
  }
  for (const p of entries) {
    try {
      const dir = fs.lstatSync(p).isDirectory();
      if (dir) fs.rmdirSync(p);
      else fs.unlinkSync(p);
      if (!dir) res.removed.push(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') res.failed.push({ path: p, error: (err as Error).message });
    }
  }
  return res;
}

/** Removes these pinned objects, and each one's directory if that empties it. Never throws. */
export function removePinned(paths: readonly string[]): void {
  for (const p of paths) {
    try {
      fs.unlinkSync(p);
      fs.rmdirSync(path.dirname(p));
    } catch {
      /* gone, or its directory holds more */
    }
  }
}

/** Removes the pin root itself if nothing is left in it. Never throws. */
export function removeEmptyPinRoot(pinRoot: string): void {
  try {
    fs.rmdirSync(pinRoot);
  } catch {
    /* not empty, or gone */
  }
}

interface BpftoolMap {
  name?: string;
  type?: string;
  bytes_key?: number;
}

/**
 * The old-layout maps present in `bpffsRoot`: `ours` when bpftool confirms
 * name, type and key size; `unverified` with the reason otherwise.
 */
export function legacyPins(bpffsRoot: string, bpftool = 'bpftool'): { ours: string[]; unverified: { path: string; why: string }[] } {
  const res: { ours: string[]; unverified: { path: string; why: string }[] } = { ours: [], unverified: [] };
  for (const m of LEGACY_MAPS) {
    const p = path.join(bpffsRoot, m.name);
    if (!fs.existsSync(p)) continue;
    let info: BpftoolMap;
    try {
      info = JSON.parse(execFileSync(bpftool, ['-j', 'map', 'show', 'pinned', p], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as BpftoolMap;
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      res.unverified.push({ path: p, why: e.code === 'ENOENT' ? 'bpftool is not installed to check it' : `not a BPF map (${(e.stderr ?? e.message).trim().split('\n')[0]})` });
      continue;
    }
    // The kernel keeps 15 characters of a map's name.
    const nameOk = info.name === m.name.slice(0, 15);
    const typeOk = info.type === m.type;
    const keyOk = m.keySize === undefined || info.bytes_key === m.keySize;
    if (nameOk && typeOk && keyOk) res.ours.push(p);
    else res.unverified.push({ path: p, why: `map "${info.name ?? '?'}" of type ${info.type ?? '?'} is not the collector's` });
  }
  return res;
}
