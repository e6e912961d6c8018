// Wires one collector together: the enabled plugins (each with its supervised
// loader child and aggregators) and the shared uploader, driven by the flush
// interval. Owns the lifecycle: close() flushes what was collected, destroy()
// just stops.
import fs from 'node:fs';
import type { Logger } from 'pino';
import type { CollectorConfig } from '../config/types';
import { CollectorError } from '../errors';
import { PLUGIN_FACTORIES } from '../plugins';
import type { CollectorPlugin } from '../plugins/types';
import { Uploader } from '../upload/uploader';

export class Daemon {
  private readonly uploader: Uploader;
  private plugins: CollectorPlugin[] = [];
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private closed = false;

  constructor(
    private readonly config: CollectorConfig,
    private readonly log: Logger,
  ) {
    this.uploader = new Uploader({ baseUrl: config.datakitConnectUrl, logger: log });
  }

  /**
   * Starts every enabled plugin. One that cannot run here is logged and left
   * out; the daemon fails only when none can run.
   */
  async start(): Promise<void> {
    for (const w of this.config.warnings) this.log.warn(w);
    const ctx = {
      config: this.config,
      log: this.log,
      uploader: this.uploader,
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
        `none of the enabled plugins (${this.config.enabled.join(', ') || 'none'}) is implemented: enable ebpf-net with --enabled / enabled_plugins`,
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
        this.log.error({ plugin: plugin.name }, `plugin ${plugin.name} cannot run: ${(r.reason as Error).message}`);
        plugin.destroy();
      }
    });
    if (started.length === 0) throw firstError;
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
        loaderPid: started[0]!.pid,
        loaderPids: Object.fromEntries(started.map((s) => [s.plugin.name, s.pid])),
      },
      `datakit-ebpf started on kernel ${kernel} with ${hookSet}; flushing every ${this.config.intervalMs / 1000}s to ${this.config.datakitApiServer}`,
    );
    if (this.config.pidfile) fs.writeFileSync(this.config.pidfile, `${process.pid}\n`);
    this.timer = setInterval(() => void this.tick(), this.config.intervalMs);
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

  /** Flushes the current interval, then stops. Bounded by the uploader's timeout. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.ticking;
    await this.tick().catch(() => undefined);
    await Promise.all(this.plugins.map((p) => p.close()));
    await this.uploader.close();
    this.removePidfile();
  }

  /** Stops at once. Idempotent. */
  destroy(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const p of this.plugins) p.destroy();
    this.uploader.destroy();
    this.removePidfile();
  }

  private removePidfile(): void {
    if (!this.config.pidfile) return;
    try {
      fs.unlinkSync(this.config.pidfile);
    } catch {
      /* already gone */
    }
  }
}
