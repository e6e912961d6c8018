// Wires one collector together: the supervised loader child, the netflow
// aggregator and the uploader, driven by the flush interval. Owns the
// lifecycle: close() flushes what was collected, destroy() just stops.
import fs from 'node:fs';
import os from 'node:os';
import type { Logger } from 'pino';
import type { CollectorConfig } from '../config/types';
import { CollectorError } from '../errors';
import { LoaderSupervisor, type LoaderReady } from '../loader/supervisor';
import { NetflowAggregator } from '../netflow/aggregator';
import { Uploader } from '../upload/uploader';

const NETFLOW_INPUT = 'ebpf-net/netflow';

export class Daemon {
  private readonly loader: LoaderSupervisor;
  private readonly netflow: NetflowAggregator;
  private readonly uploader: Uploader;
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private closed = false;
  private readonly commonTags: Record<string, string>;

  constructor(
    private readonly config: CollectorConfig,
    private readonly log: Logger,
  ) {
    this.loader = new LoaderSupervisor({ ipv6Disabled: config.ipv6Disabled, cgroupPath: '' }, log);
    this.netflow = new NetflowAggregator({ ephemeralPort: config.ephemeralPort, includeLoopback: config.includeLoopback });
    this.uploader = new Uploader({ baseUrl: config.datakitConnectUrl, logger: log });
    this.commonTags = { ...config.tags, host: config.hostname, service: config.service };
    this.loader.on('closed', (records, generation) => this.netflow.ingestClosed(records, generation));
    this.loader.on('ready', (r) => this.onLoaderReady(r));
  }

  private onLoaderReady(r: LoaderReady): void {
    this.netflow.setListeningPorts(r.listeningPorts);
    if (r.generation > 1) this.log.info({ loaderPid: r.pid, generation: r.generation }, 'eBPF loader restarted');
  }

  async start(): Promise<void> {
    if (!this.config.enabled.includes('ebpf-net')) {
      throw new CollectorError('NOT_IMPLEMENTED', 'only the ebpf-net plugin is implemented so far: add ebpf-net to --enabled / enabled_plugins');
    }
    if (this.config.enabled.includes('ebpf-bash')) {
      this.log.warn('plugin ebpf-bash is not implemented yet; running ebpf-net only');
    }
    for (const w of this.config.warnings) this.log.warn(w);
    const ready = await this.loader.start();
    this.netflow.setListeningPorts(ready.listeningPorts);
    for (const d of ready.hookSet.degraded) this.log.warn(`degraded: ${d}`);
    this.log.info(
      {
        kernel: ready.kernel,
        hookSet: ready.hookSet.name,
        programs: ready.hookSet.attached.filter((a) => a.ok).map((a) => a.section),
        plugins: this.config.enabled,
        intervalMs: this.config.intervalMs,
        apiServer: this.config.datakitApiServer,
        host: this.config.hostname,
        loaderPid: ready.pid,
      },
      `datakit-ebpf started on kernel ${ready.kernel} with ${ready.hookSet.name}; flushing every ${this.config.intervalMs / 1000}s to ${this.config.datakitApiServer}`,
    );
    if (this.config.pidfile) fs.writeFileSync(this.config.pidfile, `${process.pid}\n`);
    this.timer = setInterval(() => void this.tick(), this.config.intervalMs);
  }

  /** One flush cycle; cycles never overlap. */
  private tick(): Promise<void> {
    if (this.ticking) return this.ticking;
    this.ticking = this.collectAndSend().finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  private async collectAndSend(): Promise<void> {
    try {
      const snap = await this.loader.snapshot();
      const idle = this.netflow.ingestSnapshot(snap);
      this.netflow.ingestUdpFinal(await this.loader.deleteUdp(idle));
      this.reportTelemetry(snap.telemetry);
    } catch (err) {
      // The loader may be restarting; what was aggregated is still sent.
      this.log.warn({ err: (err as Error).message }, 'reading the eBPF maps failed this interval');
    }
    const points = this.netflow.flush(BigInt(Date.now()) * 1_000_000n, this.commonTags);
    if (points.length === 0) return;
    const res = await this.uploader.write('network', NETFLOW_INPUT, points);
    this.log.debug({ ...res }, 'netflow interval sent');
  }

  private lastTelemetry: number[] = [];
  private reportTelemetry(t: number[]): void {
    const names = ['tcp_map_full', 'udp_map_full', 'owner_map_full', 'ringbuf_full'];
    const lost: Record<string, number> = {};
    names.forEach((n, i) => {
      const d = (t[i] ?? 0) - (this.lastTelemetry[i] ?? 0);
      if (d > 0) lost[n] = d;
    });
    this.lastTelemetry = t;
    if (Object.keys(lost).length > 0) this.log.warn({ lost }, 'the kernel side dropped records this interval');
  }

  get loaderPid(): number | undefined {
    return this.loader.childPid;
  }

  /** Flushes the current interval, then stops. Bounded by the uploader's timeout. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.ticking;
    await this.tick().catch(() => undefined);
    await this.loader.close();
    await this.uploader.close();
    this.removePidfile();
  }

  /** Stops at once. Idempotent. */
  destroy(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.loader.destroy();
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

export const hostKernel = (): string => os.release();
