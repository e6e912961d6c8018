// The collector's resolved configuration: flags, an optional ebpf.conf and
// defaults merged into one typed value. Everything downstream reads this only.

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
  /** Extra tags added to every point (from --tags and [inputs.ebpf.tags]). */
  tags: Record<string, string>;
  enabled: Plugin[];
  /** Client ports >= this collapse to `*` (0 collapses every client port, as upstream). */
  ephemeralPort: number;
  ipv6Disabled: boolean;
  /** Emit loopback-to-loopback flows (upstream drops them). */
  includeLoopback: boolean;
  l7netEnabled: string[];
  pprofHost?: string;
  pprofPort?: number;
  /** Spool of undelivered batches and persisted counter read-marks. */
  stateDir: string;
  /** Bound of the on-disk spool; the oldest batches are dropped (and counted) beyond it. */
  spoolMaxBytes: number;
  /** gzip request bodies (DataKit accepts Content-Encoding: gzip). */
  gzip: boolean;
  /** Path of the ebpf.conf that was read, if any. */
  configFile?: string;
  /** One line per DataKit flag that was accepted but is not implemented. */
  warnings: string[];
}
