// The collector's resolved configuration: flags, an optional ebpf.conf and
// defaults merged into one typed value. Everything downstream reads this only.
// Its fields are the options of src/config/options.ts (one per entry of
// OPTIONS, documented there) plus what is derived from them here.

import type { OptionValues } from './options';

export const PLUGINS = ['ebpf-net', 'ebpf-bash'] as const;
export type Plugin = (typeof PLUGINS)[number];

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface CollectorConfig extends OptionValues {
  /**
   * What to actually connect to: datakitApiServer with a wildcard listen host
   * (0.0.0.0, [::]) replaced by loopback (127.0.0.1, [::1]).
   */
  datakitConnectUrl: string;
  /**
   * Always false. `--ipv6-disabled` / `ipv6_disabled` are accepted as upstream
   * has them and change nothing: upstream still reports IPv6 flows with them.
   * Nothing reads it; it stays so the parsed config says so.
   */
  ipv6Disabled: false;
  /** Accepted-but-ignored findings and notes (a short interval, no flow cap), logged once at start-up. */
  warnings: string[];
}
