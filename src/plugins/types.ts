// A DataKit plugin as the daemon runs it (ebpf-net, ebpf-bash): it owns its
// loader child(ren), aggregates, and hands points to the shared uploader.
import type { Logger } from 'pino';
import type { CollectorConfig, Plugin } from '../config/types';
import type { Metrics } from '../daemon/metrics';
import type { LoaderReady } from '../loader/supervisor';
import type { PointSink } from '../upload/delivery';

export interface PluginContext {
  config: CollectorConfig;
  log: Logger;
  /** Where points go: durably queued, then delivered with retries (src/upload/delivery.ts). */
  uploader: PointSink;
  metrics: Metrics;
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
