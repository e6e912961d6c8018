// dnsflow inside the ebpf-net plugin: the loader parses and pairs DNS packets
// (native/dns) and sends summed lookups and learnt names; this turns them into
// points, every 30 s or every --interval if that is shorter, posts them to
// ebpf-net/dnsflow, and keeps the address -> domain cache netflow uses.
//
// The plugin's tick (every --interval, and once more when the daemon stops)
// always flushes; with an interval longer than DNS_FLUSH_MS a timer adds
// collects in between, never closer than DNS_FLUSH_MS apart before the next tick.
import type { Logger } from 'pino';
import type { Frame } from '../loader/frames';
import { fieldBytes, forEachRecord, readField, readString } from '../loader/frames';
import { DKE_COLLECT_DNS, DKE_FRAME_DNS_NAMES, DKE_FRAME_DNS_STATS, dke_dns_name } from '../loader/layout.generated';
import type { LoaderReady, LoaderSupervisor } from '../loader/supervisor';
import { ipText } from '../netflow/classify';
import type { PluginContext } from '../plugins/types';
import { DnsflowAggregator } from './aggregator';
import { DOMAIN_CACHE_DEFAULTS, DomainCache } from './domains';
import { foldDnsflow } from './fold';

export const DNSFLOW_INPUT = 'ebpf-net/dnsflow';
/** Upstream flushed dnsflow every 30 s whatever the interval. */
export const DNS_FLUSH_MS = 30_000;
/** A timer flush this close to the next tick is left to the tick. */
const TICK_SLACK_MS = 5_000;
/** Groups per flush before lookups are shed (and counted). */
const MAX_GROUPS = 65_536;

const N = dke_dns_name.fields;

export class DnsflowService {
  readonly domains = new DomainCache(DOMAIN_CACHE_DEFAULTS);
  private readonly agg: DnsflowAggregator;
  private timer?: NodeJS.Timeout;
  private lastTickMs = Date.now();
  private closed = false;
  private active = false;
  private lastShed = 0;

  constructor(
    private readonly ctx: PluginContext,
    private readonly loader: LoaderSupervisor,
    private readonly log: Logger,
  ) {
    this.agg = new DnsflowAggregator({ includeLoopback: ctx.config.includeLoopback, maxGroups: MAX_GROUPS, domainOf: (ip) => this.domains.lookup(ip) });
    loader.on('frame', (f) => this.onFrame(f));
    ctx.metrics.gauge('dnsflow_known_domains', () => this.domains.size);
  }

  private onFrame(f: Frame): void {
    try {
      if (f.type === DKE_FRAME_DNS_STATS) this.agg.ingest(f);
      else if (f.type === DKE_FRAME_DNS_NAMES) this.learn(f);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'dropping an undecodable dnsflow frame');
    }
  }

  private learn(f: Frame): void {
    const b = f.payload;
    forEachRecord(f, dke_dns_name, (r) => {
      this.domains.learn(ipText(fieldBytes(b, r, N.addr), readField(b, r, N.family)), readString(b, r, N.domain), readField(b, r, N.ttl_s));
    });
  }

  /** The domain `ip` was resolved from by a local client, '' if none is known. */
  domainOf(ip: string): string {
    return this.domains.lookup(ip);
  }

  onReady(r: LoaderReady): void {
    const wasActive = this.active;
    this.active = (r.info as { dns?: boolean }).dns === true;
    if (r.generation === 1 || this.active !== wasActive) {
      if (this.active) this.log.info({ ports: this.ctx.config.dnsPorts, timeoutMs: this.ctx.config.dnsTimeoutMs }, 'dnsflow: capturing DNS packets');
      else this.log.warn('dnsflow is off: DNS capture did not start (see the degraded lines)');
    }
    this.schedule();
  }

  /** The plugin's tick has collected (DNS included): flush. Never rejects. */
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
    this.timer = setTimeout(() => {
      // A timer's rejection would be nobody's to handle: say it here, never crash on it.
      this.collectAndFlush().catch((err: unknown) => this.log.error({ err: (err as Error).message }, `dnsflow: flushing failed: ${(err as Error).message}`));
    }, DNS_FLUSH_MS);
    this.timer.unref();
  }

  private async collectAndFlush(): Promise<void> {
    try {
      await this.loader.collect(0n, DKE_COLLECT_DNS);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'dnsflow: collecting from the loader failed; retried at the next flush');
    }
    await this.flush(BigInt(Date.now()) * 1_000_000n);
  }

  private async flush(nowNs: bigint): Promise<void> {
    this.schedule();
    const { points, folded } = foldDnsflow(this.agg.flush(nowNs, this.ctx.commonTags), this.ctx.config.maxFlows);
    if (folded > 0) {
      this.ctx.metrics.add('flows_folded', folded, { input: DNSFLOW_INPUT });
      this.log.warn({ folded, maxFlows: this.ctx.config.maxFlows }, `${folded} dnsflow flow(s) beyond --max-flows folded into one point per direction and transport (tags '*')`);
    }
    if (this.agg.shed > this.lastShed) {
      this.ctx.metrics.add('dnsflow_dropped', this.agg.shed - this.lastShed, { reason: 'groups_full' });
      this.log.warn({ lookups: this.agg.shed - this.lastShed }, 'dnsflow dropped lookups: too many distinct flows this flush');
      this.lastShed = this.agg.shed;
    }
    if (points.length === 0) return;
    try {
      const res = await this.ctx.uploader.write('network', DNSFLOW_INPUT, points);
      this.log.debug({ ...res }, 'dnsflow points queued');
    } catch (err) {
      this.log.error({ err: (err as Error).message }, `could not queue ${points.length} dnsflow point(s): ${(err as Error).message}`);
    }
  }

  /** Stops the timer; the daemon's last tick has flushed. Idempotent. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }
}
