// dnsflow aggregation, daemon side: the loader parses and pairs DNS messages
// and sends lookups already summed per key (struct dke_dnsflow_stat); here
// they become dnsflow's tags, one point per {side, client, server,
// transport, family, rcode} per flush, with the count and the mean and
// maximum latency. The client's port is `*` (the loader sends 0 for it),
// as upstream did for the non-53 side.
import type { Point } from '../lineproto/point';
import { fieldBytes, forEachRecord, readField, type Frame } from '../loader/frames';
import { DKE_DNS_SIDE_SERVER, dke_dnsflow_stat } from '../loader/layout.generated';
import { ipText, ipType } from '../netflow/classify';

export interface DnsflowAggregatorOptions {
  /** Report lookups to or from loopback (upstream drops them, as netflow's --include-loopback). */
  includeLoopback: boolean;
  /** Groups per flush; lookups of further groups are shed and counted. */
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
}

const F = dke_dnsflow_stat.fields;
const IPPROTO_TCP = 6;

export class DnsflowAggregator {
  private groups = new Map<string, Group>();
  /** Lookups dropped because maxGroups groups were already open. */
  shed = 0;

  constructor(private readonly opts: DnsflowAggregatorOptions) {}

  get pendingGroups(): number {
    return this.groups.size;
  }

  /** A DKE_FRAME_DNS_STATS frame. */
  ingest(frame: Frame): void {
    const b = frame.payload;
    forEachRecord(frame, dke_dnsflow_stat, (r) => {
      const family = readField(b, r, F.family);
      const clientIp = ipText(fieldBytes(b, r, F.client_addr), family);
      const serverIp = ipText(fieldBytes(b, r, F.server_addr), family);
      const clientType = ipType(clientIp);
      const serverType = ipType(serverIp);
      if (!this.opts.includeLoopback && (clientType === 'loopback' || serverType === 'loopback')) return;
      const clientPort = portTag(readField(b, r, F.client_port));
      const serverPort = portTag(readField(b, r, F.server_port));
      const rcode = b.readInt32LE(r + F.rcode.offset);
      const server = readField(b, r, F.side) === DKE_DNS_SIDE_SERVER;
      const transport = readField(b, r, F.proto) === IPPROTO_TCP ? 'tcp' : 'udp';
      const fam = family === 2 ? 'IPv4' : 'IPv6';
      const key = [server ? 's' : 'c', fam, transport, clientIp, clientPort, serverIp, serverPort, rcode].join('|');
      let g = this.groups.get(key);
      if (!g) {
        if (this.groups.size >= this.opts.maxGroups) {
          this.shed += readField(b, r, F.count);
          return;
        }
        // src is always this host's side: the client's, or (a resolver
        // here) the server's, as netflow does.
        const src = server ? { ip: serverIp, port: serverPort, type: serverType } : { ip: clientIp, port: clientPort, type: clientType };
        const dst = server ? { ip: clientIp, port: clientPort, type: clientType } : { ip: serverIp, port: serverPort, type: serverType };
        g = {
          tags: {
            source: 'dnsflow',
            family: fam,
            direction: server ? 'incoming' : 'outgoing',
            transport,
            src_ip: src.ip,
            dst_ip: dst.ip,
            src_port: src.port,
            dst_port: dst.port,
            src_ip_type: src.type,
            dst_ip_type: dst.type,
            dst_domain: server ? '' : (this.opts.domainOf?.(serverIp) ?? ''),
            conn_side: server ? 'server' : 'client',
            client_ip: clientIp,
            client_port: clientPort,
            server_ip: serverIp,
            server_port: serverPort,
            // rcode is a field, as upstream: this tag keeps points of one flow
            // with different rcodes apart (same tags and time would overwrite).
            rcode_name: rcodeName(rcode),
          },
          rcode,
          count: 0,
          latencySum: 0,
          latencyMax: 0,
        };
        this.groups.set(key, g);
      }
      g.count += readField(b, r, F.count);
      g.latencySum += readField(b, r, F.latency_sum_ns);
      g.latencyMax = Math.max(g.latencyMax, readField(b, r, F.latency_max_ns));
    });
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
          latency: g.rcode === -1 || !g.count ? 0 : Math.round(g.latencySum / g.count),
          latency_max: g.latencyMax,
        },
        timestampNs,
      });
    }
    this.groups.clear();
    return points;
  }
}

function portTag(port: number): string {
  return port === 0 ? '*' : String(port);
}

/** The rcode's mnemonic (RFC 1035, 2136, 6891); -1 is our "no answer in time". */
export function rcodeName(rcode: number): string {
  const names: Record<number, string> = {
    [-1]: 'TIMEOUT',
    0: 'NOERROR',
    1: 'FORMERR',
    2: 'SERVFAIL',
    3: 'NXDOMAIN',
    4: 'NOTIMP',
    5: 'REFUSED',
    6: 'YXDOMAIN',
    7: 'YXRRSET',
    8: 'NXRRSET',
    9: 'NOTAUTH',
    10: 'NOTZONE',
    16: 'BADVERS',
  };
  return names[rcode] ?? `RCODE${rcode}`;
}
