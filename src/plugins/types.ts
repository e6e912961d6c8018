// A DataKit plugin as the daemon runs it (ebpf-net, ebpf-bash): it owns its
// loader child(ren), aggregates, and hands points to the shared uploader.
import type { Logger } from 'pino';
import type { CollectorConfig, Plugin } from '../config/types';
import type { LoaderReady } from '../loader/supervisor';
import type { Uploader } from '../upload/uploader';

export interface PluginContext {
  config: CollectorConfig;
  log: Logger;
  uploader: Uploader;
  /** host, service and the user's tags, for every point. */
  commonTags: Record<string, string>;
}

export interface CollectorPlugin {
  readonly name: Plugin;
  /** Loads and attaches; rejects with a CollectorError when the plugin cannot run here. */
  start(): Promise<LoaderReady>;
  /** Collects and sends one interval. Never rejects. */
  tick(nowNs: bigint): Promise<void>;
  /** Pid of the plugin's loader child, while it runs. */
  readonly loaderPid: number | undefined;
  /** Flushes what was collected, then detaches. Idempotent. */
  close(): Promise<void>;
  /** Detaches at once. Idempotent. */
  destroy(): void;
}
