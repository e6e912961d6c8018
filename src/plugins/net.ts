// The ebpf-net plugin: one loader child with the network BPF objects, and the
// netflow aggregator fed by it (dnsflow rides along: src/dnsflow/service.ts). Each flush is committed with its read-marks
// (src/netflow/marks.ts) so restarts neither lose nor double count; kernel
// entries of closed connections are deleted only after that commit.
import type { Logger } from 'pino';
import { DnsflowService } from '../dnsflow/service';
import type { Point } from '../lineproto/point';
import { LoaderSupervisor, type LoaderReady } from '../loader/supervisor';
import type { NetLoaderInfo, NetLoaderOptions } from '../loader/plugins/net';
import { NetflowAggregator } from '../netflow/aggregator';
import { MarksStore } from '../netflow/marks';
import { NetflowSource } from '../netflow/source';
import type { CollectorPlugin, PluginContext } from './types';

const NETFLOW_INPUT = 'ebpf-net/netflow';
const TELEMETRY_NAMES = ['tcp_map_full', 'udp_map_full', 'owner_map_full', 'ringbuf_full'];

export class NetPlugin implements CollectorPlugin {
  readonly name = 'ebpf-net' as const;
  private readonly loader: LoaderSupervisor;
  private readonly source: NetflowSource;
  private readonly netflow: NetflowAggregator;
  private readonly dns?: DnsflowService;
  private readonly log: Logger;
  private lastTelemetry: number[] = [];
  private readonly marks: MarksStore;
  private pinDir = '';
  /** The first snapshot of reused maps without persisted marks counts as already reported. */
  private baselineNextSnapshot = false;

  constructor(private readonly ctx: PluginContext) {
    const { config } = ctx;
    this.log = ctx.log.child({ plugin: this.name });
    const options: NetLoaderOptions = { ipv6Disabled: config.ipv6Disabled, cgroupPath: '', pinRoot: config.pinRoot, dnsPorts: config.dnsPorts };
    this.loader = new LoaderSupervisor({ plugin: 'net', options: { ...options } }, this.log);
    this.source = new NetflowSource(this.loader);
    const dns = config.dnsPorts.length > 0 ? new DnsflowService(ctx, this.loader, this.log) : undefined;
    this.dns = dns;
    this.netflow = new NetflowAggregator({ ephemeralPort: config.ephemeralPort, includeLoopback: config.includeLoopback, ...(dns ? { domainOf: (ip: string) => dns.domainOf(ip) } : {}) });
    this.marks = new MarksStore(config.stateDir);
    this.source.onClosed(
      (records, generation) => this.netflow.ingestClosed(records, generation),
      (err) => this.log.error({ err }, 'dropping an undecodable batch of close events'),
    );
    this.loader.on('ready', (r) => this.onReady(r));
  }

  private onReady(r: LoaderReady): void {
    if (r.generation > 1) this.ctx.metrics.add('loader_restarts', 1, { plugin: this.name });
    const info = r.info as NetLoaderInfo;
    this.dns?.onReady(r);
    this.netflow.setListeningPorts(info.listeningPorts);
    this.pinDir = info.pinDir;
    if (!info.mapsReused) {
      // Fresh kernel maps: every counter starts from 0.
      this.netflow.mapsRestarted(r.generation);
      if (r.generation === 1) this.marks.clear();
    } else if (r.generation === 1) {
      // An earlier daemon's maps kept counting while we were down: resume
      // from what it durably handed off.
      const persisted = this.ctx.uploader.durable ? this.marks.load(info.pinDir, (seq) => this.ctx.uploader.committed(seq)) : undefined;
      if (persisted) {
        this.netflow.restoreMarks(persisted.marks);
        this.log.info({ connections: persisted.marks.tcp.size, udpFlows: persisted.marks.udp.size, pinDir: info.pinDir }, 'resuming counters from the pinned maps and the last committed read-marks');
      } else {
        this.baselineNextSnapshot = true;
        this.log.warn({ pinDir: info.pinDir }, 'pinned maps found without read-marks: counting from now on (what they counted before is not reported)');
      }
    }
    if (r.generation > 1) this.log.info({ loaderPid: r.pid, generation: r.generation }, 'eBPF loader restarted');
  }

  start(): Promise<LoaderReady> {
    return this.loader.start();
  }

  get loaderPid(): number | undefined {
    return this.loader.childPid;
  }

  async tick(nowNs: bigint): Promise<void> {
    await this.dns?.tick(nowNs);
    let idle: Buffer[] = [];
    try {
      const snap = await this.source.snapshot();
      if (this.baselineNextSnapshot) {
        this.baselineNextSnapshot = false;
        this.netflow.ingestSnapshot(snap);
        this.netflow.flush(nowNs, this.ctx.commonTags);
      } else {
        idle = this.netflow.ingestSnapshot(snap);
      }
      this.reportTelemetry(snap.telemetry);
    } catch (err) {
      // The loader may be restarting; what was aggregated is still sent.
      this.log.warn({ err: (err as Error).message }, 'reading the eBPF maps failed this interval');
    }
    const points = this.netflow.flush(nowNs, this.ctx.commonTags);
    // Taken with the flush, synchronously: close events ingested from now on
    // belong to the next commit.
    const closed = this.netflow.closedToDelete();
    if (points.length > 0 && !(await this.commit(points))) return;
    try {
      await this.source.deleteTcp(closed);
      this.netflow.closedDeleted(closed);
      this.netflow.ingestUdpFinal(await this.source.deleteUdp(idle));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'removing finished flows from the eBPF maps failed; retried next interval');
    }
  }

  /** Hands the points to the spool together with the read-marks that produced them. */
  private async commit(points: Point[]): Promise<boolean> {
    const persist = this.ctx.uploader.durable && this.pinDir !== '';
    let prepared = false;
    try {
      const res = await this.ctx.uploader.write('network', NETFLOW_INPUT, points, {
        beforeAppend: (lastSeq) => {
          if (!persist) return;
          this.marks.prepare({ lastSeq, pinDir: this.pinDir, marks: this.netflow.marks() });
          prepared = true;
        },
      });
      if (prepared) this.marks.promote();
      this.log.debug({ ...res }, 'netflow interval committed');
      return true;
    } catch (err) {
      if (prepared) this.marks.abandon();
      this.log.error({ err: (err as Error).message }, `could not queue ${points.length} netflow point(s): ${(err as Error).message}`);
      return false;
    }
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

  /** A clean stop: the last interval is committed (the daemon ticks first), so pinned state goes too. */
  async close(): Promise<void> {
    this.dns?.close();
    await this.loader.close();
    this.marks.clear();
  }

  destroy(): void {
    this.dns?.close();
    this.loader.destroy();
  }
}
