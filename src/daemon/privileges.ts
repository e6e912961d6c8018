// The daemon parent's privilege drop. The parent parses config, aggregates and
// talks HTTP: it needs no capabilities. Only the loader children load BPF. So
// before the first loader is forked the parent switches to an unprivileged
// user (--user), clears its effective capabilities and keeps just the BPF set
// as permitted + inheritable + ambient, which a plain (non-setuid) dke-loader exec
// turns into the child's effective set. The parent keeps that set in
// `permitted` only so it can fork a loader again after a crash; it cannot use
// it itself without a capset call.
//
// Dropping before the first fork (not after the loaders are up) means every
// loader generation runs with the same credentials: what the first start
// proves is what a restart gets, pinned objects keep one owner, and the
// parent can always signal its children (a nobody parent cannot kill a root
// child).
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { CollectorConfig } from '../config/types';
import { quote } from '../config/values';
import { CollectorError } from '../errors';
import { loadAddon, type DroppedCredentials, type PasswdEntry } from '../loader/native';
import { CAP, LOADER_CAPABILITIES, loaderCapabilities } from '../loader/privileges';
import { ADDON_PATH, LOADER_BIN, PROJECT_ROOT } from '../paths';

type NativeAddon = ReturnType<typeof loadAddon>;

/** The loader children each DataKit plugin runs (LoaderSpec.plugin names). */
const PLUGIN_LOADERS: Record<string, string[]> = {
  'ebpf-net': ['net'],
  'ebpf-bash': ['bash'],
};

/**
 * Capability numbers the daemon keeps for its loaders: the union of what the
 * enabled plugins' loaders need (each narrows itself to its own at start).
 */
export function loaderCapNumbers(enabled: readonly string[], capLastCap?: number): number[] {
  const loaders = enabled.flatMap((p) => PLUGIN_LOADERS[p] ?? Object.keys(LOADER_CAPABILITIES));
  const names = new Set(loaders.flatMap((l) => loaderCapabilities(l, capLastCap)));
  return [...names].map((c) => CAP[c]);
}

/** Default --user when the installer's dedicated user exists. */
export const DEDICATED_USER = 'datakit-ebpf';
export const FALLBACK_USER = 'nobody';

export type PrivilegeOutcome =
  | { kind: 'kept-root'; reason: string }
  | ({ kind: 'dropped'; user: string; keep: string[] } & DroppedCredentials);

export function capNames(mask: bigint): string[] {
  return Object.entries(CAP)
    .filter(([, n]) => (mask & (1n << BigInt(n))) !== 0n)
    .map(([name]) => `CAP_${name}`);
}

/** CapEff/CapPrm/... of /proc/<pid>/status text. */
export function statusCaps(status: string): { uid: number; gid: number; eff: bigint; prm: bigint; inh: bigint; amb: bigint; bnd: bigint } {
  const hex = (k: string): bigint => {
    const m = new RegExp(`^${k}:\\s*([0-9a-f]+)$`, 'm').exec(status);
    return m ? BigInt(`0x${m[1]}`) : 0n;
  };
  const ids = (k: string): number => Number(new RegExp(`^${k}:\\s*(\\d+)`, 'm').exec(status)?.[1] ?? -1);
  return { uid: ids('Uid'), gid: ids('Gid'), eff: hex('CapEff'), prm: hex('CapPrm'), inh: hex('CapInh'), amb: hex('CapAmb'), bnd: hex('CapBnd') };
}

export interface Target {
  name: string;
  uid: number;
  gid: number;
}

/** `--user` as given (undefined: the default), resolved; null means stay root. */
export function resolveUser(user: string | undefined, lookup: (u: string | number) => PasswdEntry | null): Target | null {
  if (user === undefined) {
    const entry = lookup(DEDICATED_USER) ?? lookup(FALLBACK_USER);
    if (!entry) {
      throw new CollectorError(
        'CONFIG_INVALID',
        `--user: neither ${DEDICATED_USER} nor ${FALLBACK_USER} exists; name an unprivileged user with --user (or --user root to keep root)`,
      );
    }
    return entry.uid === 0 ? null : { name: entry.name, uid: entry.uid, gid: entry.gid };
  }
  const u = user.trim();
  if (u === '' || u === 'root') return null;
  const entry = /^\d+$/.test(u) ? (lookup(Number(u)) ?? { name: u, uid: Number(u), gid: Number(u), home: '' }) : lookup(u);
  if (!entry) {
    throw new CollectorError(
      'CONFIG_INVALID',
      `--user ${quote(user)}: no such user; expected a user name or uid (default: ${DEDICATED_USER} if it exists, else ${FALLBACK_USER}), or root to keep running as root`,
    );
  }
  return entry.uid === 0 ? null : { name: entry.name, uid: entry.uid, gid: entry.gid };
}

/** Whether `uid`/`gid` may open `file` (read, or execute with `exec`) going by mode bits (ACLs ignored). */
export function accessibleBy(file: string, uid: number, gid: number, exec = false): boolean {
  const allowed = (st: fs.Stats, bit: number): boolean => {
    const shift = st.uid === uid ? 6 : st.gid === gid ? 3 : 0;
    return ((st.mode >> shift) & bit) !== 0;
  };
  const abs = path.resolve(file);
  const parts = abs.split('/').filter(Boolean);
  let dir = '/';
  for (let i = 0; i < parts.length; i++) {
    let st: fs.Stats;
    try {
      st = fs.statSync(dir);
    } catch {
      return false;
    }
    if (!allowed(st, 1)) return false;
    dir = path.join(dir, parts[i]!);
  }
  try {
    return allowed(fs.statSync(abs), exec ? 1 : 4);
  } catch {
    return false;
  }
}

function hasEffective(cap: number): boolean {
  return (statusCaps(fs.readFileSync('/proc/self/status', 'utf8')).eff & (1n << BigInt(cap))) !== 0n;
}

/**
 * Before anything is touched: a process that cannot load eBPF programs at all
 * (not root, or uid 0 stripped of its capabilities) says so in one line,
 * instead of failing later on whichever path or lock it reaches first.
 */
export function requireBpfPrivileges(): void {
  if (hasEffective(CAP.BPF) || hasEffective(CAP.SYS_ADMIN)) return;
  const uid = process.getuid?.() ?? 0;
  throw new CollectorError(
    'PRIVILEGE',
    `loading the eBPF programs needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN) but this process (uid ${uid}) has neither CAP_BPF nor CAP_SYS_ADMIN: run the collector as root` +
      (uid !== 0 ? '; under systemd add them to CapabilityBoundingSet= and AmbientCapabilities=' : ''),
  );
}

/** What dropDaemonPrivileges() will do, decided before anything is touched. */
export type DropPlan =
  | { kind: 'kept-root'; reason: string }
  | { kind: 'drop'; target: Target; keepCaps: number[]; addon: NativeAddon; /** the user is switched (we are root), so paths are handed over */ switchUser: boolean };

/**
 * Decides whom the daemon becomes. Touches nothing.
 * @throws CollectorError CONFIG_INVALID for an unknown --user, PRIVILEGE when
 *   the drop cannot be done safely (the process must then exit).
 */
export function planDrop(config: CollectorConfig, log: Logger): DropPlan {
  const explicit = config.user;
  if (explicit !== undefined && (explicit.trim() === '' || explicit.trim() === 'root')) {
    log.warn('running the daemon as root (--user root): the loader children are the only processes that need privileges');
    return { kind: 'kept-root', reason: '--user root' };
  }
  let addon: NativeAddon;
  try {
    addon = loadAddon();
  } catch (err) {
    throw new CollectorError(
      'PRIVILEGE',
      `cannot load the native addon ${ADDON_PATH} to drop privileges (${(err as Error).message.split('\n')[0]}): install libbpf1 and libelf1, rebuild with scripts/build, or pass --user root`,
      { cause: err },
    );
  }
  const keepCaps = loaderCapNumbers(config.enabled);
  const curUid = process.getuid!();
  if (curUid !== 0) {
    // Started unprivileged with capabilities (systemd User=/DynamicUser= with
    // AmbientCapabilities=): the user is already right, only the caps go.
    if (explicit !== undefined) {
      const wanted = resolveUser(explicit, (u) => addon.lookupUser(u));
      if (wanted && wanted.uid !== curUid) log.warn(`already running as uid ${curUid}; --user ${explicit} ignored`);
    }
    const target = { name: addon.lookupUser(curUid)?.name ?? String(curUid), uid: curUid, gid: process.getgid!() };
    return { kind: 'drop', target, keepCaps, addon, switchUser: false };
  }
  const resolved = resolveUser(explicit, (u) => addon.lookupUser(u));
  if (!resolved) return { kind: 'kept-root', reason: 'the user resolves to uid 0' };
  if (!hasEffective(CAP.SETUID) || !hasEffective(CAP.SETGID)) {
    // uid 0 stripped of capabilities (a container, setpriv): nothing to gain
    // from a user switch we cannot make; the loader says what it lacks.
    log.warn(`cannot switch to user ${resolved.name} without CAP_SETUID and CAP_SETGID; staying uid 0 with no effective capabilities`);
    return { kind: 'drop', target: { name: 'root', uid: 0, gid: process.getgid!() }, keepCaps, addon, switchUser: false };
  }
  const needed = [
    { file: LOADER_BIN, exec: true },
    { file: ADDON_PATH, exec: false },
    { file: path.join(PROJECT_ROOT, 'package.json'), exec: false },
  ];
  const unreadable = needed.find((n) => !accessibleBy(n.file, resolved.uid, resolved.gid, n.exec));
  if (unreadable) {
    throw new CollectorError(
      'PRIVILEGE',
      `user ${resolved.name} cannot ${unreadable.exec ? 'run' : 'read'} ${unreadable.file}, which it needs to start the eBPF loader: install with scripts/install (its files are world-readable) or pass --user root`,
    );
  }
  return { kind: 'drop', target: resolved, keepCaps, addon, switchUser: true };
}

/**
 * Drops the daemon's privileges as described at the top of this file, as
 * planned by planDrop(); the paths the user needs are prepared in between
 * (src/daemon/workpaths.ts).
 * @throws CollectorError PRIVILEGE when the drop fails (the process must then exit).
 */
export function applyDrop(plan: DropPlan, log: Logger): PrivilegeOutcome {
  if (plan.kind === 'kept-root') return plan;
  const { target, addon, keepCaps } = plan;
  let creds: DroppedCredentials;
  try {
    creds = addon.dropPrivileges({ uid: target.uid, gid: target.gid, keepCaps });
  } catch (err) {
    throw new CollectorError('PRIVILEGE', `dropping privileges to ${target.name} failed: ${(err as Error).message}`, { cause: err });
  }
  const keep = capNames(BigInt(`0x${creds.permitted}`));
  log.info(
    { user: target.name, uid: creds.uid, gid: creds.gid, capEff: creds.effective, capPrm: creds.permitted, capAmb: creds.ambient, capBnd: creds.bounding },
    `daemon runs as ${target.name} (uid ${creds.uid}) with no effective capabilities; its eBPF loaders get at most ${keep.join(', ') || 'none'}, each only what it needs`,
  );
  return { kind: 'dropped', user: target.name, keep, ...creds };
}
