// Wires one collector together: the enabled plugins (each with its supervised
// loader child and aggregators), the durable delivery queue in front of the
// uploader, the collector's own metrics and status endpoint, all driven by
// the flush interval. Owns the lifecycle: close() flushes what was collected,
// drains the spool for a bounded time and detaches, destroy() just stops;
// unflushed() says what a stop cut short would leave behind.
import path from 'node:path';
import type { Logger } from 'pino';
import type { CollectorConfig } from '../config/types';
import { displayUrl } from '../config/values';
import { CollectorError } from '../errors';
import { LoaderSupervisor } from '../loader/supervisor';
import { PLUGIN_FACTORIES } from '../plugins';
import type { CollectorPlugin, PluginContext } from '../plugins/types';
import { Delivery, MemoryQueue, type BatchQueue } from '../upload/delivery';
import { Spool } from '../upload/spool';
import { StdoutSink } from '../upload/stdout-sink';
import { Uploader } from '../upload/uploader';
import { Metrics } from './metrics';
import { startStatusServer, type StatusServer } from './status-server';

/** How long a clean stop keeps trying to deliver the spool. */
const DRAIN_ON_CLOSE_MS = 5_000;
/** DataKit's own cadence for an input's last error (upstream: every 30 s while broken). */
const LASTERROR_EVERY_MS = 30_000;
const METRICS_LOG_EVERY_MS = 60_000;
const LASTERROR_INPUT = 'ebpf';
/** How often the loaders' pids are written to the pin-root lock (a restarted loader gets a new one). */
const LOADER_PIDS_EVERY_MS = 1_000;

/** Where a stop is: what a second signal cuts short depends on it. */
export type StopStage = 'running' | 'flushing' | 'draining' | 'detaching' | 'stopped';

/** Who must know the loaders' pids (the pin-root lock, src/daemon/pinlock.ts). */
export interface LoaderPidSink {
  recordLoaders(pids: readonly (number | undefined)[]): void;
}

export class Daemon {
  private readonly uploader: Uploader;
  private readonly metrics = new Metrics();
  private delivery?: Delivery;
  private plugins: CollectorPlugin[] = [];
  private broken = new Map<string, string>();
  private timers: NodeJS.Timeout[] = [];
  private status?: StatusServer;
  private ticking?: Promise<void>;
  private starting?: Promise<void>;
  private closing?: Promise<void>;
  private closed = false;
  private stage: StopStage = 'running';
  private readonly startedAt = Date.now();
  private lastTickAt = Date.now();

  constructor(
    private readonly config: CollectorConfig,
    private readonly log: Logger,
    private readonly loaderPids?: LoaderPidSink,
  ) {
    this.uploader = new Uploader({ baseUrl: config.datakitConnectUrl, logger: log, timeoutMs: config.uploadTimeoutMs });
  }

  private openQueue(): BatchQueue {
    const dir = path.join(this.config.stateDir, 'spool');
    try {
      const spool = new Spool(dir, this.config.spoolMaxBytes, this.log);
      spool.open();
      return spool;
    } catch (err) {
      this.log.warn(
        { dir, err: (err as Error).message },
        `cannot use ${dir} for the spool (${(err as Error).message}): undelivered points are kept in memory only; fix --state-dir`,
      );
      return new MemoryQueue(Math.min(this.config.spoolMaxBytes, 64 << 20));
    }
  }

  /**
   * Starts every enabled plugin. One that cannot run here is logged, reported
   * to DataKit (/v1/lasterror) and left out; the daemon fails only when none can run.
   */
  start(): Promise<void> {
    this.starting = this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    for (const w of this.config.warnings) this.log.warn(w);
    // A dry run neither reads nor fills the spool: it sends nothing.
    const queue = this.config.dryRun ? new MemoryQueue(1 << 20) : this.openQueue();
    this.metrics.gauge('spool_points', () => queue.stats.points);
    this.metrics.gauge('spool_bytes', () => queue.stats.bytes);
    this.metrics.gauge('spool_dropped_points', () => queue.stats.droppedPoints);
    this.delivery = new Delivery({ uploader: this.uploader, queue, log: this.log, metrics: this.metrics, gzip: this.config.gzip });
    this.delivery.kick(); // what a previous run left goes first

    const ctx: PluginContext = {
      config: this.config,
      log: this.log,
      uploader: this.config.dryRun ? new StdoutSink(this.log) : this.delivery,
      metrics: this.metrics,
      commonTags: { ...this.config.tags, host: this.config.hostname, service: this.config.service },
    };
    const candidates: CollectorPlugin[] = [];
    for (const name of this.config.enabled) {
      const make = PLUGIN_FACTORIES[name];
      if (make) candidates.push(make(ctx));
      else this.log.warn(`plugin ${name} is not implemented yet; ignored`);
    }
    if (candidates.length === 0) {
      throw new CollectorError(
        'NOT_IMPLEMENTED',
        `none of the enabled plugins (${this.config.enabled.join(', ') || 'none'}) is implemented: enable ebpf-net and/or ebpf-bash with --enabled / enabled_plugins`,
      );
    }
    // Known from now on, so a stop or a crash during start-up reaches their loaders.
    this.plugins = candidates;
    const starts = candidates.map((p) => (async () => p.start())());
    this.every(LOADER_PIDS_EVERY_MS, () => this.recordLoaderPids());
    this.recordLoaderPids();
    const results = await Promise.allSettled(starts);
    const started: { plugin: CollectorPlugin; kernel: string; hookSet: string; pid: number }[] = [];
    let firstError: unknown;
    results.forEach((r, i) => {
      const plugin = candidates[i]!;
      if (r.status === 'fulfilled') {
        for (const d of r.value.hookSet.degraded) this.log.warn({ plugin: plugin.name }, `degraded: ${d}`);
        started.push({ plugin, kernel: r.value.kernel, hookSet: r.value.hookSet.name, pid: r.value.pid });
      } else {
        firstError ??= r.reason;
        const msg = `plugin ${plugin.name} cannot run: ${(r.reason as Error).message}`;
        this.log.error({ plugin: plugin.name }, msg);
        this.broken.set(plugin.name, msg);
        plugin.destroy();
      }
    });
    this.plugins = started.map((s) => s.plugin);
    this.recordLoaderPids();
    if (started.length === 0) {
      await this.reportBroken();
      throw firstError;
    }
    if (this.closed) return; // stopped while starting: close() takes it from here

    const kernel = started[0]!.kernel;
    const hookSet = started.map((s) => `${s.plugin.name}: ${s.hookSet}`).join('; ');
    this.log.info(
      {
        kernel,
        hookSet,
        plugins: this.plugins.map((p) => p.name),
        intervalMs: this.config.intervalMs,
        apiServer: displayUrl(this.config.datakitApiServer),
        host: this.config.hostname,
        stateDir: this.config.stateDir,
        loaderPid: started[0]!.pid,
        loaderPids: Object.fromEntries(started.map((s) => [s.plugin.name, s.pid])),
      },
      `datakit-ebpf started on kernel ${kernel} with ${hookSet}; flushing every ${this.config.intervalMs / 1000}s to ${displayUrl(this.config.datakitApiServer)}`,
    );
    if (this.config.pprofPort !== undefined) {
      this.status = startStatusServer(this.config.pprofHost ?? '127.0.0.1', this.config.pprofPort, this.metrics, () => this.statusReport(), this.log);
    }
    this.every(this.config.intervalMs, () => void this.tick());
    this.every(METRICS_LOG_EVERY_MS, () => this.log.info({ metrics: this.metrics.summary() }, 'collector metrics'));
    if (this.broken.size > 0) {
      void this.reportBroken();
      this.every(LASTERROR_EVERY_MS, () => void this.reportBroken());
    }
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.push(t);
  }

  private recordLoaderPids(): void {
    this.loaderPids?.recordLoaders(this.plugins.map((p) => p.loaderPid));
  }

  /** Tells DataKit which plugins cannot run (it shows an input's last error to the user). */
  private async reportBroken(): Promise<void> {
    if (this.config.dryRun) return;
    try {
      for (const msg of this.broken.values()) await this.uploader.reportLastError(LASTERROR_INPUT, msg);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, `could not report the broken plugins to DataKit: ${(err as Error).message}`);
    }
  }

  private statusReport(): unknown {
    return {
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      plugins: this.plugins.map((p) => ({ name: p.name, loaderPid: p.loaderPid })),
      broken: Object.fromEntries(this.broken),
      apiServer: displayUrl(this.config.datakitApiServer),
    };
  }

  /** One flush cycle for every plugin; cycles never overlap. Never rejects. */
  private tick(): Promise<void> {
    if (this.ticking) return this.ticking;
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    this.lastTickAt = Date.now();
    this.ticking = Promise.allSettled(this.plugins.map((p) => p.tick(nowNs)))
      .then((results) => {
        results.forEach((r, i) => {
          if (r.status === 'rejected') this.log.error({ plugin: this.plugins[i]?.name, err: (r.reason as Error)?.message }, `plugin ${this.plugins[i]?.name} failed this interval: ${(r.reason as Error)?.message}`);
        });
      })
      .finally(() => {
        this.ticking = undefined;
      });
    return this.ticking;
  }

  /**
   * Flushes the current interval, drains the spool (bounded), then closes the
   * plugins (which detach and unpin). From its first step no loader that
   * exits is restarted. Idempotent; never rejects.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    LoaderSupervisor.holdRestarts();
    this.stage = 'flushing';
    for (const t of this.timers) clearInterval(t);
    await this.starting?.catch(() => undefined);
    await this.ticking;
    await this.tick();
    this.stage = 'draining';
    if (this.delivery && !(await this.delivery.drain(DRAIN_ON_CLOSE_MS))) {
      this.log.warn({ spooledPoints: this.delivery.queueStats.points }, 'DataKit did not take everything before stopping; the rest stays in the spool for the next start');
    }
    await this.delivery?.close();
    this.log.info({ metrics: this.metrics.summary() }, 'collector metrics at stop');
    this.stage = 'detaching';
    const closed = await Promise.allSettled(this.plugins.map((p) => p.close()));
    closed.forEach((r, i) => {
      if (r.status === 'rejected') this.log.error({ plugin: this.plugins[i]?.name, err: (r.reason as Error)?.message }, `closing plugin ${this.plugins[i]?.name} failed: ${(r.reason as Error)?.message}`);
    });
    await this.uploader.close();
    await this.status?.close();
    this.stage = 'stopped';
  }

  /** What stopping now, without finishing close(), leaves unflushed: one sentence. */
  unflushed(): string {
    const q = this.delivery?.queueStats;
    const spooled =
      q && q.points > 0
        ? `${q.points} point(s) not yet delivered ${this.delivery!.durable ? 'stay in the spool for the next start' : 'are lost (no usable state directory)'}`
        : 'nothing waits in the spool';
    switch (this.stage) {
      case 'running':
      case 'flushing':
        return `the current interval (everything counted since ${new Date(this.lastTickAt).toISOString()}) was not flushed; ${spooled}`;
      case 'draining':
        return `the last interval was flushed; ${spooled}`;
      default:
        return 'everything was flushed; the eBPF programs were being detached';
    }
  }

  /** Stops at once. Idempotent; never throws. */
  destroy(): void {
    this.closed = true;
    LoaderSupervisor.holdRestarts();
    for (const t of this.timers) clearInterval(t);
    for (const p of this.plugins) {
      try {
        p.destroy();
      } catch (err) {
        this.log.error({ plugin: p.name, err: (err as Error).message }, `stopping plugin ${p.name} failed: ${(err as Error).message}`);
      }
    }
    this.delivery?.close().catch(() => undefined);
    this.uploader.destroy();
    this.status?.close().catch(() => undefined);
    this.stage = 'stopped';
  }
}
