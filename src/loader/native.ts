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

export interface PinInfo {
  /** Directory of the pinned maps and links, '' when not pinned. */
  dir: string;
  /** True when the maps existed before (an earlier loader's counters continue). */
  mapsReused: boolean;
}

export interface NativeTracer {
  attach(): AttachResult[];
  dumpMap(name: MapName): Buffer;
  lookupAndDelete(name: MapName, keys: Buffer): Buffer;
  readTelemetry(): number[];
  /** Deletes entries by key; returns how many existed. */
  deleteKeys(name: MapName, keys: Buffer): number;
  /** Removes the pinned maps and links (a clean stop); they detach at close(). */
  unpin(): void;
  pinInfo(): PinInfo;
  startEvents(onBatch: (records: Buffer) => void): void;
  close(): void;
}

export interface TracerOptions {
  ipv6Disabled: boolean;
  /** A cgroup v2 directory; the root sees every process. */
  cgroupPath: string;
  /** Programs not to load (optional hooks that failed before). */
  disabledPrograms: string[];
  /** A bpffs directory to pin maps and links under, '' to not pin. */
  pinRoot: string;
}

/** ebpf-bash: the readline uretprobe (native/bash_tracer.cc). */
export interface NativeBashTracer {
  /** Attaches the uretprobe to the function at `fileOffset` of one ELF file. */
  attach(binaryPath: string, fileOffset: number): { ok: boolean; error?: string; errno?: number };
  readTelemetry(): number[];
  startEvents(onBatch: (records: Buffer) => void): void;
  close(): void;
}

/** dnsflow: cgroup_skb programs that copy DNS packets (native/dns_tracer.cc). */
export interface NativeDnsTracer {
  /** Attaches both directions to a cgroup v2 directory. */
  attach(cgroupPath: string): AttachResult[];
  readTelemetry(): number[];
  /** Batches of [u32 length][record] (bpf/dns.h). */
  startEvents(onBatch: (records: Buffer) => void): void;
  close(): void;
}

export interface DnsTracerOptions {
  /** 1 to 8 ports (bpf/dns.h DKE_DNS_PORTS_MAX). */
  ports: number[];
  ipv6Disabled: boolean;
}

interface Addon {
  Tracer: new (opts: TracerOptions) => NativeTracer;
  /** `layout`: offsets of bpf/bash.h, checked by src/bash/record.ts. */
  BashTracer: (new (opts: { uprobeMulti: boolean }) => NativeBashTracer) & { layout: unknown };
  /** `layout`: offsets of bpf/dns.h, checked by src/dnsflow/record.ts. */
  DnsTracer: (new (opts: DnsTracerOptions) => NativeDnsTracer) & { layout: unknown };
  probeKernel(): KernelProbe;
  layout: unknown;
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
  libbpfLog?: string;
  program?: string;
}

let addon: Addon | undefined;

export function loadAddon(): Addon {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  addon ??= require(ADDON_PATH) as Addon;
  return addon;
}
