// dnsflow inside the ebpf-net plugin: takes the loader's DNS packet stream,
// flushes points every 30 s or every --interval if that is shorter, posts
// them to ebpf-net/dnsflow, and counts what the kernel or we had to drop.
//
// The plugin's tick (every --interval, and once more when the daemon stops)
// always flushes; with an interval longer than DNS_FLUSH_MS a timer adds
// flushes in between, never closer than DNS_FLUSH_MS apart before the next tick.
import type { Logger } from 'pino';
import type { LoaderReady, LoaderSupervisor } from '../loader/supervisor';
import { NET_STREAM_DNS } from '../loader/plugins/dns';
import type { NetLoaderInfo } from '../loader/plugins/net';
import type { PluginContext } from '../plugins/types';
import { Dnsflow, type DnsflowStats } from './dnsflow';
import { DNS_TELEMETRY } from './record';

export const DNSFLOW_INPUT = 'ebpf-net/dnsflow';
/** Upstream flushed dnsflow every 30 s whatever the interval. */
export const DNS_FLUSH_MS = 30_000;
/** A timer flush this close to the next tick is left to the tick. */
const TICK_SLACK_MS = 5_000;

const DROP_REASONS: [keyof DnsflowStats, string][] = [
  ['malformedRecords', 'malformed_record'],
  ['pendingShed', 'pending_table_full'],
  ['groupsShed', 'groups_full'],
  ['tcpStreamsShed', 'tcp_streams_full'],
  ['tcpStreamsLost', 'tcp_stream_gap'],
];

export class DnsflowService {
  private readonly dnsflow: Dnsflow;
  private timer?: NodeJS.Timeout;
  private lastTickMs = Date.now();
  private closed = false;
  private active = false;
  private lastStats: DnsflowStats;
  private lastTelemetry = { generation: 0, values: [] as number[] };

  constructor(
    private readonly ctx: PluginContext,
    private readonly loader: LoaderSupervisor,
    private readonly log: Logger,
  ) {
    const { config } = ctx;
    this.dnsflow = new Dnsflow({ dnsPorts: config.dnsPorts, timeoutMs: config.dnsTimeoutMs, includeLoopback: config.includeLoopback });
    this.lastStats = this.dnsflow.stats();
    loader.on('event', (stream, records) => {
      if (stream === NET_STREAM_DNS) this.dnsflow.ingest(records);
    });
    ctx.metrics.gauge('dnsflow_pending_queries', () => this.dnsflow.pendingQueries);
    ctx.metrics.gauge('dnsflow_known_domains', () => this.dnsflow.domains.size);
  }

  /** The domain `ip` was resolved from by a local client, '' if none is known. */
  domainOf(ip: string): string {
    return this.dnsflow.domains.lookup(ip);
  }

  onReady(r: LoaderReady): void {
    const wasActive = this.active;
    this.active = (r.info as NetLoaderInfo).dns;
    if (r.generation === 1 || this.active !== wasActive) {
      if (this.active) this.log.info({ ports: this.ctx.config.dnsPorts, timeoutMs: this.ctx.config.dnsTimeoutMs }, 'dnsflow: capturing DNS packets');
      else this.log.warn('dnsflow is off: DNS capture did not start (see the degraded lines)');
    }
    this.schedule();
  }

  /** One flush; called by the plugin's tick. Never rejects. */
  async tick(nowNs: bigint): Promise<void> {
    this.lastTickMs = Date.now();
    await this.flush(nowNs);
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.closed || !this.active) return;
    const nextTickIn = this.lastTickMs + this.ctx.config.intervalMs - Date.now();
    if (DNS_FLUSH_MS > nextTickIn - TICK_SLACK_MS) return;
    this.timer = setTimeout(() => void this.flush(BigInt(Date.now()) * 1_000_000n), DNS_FLUSH_MS);
    this.timer.unref();
  }

  private async flush(nowNs: bigint): Promise<void> {
    this.schedule();
    const points = this.dnsflow.flush(process.hrtime.bigint(), nowNs, this.ctx.commonTags);
    this.reportDrops();
    await this.reportTelemetry();
    if (points.length === 0) return;
    try {
      const res = await this.ctx.uploader.write('network', DNSFLOW_INPUT, points);
      this.log.debug({ ...res }, 'dnsflow points queued');
    } catch (err) {
      this.log.error({ err: (err as Error).message }, `could not queue ${points.length} dnsflow point(s): ${(err as Error).message}`);
    }
  }

  private reportDrops(): void {
    const now = this.dnsflow.stats();
    const lost: Record<string, number> = {};
    for (const [k, reason] of DROP_REASONS) {
      const d = now[k] - this.lastStats[k];
      if (d > 0) lost[reason] = d;
    }
    this.lastStats = now;
    for (const [reason, d] of Object.entries(lost)) this.ctx.metrics.add('dnsflow_dropped', d, { reason });
    if (Object.keys(lost).length > 0) this.log.warn({ lost }, 'dnsflow dropped data this flush');
  }

  private async reportTelemetry(): Promise<void> {
    if (!this.active) return;
    const generation = this.loader.generation;
    let values: number[];
    try {
      values = await this.loader.request<number[]>('dnsTelemetry');
    } catch {
      return; // the loader is restarting; the next flush reads it
    }
    // A new loader has fresh kernel counters.
    const before = this.lastTelemetry.generation === generation ? this.lastTelemetry.values : [];
    this.lastTelemetry = { generation, values };
    const lostPackets = (values[DNS_TELEMETRY.ringbufFull] ?? 0) - (before[DNS_TELEMETRY.ringbufFull] ?? 0);
    if (lostPackets > 0) {
      this.ctx.metrics.add('kernel_dropped', lostPackets, { plugin: 'ebpf-net', what: 'dns_ringbuf_full' });
      this.log.warn({ lostPackets }, 'the kernel dropped DNS packets: the ring buffer was full');
    }
    const cut = (values[DNS_TELEMETRY.truncated] ?? 0) - (before[DNS_TELEMETRY.truncated] ?? 0);
    if (cut > 0) this.ctx.metrics.add('dnsflow_truncated_packets', cut);
  }

  /** Stops the timer; the daemon's last tick has flushed. Idempotent. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }
}
