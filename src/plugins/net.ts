// The ebpf-net plugin: the native loader (dke-loader net) with the netflow and
// DNS programs, the netflow aggregator fed by its per-flow deltas, and
// dnsflow riding along (src/dnsflow/service.ts). Each interval is one
// collect: the loader reports what changed since the last durable collect;
// the points go to the spool with the collect's id (src/netflow/collect-log.ts)
// and only then does the loader let go of the kernel counters it read
// (native/loader/flow_generations.h). A SIGKILL anywhere in between neither
// loses nor repeats a byte.
import type { Logger } from 'pino';
import { DnsflowService } from '../dnsflow/service';
import type { Point } from '../lineproto/point';
import { forEachRecord, readField, readString, readTelemetry, type Frame } from '../loader/frames';
import {
  DKE_COLLECT_DNS,
  DKE_COLLECT_FLOWS,
  DKE_FRAME_FLOWS,
  DKE_FRAME_PROCS,
  DKE_FRAME_TELEMETRY,
  dke_proc_name,
} from '../loader/layout.generated';
import { LoaderSupervisor, type LoaderReady } from '../loader/supervisor';
import { NetflowAggregator } from '../netflow/aggregator';
import { CollectLog } from '../netflow/collect-log';
import { foldNetflow } from '../netflow/fold';
import { LOADER_BIN } from '../paths';
import type { CollectorPlugin, PluginContext } from './types';

const NETFLOW_INPUT = 'ebpf-net/netflow';
/** Pins live under here by default; `datakit-ebpf cleanup` removes it. */
export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/datakit-ebpf';
/** Counters of loss or skipped work (the rest of the telemetry is informational). */
const LOSS_COUNTERS = new Set(['flow_map_full', 'flow_create_failed', 'socket_state_failed', 'listen_map_full', 'dns_ringbuf_full', 'dns_pending_shed', 'dns_groups_shed', 'dns_tcp_streams_shed', 'dns_tcp_stream_gaps', 'orphan_skipped', 'skipped_runs']);
/** Runs the kernel skipped whose work another program does later (native/loader/net_loader.cc, kRedoneWhenSkipped): not a loss. */
const REDONE_COUNTERS = new Set(['skipped_runs_redone']);
/** pid -> process name entries kept (names of pids seen lately). */
const PROC_NAMES_MAX = 65_536;

export interface NetLoaderInfo {
  listeningPorts: number[];
  pinDir: string;
  mapsReused: boolean;
  dns: boolean;
  /** How long the programs did nothing for want of a reader (--orphan-timeout), before this start. */
  quietSeconds: number;
}

export class NetPlugin implements CollectorPlugin {
  readonly name = 'ebpf-net' as const;
  private readonly loader: LoaderSupervisor;
  private readonly netflow: NetflowAggregator;
  private readonly dns?: DnsflowService;
  private readonly log: Logger;
  private readonly collects: CollectLog;
  private readonly procNames = new Map<number, string>();
  private lastTelemetry = new Map<string, number>();
  private durable = false;

  constructor(private readonly ctx: PluginContext) {
    const { config } = ctx;
    this.log = ctx.log.child({ plugin: this.name });
    const args = ['net', '--pin-root', config.pinRoot, '--ephemeral-port', String(config.ephemeralPort)];
    if (config.dnsPorts.length > 0) args.push('--dns-ports', config.dnsPorts.join(','), '--dns-timeout-ms', String(config.dnsTimeoutMs));
    // A collect is due every interval: programs must not think themselves
    // orphaned between two of them.
    args.push('--orphan-timeout-ms', String(Math.max(config.orphanTimeoutMs, 3 * config.intervalMs)));
    this.loader = new LoaderSupervisor({ plugin: 'net', file: LOADER_BIN, args }, this.log);
    const dns = config.dnsPorts.length > 0 ? new DnsflowService(ctx, this.loader, this.log) : undefined;
    this.dns = dns;
    this.netflow = new NetflowAggregator({
      ephemeralPort: config.ephemeralPort,
      includeLoopback: config.includeLoopback,
      processName: (pid) => this.procNames.get(pid),
      ...(dns ? { domainOf: (ip: string) => dns.domainOf(ip) } : {}),
    });
    this.collects = new CollectLog(config.stateDir);
    this.loader.on('frame', (f, _generation, late) => this.onFrame(f, late));
    this.loader.on('ready', (r) => this.onReady(r));
  }

  private onFrame(f: Frame, late: boolean): void {
    try {
      // A late collect's flows were dropped with its interval and were never
      // committed: the loader reports its generations again with the next one.
      if (f.type === DKE_FRAME_FLOWS) {
        if (!late) this.netflow.ingest(f);
      } else if (f.type === DKE_FRAME_PROCS) this.learnProcNames(f);
      else if (f.type === DKE_FRAME_TELEMETRY) this.reportTelemetry(f);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'dropping an undecodable frame from the loader');
    }
  }

  private learnProcNames(f: Frame): void {
    if (this.procNames.size > PROC_NAMES_MAX) this.procNames.clear();
    const b = f.payload;
    const F = dke_proc_name.fields;
    forEachRecord(f, dke_proc_name, (r) => this.procNames.set(readField(b, r, F.pid), readString(b, r, F.name)));
  }

  private onReady(r: LoaderReady): void {
    if (r.generation > 1) this.ctx.metrics.add('loader_restarts', 1, { plugin: this.name });
    const info = r.info as NetLoaderInfo;
    this.dns?.onReady(r);
    this.netflow.setListeningPorts(info.listeningPorts);
    this.durable = this.ctx.uploader.durable && info.pinDir !== '';
    if (r.generation === 1) {
      // What an earlier daemon durably handed off is the loader's baseline.
      const last = this.durable && info.mapsReused ? this.collects.load((q) => this.ctx.uploader.committed(q)) : 0n;
      this.loader.resume(last);
      if (info.mapsReused) this.log.info({ pinDir: info.pinDir, lastDurableCollect: String(last) }, 'resuming counters from the pinned maps and the last durable collect');
    } else {
      this.loader.resume(this.collects.lastCommitted);
      this.log.info({ loaderPid: r.pid, generation: r.generation }, 'eBPF loader restarted');
    }
    if (info.quietSeconds > 0) {
      this.log.warn(
        { quietSeconds: info.quietSeconds },
        `the eBPF programs were quiet for ${Math.round(info.quietSeconds)} s (no collector read them for --orphan-timeout): connections of that time are not reported`,
      );
    }
  }

  start(): Promise<LoaderReady> {
    return this.loader.start();
  }

  get loaderPid(): number | undefined {
    return this.loader.childPid;
  }

  async tick(nowNs: bigint): Promise<void> {
    const seq = this.collects.next();
    try {
      await this.loader.collect(seq, DKE_COLLECT_FLOWS | (this.dns ? DKE_COLLECT_DNS : 0));
    } catch (err) {
      // The loader may be restarting: the kernel kept counting, the next
      // collect reports it. What this one delivered is dropped, not sent twice.
      this.netflow.flush(nowNs, this.ctx.commonTags);
      this.log.warn({ err: (err as Error).message }, 'collecting from the eBPF loader failed this interval; its counts come with the next one');
      await this.dns?.tick(nowNs);
      return;
    }
    await this.dns?.tick(nowNs);
    const { points, folded } = foldNetflow(this.netflow.flush(nowNs, this.ctx.commonTags), this.ctx.config.maxFlows);
    if (folded > 0) {
      this.ctx.metrics.add('flows_folded', folded, { input: NETFLOW_INPUT });
      this.log.warn({ folded, maxFlows: this.ctx.config.maxFlows }, `${folded} netflow flow(s) beyond --max-flows folded into one point per direction and transport (tags '*')`);
    }
    // Nothing to keep: the loader may let the collect's generation go at once.
    if (points.length === 0 || (await this.commit(seq, points))) this.loader.commit(seq);
  }

  /** Hands the points to the spool together with the collect id that produced them. */
  private async commit(seq: bigint, points: Point[]): Promise<boolean> {
    try {
      const res = await this.ctx.uploader.write('network', NETFLOW_INPUT, points, {
        beforeAppend: (lastSpoolSeq) => {
          if (this.durable) this.collects.prepare(seq, lastSpoolSeq);
        },
      });
      this.collects.markCommitted(seq);
      this.log.debug({ ...res }, 'netflow interval committed');
      return true;
    } catch (err) {
      this.log.error({ err: (err as Error).message }, `could not queue ${points.length} netflow point(s): ${(err as Error).message}; they are collected again next interval`);
      return false;
    }
  }

  private reportTelemetry(f: Frame): void {
    const lost: Record<string, number> = {};
    const redone: Record<string, number> = {};
    for (const [name, v] of readTelemetry(f)) {
      const d = v - (this.lastTelemetry.get(name) ?? 0);
      this.lastTelemetry.set(name, v);
      if (d > 0 && LOSS_COUNTERS.has(name)) lost[name] = d;
      if (d > 0 && REDONE_COUNTERS.has(name)) redone[name] = d;
    }
    for (const [n, d] of Object.entries(lost)) this.ctx.metrics.add('kernel_dropped', d, { plugin: this.name, what: n });
    if (Object.keys(lost).length > 0) this.log.warn({ lost }, 'the kernel side dropped or skipped records this interval');
    if (Object.keys(redone).length > 0) this.log.debug({ redone }, 'the kernel skipped program runs whose work is done again later: nothing lost');
  }

  /** A clean stop: the last interval is committed (the daemon ticks first), so pinned state goes too. */
  async close(): Promise<void> {
    this.dns?.close();
    await this.loader.close();
    try {
      this.collects.clear();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not remove the netflow collect log');
    }
  }

  destroy(): void {
    this.dns?.close();
    this.loader.destroy();
  }
}
