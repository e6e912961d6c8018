// The ebpf-net plugin: one loader child with the network BPF objects, and the
// netflow aggregator fed by it.
import type { Logger } from 'pino';
import { LoaderSupervisor, type LoaderReady } from '../loader/supervisor';
import type { NetLoaderInfo, NetLoaderOptions } from '../loader/plugins/net';
import { NetflowAggregator } from '../netflow/aggregator';
import { NetflowSource } from '../netflow/source';
import type { CollectorPlugin, PluginContext } from './types';

const NETFLOW_INPUT = 'ebpf-net/netflow';
const TELEMETRY_NAMES = ['tcp_map_full', 'udp_map_full', 'owner_map_full', 'ringbuf_full'];

export class NetPlugin implements CollectorPlugin {
  readonly name = 'ebpf-net' as const;
  private readonly loader: LoaderSupervisor;
  private readonly source: NetflowSource;
  private readonly netflow: NetflowAggregator;
  private readonly log: Logger;
  private lastTelemetry: number[] = [];

  constructor(private readonly ctx: PluginContext) {
    const { config } = ctx;
    this.log = ctx.log.child({ plugin: this.name });
    const options: NetLoaderOptions = { ipv6Disabled: config.ipv6Disabled, cgroupPath: '' };
    this.loader = new LoaderSupervisor({ plugin: 'net', options: { ...options } }, this.log);
    this.source = new NetflowSource(this.loader);
    this.netflow = new NetflowAggregator({ ephemeralPort: config.ephemeralPort, includeLoopback: config.includeLoopback });
    this.source.onClosed(
      (records, generation) => this.netflow.ingestClosed(records, generation),
      (err) => this.log.error({ err }, 'dropping an undecodable batch of close events'),
    );
    this.loader.on('ready', (r) => this.onReady(r));
  }

  private onReady(r: LoaderReady): void {
    if (r.generation > 1) this.ctx.metrics.add('loader_restarts', 1, { plugin: this.name });
    this.netflow.setListeningPorts((r.info as NetLoaderInfo).listeningPorts);
    if (r.generation > 1) this.log.info({ loaderPid: r.pid, generation: r.generation }, 'eBPF loader restarted');
  }

  start(): Promise<LoaderReady> {
    return this.loader.start();
  }

  get loaderPid(): number | undefined {
    return this.loader.childPid;
  }

  async tick(nowNs: bigint): Promise<void> {
    try {
      const snap = await this.source.snapshot();
      const idle = this.netflow.ingestSnapshot(snap);
      this.netflow.ingestUdpFinal(await this.source.deleteUdp(idle));
      this.reportTelemetry(snap.telemetry);
    } catch (err) {
      // The loader may be restarting; what was aggregated is still sent.
      this.log.warn({ err: (err as Error).message }, 'reading the eBPF maps failed this interval');
    }
    const points = this.netflow.flush(nowNs, this.ctx.commonTags);
    if (points.length === 0) return;
    const res = await this.ctx.uploader.write('network', NETFLOW_INPUT, points);
    this.log.debug({ ...res }, 'netflow interval queued');
  }

  private reportTelemetry(t: number[]): void {
    const lost: Record<string, number> = {};
    TELEMETRY_NAMES.forEach((n, i) => {
      const d = (t[i] ?? 0) - (this.lastTelemetry[i] ?? 0);
      if (d > 0) lost[n] = d;
    });
    this.lastTelemetry = t;
    for (const [n, d] of Object.entries(lost)) this.ctx.metrics.add('kernel_dropped', d, { plugin: this.name, what: n });
    if (Object.keys(lost).length > 0) this.log.warn({ lost }, 'the kernel side dropped records this interval');
  }

  async close(): Promise<void> {
    await this.loader.close();
  }

  destroy(): void {
    this.loader.destroy();
  }
}
