// dnsflow aggregation: transactions in, one point per {client, server,
// transport, family, rcode} per flush out, with the number of transactions,
// their mean and maximum latency. The client's port collapses to `*` (any
// port that is not a DNS port does, as upstream did for the non-53 side).
import type { Point } from '../lineproto/point';
import { ipType } from '../netflow/classify';
import { rcodeName } from './parser';
import { RCODE_TIMEOUT, type DnsTransaction } from './pairing';

export interface DnsflowAggregatorOptions {
  /** Ports that stay as they are in src_port/dst_port; others become `*`. */
  dnsPorts: readonly number[];
  /** Report lookups to or from loopback (upstream drops them, as netflow's --include-loopback). */
  includeLoopback: boolean;
  /** Groups per flush; transactions of further groups are shed and counted. */
  maxGroups: number;
  /** The server's domain, when an answer named its address. */
  domainOf?: (ip: string) => string;
}

interface Group {
  tags: Record<string, string>;
  rcode: number;
  count: number;
  latencySum: number;
  latencyMax: number;
  answered: number;
}

export class DnsflowAggregator {
  private groups = new Map<string, Group>();
  private readonly dnsPorts: ReadonlySet<number>;
  /** Transactions dropped because maxGroups groups were already open. */
  shed = 0;

  constructor(private readonly opts: DnsflowAggregatorOptions) {
    this.dnsPorts = new Set(opts.dnsPorts);
  }

  get pendingGroups(): number {
    return this.groups.size;
  }

  add(t: DnsTransaction): void {
    const srcType = ipType(t.clientIp);
    const dstType = ipType(t.serverIp);
    if (!this.opts.includeLoopback && (srcType === 'loopback' || dstType === 'loopback')) return;
    const srcPort = this.port(t.clientPort);
    const dstPort = this.port(t.serverPort);
    const key = [t.family, t.transport, t.clientIp, srcPort, t.serverIp, dstPort, t.rcode].join('|');
    let g = this.groups.get(key);
    if (!g) {
      if (this.groups.size >= this.opts.maxGroups) {
        this.shed++;
        return;
      }
      g = {
        tags: {
          source: 'dnsflow',
          family: t.family,
          direction: 'outgoing',
          transport: t.transport,
          src_ip: t.clientIp,
          dst_ip: t.serverIp,
          src_port: srcPort,
          dst_port: dstPort,
          src_ip_type: srcType,
          dst_ip_type: dstType,
          dst_domain: this.opts.domainOf?.(t.serverIp) ?? '',
          conn_side: 'client',
          client_ip: t.clientIp,
          client_port: srcPort,
          server_ip: t.serverIp,
          server_port: dstPort,
          // rcode is a field, as upstream: this tag keeps points of one flow
          // with different rcodes apart (same tags and time would overwrite).
          rcode_name: rcodeName(t.rcode),
        },
        rcode: t.rcode,
        count: 0,
        latencySum: 0,
        latencyMax: 0,
        answered: 0,
      };
      this.groups.set(key, g);
    }
    g.count++;
    if (t.rcode !== RCODE_TIMEOUT) {
      g.answered++;
      g.latencySum += t.latencyNs;
      if (t.latencyNs > g.latencyMax) g.latencyMax = t.latencyNs;
    }
  }

  private port(p: number): string {
    return this.dnsPorts.has(p) ? String(p) : '*';
  }

  /** The flush's points; starts a new one. `commonTags` never override dnsflow's own. */
  flush(timestampNs: bigint, commonTags: Record<string, string>): Point[] {
    const points: Point[] = [];
    for (const g of this.groups.values()) {
      points.push({
        measurement: 'dnsflow',
        tags: { ...commonTags, ...g.tags },
        fields: {
          rcode: g.rcode,
          count: g.count,
          // Mean and max of answered lookups; a timeout has no latency (0).
          latency: g.answered ? Math.round(g.latencySum / g.answered) : 0,
          latency_max: g.latencyMax,
        },
        timestampNs,
      });
    }
    this.groups.clear();
    return points;
  }
}
