// The only module that loads the compiled addon. Everything else sees this
// typed surface; native handles never leave the loader child.
import { ADDON_PATH } from '../paths';

export interface AttachResult {
  program: string;
  section: string;
  ok: boolean;
  error?: string;
}

export interface KernelProbe {
  btf: boolean;
  btfError?: string;
  tracepoints: Record<string, boolean>;
}

export type MapName = 'tcp_conns' | 'udp_flows' | 'sock_owners';

export interface NativeTracer {
  attach(): AttachResult[];
  dumpMap(name: MapName): Buffer;
  lookupAndDelete(name: MapName, keys: Buffer): Buffer;
  readTelemetry(): number[];
  startEvents(onBatch: (records: Buffer) => void): void;
  close(): void;
}

export interface TracerOptions {
  ipv6Disabled: boolean;
  /** A cgroup v2 directory; the root sees every process. */
  cgroupPath: string;
  /** Programs not to load (optional hooks that failed before). */
  disabledPrograms: string[];
}

interface Addon {
  Tracer: new (opts: TracerOptions) => NativeTracer;
  probeKernel(): KernelProbe;
  layout: unknown;
}

/** Errors thrown by the addon carry these. */
export interface NativeError extends Error {
  code: string;
  errno?: number;
  libbpfLog?: string;
  program?: string;
}

let addon: Addon | undefined;

export function loadAddon(): Addon {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  addon ??= require(ADDON_PATH) as Addon;
  return addon;
}
