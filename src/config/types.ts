// The collector's resolved configuration: flags, an optional ebpf.conf and
// defaults merged into one typed value. Everything downstream reads this only.

import type { RedactPreset } from '../bash/redact';

export const PLUGINS = ['ebpf-net', 'ebpf-bash'] as const;
export type Plugin = (typeof PLUGINS)[number];

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface CollectorConfig {
  /** Base URL of the DataKit API server, normalised: `http://host:port` (or https). */
  datakitApiServer: string;
  /**
   * What to actually connect to: datakitApiServer with a wildcard listen host
   * (0.0.0.0, [::]) replaced by loopback (127.0.0.1, [::1]).
   */
  datakitConnectUrl: string;
  /** `host` tag value: --hostname > ENV_HOSTNAME > os.hostname(). */
  hostname: string;
  /** Flush interval in milliseconds (>= 1000). */
  intervalMs: number;
  /** Log destination: a file path or the literal 'stdout'. */
  log: string;
  logLevel: LogLevel;
  /** `service` tag value. */
  service: string;
  pidfile?: string;
  /**
   * --user as given: the daemon switches to it before forking the loaders
   * (src/daemon/privileges.ts). Undefined: datakit-ebpf if it exists, else
   * nobody; '' or 'root': stay root.
   */
  user?: string;
  /** Print line protocol to stdout instead of sending it (--dry-run, --datakit-apiserver stdout). */
  dryRun: boolean;
  /** Extra tags added to every point (from --tags and [inputs.ebpf.tags]). */
  tags: Record<string, string>;
  enabled: Plugin[];
  /** Client ports >= this collapse to `*` (0 collapses every client port, as upstream). */
  ephemeralPort: number;
  ipv6Disabled: boolean;
  /** Emit loopback-to-loopback flows (upstream drops them). */
  includeLoopback: boolean;
  /** dnsflow: resolver ports (at most 8); empty = dnsflow off. */
  dnsPorts: number[];
  /** dnsflow: a query unanswered this long counts as a timeout (rcode -1). */
  dnsTimeoutMs: number;
  /** ebpf-bash: bash binaries to probe; empty = /bin/bash and /usr/bin/bash. */
  bashPaths: string[];
  /** ebpf-bash: redaction presets (src/bash/redact.ts); empty = no preset. */
  bashRedact: RedactPreset[];
  /** ebpf-bash: the user's own redaction patterns (`re` or `/re/flags`), already checked to compile. */
  bashRedactRegex: string[];
  l7netEnabled: string[];
  pprofHost?: string;
  pprofPort?: number;
  /** Spool of undelivered batches and persisted counter read-marks. */
  stateDir: string;
  /** Bound of the on-disk spool; the oldest batches are dropped (and counted) beyond it. */
  spoolMaxBytes: number;
  /** gzip request bodies (DataKit accepts Content-Encoding: gzip). */
  gzip: boolean;
  /** bpffs directory for pinned maps and links; '' = do not pin. */
  pinRoot: string;
  /** Bound for connecting to DataKit and for each of its answers. */
  uploadTimeoutMs: number;
  /** Path of the ebpf.conf that was read, if any. */
  configFile?: string;
  /** One line per DataKit flag that was accepted but is not implemented. */
  warnings: string[];
}
