// The only module that loads the compiled addon: what the daemon itself needs
// natively (user look-up, dropping privileges). BPF is dke-loader's business.
import { ADDON_PATH } from '../paths';

interface Addon {
  /** native/privileges.cc; used through src/daemon/privileges.ts. */
  lookupUser(user: string | number): PasswdEntry | null;
  dropPrivileges(opts: { uid: number; gid: number; keepCaps: number[]; keepEffective?: boolean }): DroppedCredentials;
  /** Returns the parent pid at the moment the signal was armed. */
  setParentDeathSignal(signal: number): number;
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** Credentials after dropPrivileges; capability sets as 16 hex digits, as in /proc/<pid>/status. */
export interface DroppedCredentials {
  uid: number;
  gid: number;
  effective: string;
  permitted: string;
  inheritable: string;
  ambient: string;
  bounding: string;
}

/** Errors thrown by the addon carry these. */
export interface NativeError extends Error {
  code: string;
  errno?: number;
}

let addon: Addon | undefined;

export function loadAddon(): Addon {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  addon ??= require(ADDON_PATH) as Addon;
  return addon;
}
