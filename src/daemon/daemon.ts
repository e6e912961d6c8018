// Wires one collector together: the enabled plugins (each with its supervised
// loader child and aggregators), the durable delivery queue in front of the
// uploader, the collector's own metrics and status endpoint, all driven by
// the flush interval. Owns the lifecycle: close() flushes what was collected
// and drains the spool for a bounded time, destroy() just stops.
import path from 'node:path';
import type { Logger } from 'pino';
import type { CollectorConfig } from '../config/types';
import { CollectorError } from '../errors';
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

export class Daemon {
  private readonly uploader: Uploader;
  private readonly metrics = new Metrics();
  private delivery?: Delivery;
  private plugins: CollectorPlugin[] = [];
  private broken = new Map<string, string>();
  private timers: NodeJS.Timeout[] = [];
  private status?: StatusServer;
  private ticking?: Promise<void>;
  private closed = false;
  private readonly startedAt = Date.now();

  constructor(
    private readonly config: CollectorConfig,
    private readonly log: Logger,
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
  async start(): Promise<void> {
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
    const results = await Promise.allSettled(candidates.map((p) => p.start()));
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
    if (started.length === 0) {
      await this.reportBroken();
      throw firstError;
    }
    this.plugins = started.map((s) => s.plugin);

    const kernel = started[0]!.kernel;
    const hookSet = started.map((s) => `${s.plugin.name}: ${s.hookSet}`).join('; ');
    this.log.info(
      {
        kernel,
        hookSet,
        plugins: this.plugins.map((p) => p.name),
        intervalMs: this.config.intervalMs,
        apiServer: this.config.datakitApiServer,
        host: this.config.hostname,
        stateDir: this.config.stateDir,
        loaderPid: started[0]!.pid,
        loaderPids: Object.fromEntries(started.map((s) => [s.plugin.name, s.pid])),
      },
      `datakit-ebpf started on kernel ${kernel} with ${hookSet}; flushing every ${this.config.intervalMs / 1000}s to ${this.config.datakitApiServer}`,
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

  /** Tells DataKit which plugins cannot run (it shows an input's last error to the user). */
  private async reportBroken(): Promise<void> {
    if (this.config.dryRun) return;
    for (const msg of this.broken.values()) await this.uploader.reportLastError(LASTERROR_INPUT, msg);
  }

  private statusReport(): unknown {
    return {
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      plugins: this.plugins.map((p) => ({ name: p.name, loaderPid: p.loaderPid })),
      broken: Object.fromEntries(this.broken),
      apiServer: this.config.datakitApiServer,
    };
  }

  /** One flush cycle for every plugin; cycles never overlap. */
  private tick(): Promise<void> {
    if (this.ticking) return this.ticking;
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    this.ticking = Promise.all(this.plugins.map((p) => p.tick(nowNs)))
      .then(() => undefined)
      .finally(() => {
        this.ticking = undefined;
      });
    return this.ticking;
  }

  /** Flushes the current interval, drains the spool (bounded), then stops. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.ticking;
    await this.tick().catch(() => undefined);
    if (this.delivery && !(await this.delivery.drain(DRAIN_ON_CLOSE_MS))) {
      this.log.warn({ spooledPoints: this.delivery.queueStats.points }, 'DataKit did not take everything before stopping; the rest stays in the spool for the next start');
    }
    await this.delivery?.close();
    this.log.info({ metrics: this.metrics.summary() }, 'collector metrics at stop');
    await Promise.all(this.plugins.map((p) => p.close()));
    await this.uploader.close();
    await this.status?.close();
  }

  /** Stops at once. Idempotent. */
  destroy(): void {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    for (const p of this.plugins) p.destroy();
    void this.delivery?.close();
    this.uploader.destroy();
    void this.status?.close();
  }
}
