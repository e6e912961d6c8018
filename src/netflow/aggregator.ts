// netflow aggregation, daemon side: the kernel already sums per flow key and
// the loader sends what changed since the last durable collect (struct
// dke_flow_delta), so an interval costs O(changed flows), never O(sockets).
// Here a kernel key becomes netflow's tags (address text and types,
// direction of connections older than us, `*` ports, process and domain
// names), and keys that end up with the same tags fold into one point.
import type { Point } from '../lineproto/point';
import { fieldBytes, forEachRecord, readField, readString, type Frame } from '../loader/frames';
import { dke_flow_delta, dke_flow_key, dke_flow_stats } from '../loader/layout.generated';
import { collapsePort, endpoints, IPPROTO_TCP, ipType, isZeroIp, resolveDirection, type DirectionCode, type Endpoints, type IpType } from './classify';
import { DKE_DIR_INCOMING } from '../loader/layout.generated';

export interface NetflowOptions {
  ephemeralPort: number;
  includeLoopback: boolean;
  /** The domain an address was resolved from (dnsflow's cache), '' if unknown. */
  domainOf?: (ip: string) => string;
  /** The process's own name for a pid (the loader's DKE_FRAME_PROCS), undefined if unknown. */
  processName?: (pid: number) => string | undefined;
}

interface FlowGroup {
  tags: Record<string, string>;
  tcp: boolean;
  bytesRead: number;
  bytesWritten: number;
  retransmits: number;
  established: number;
  closed: number;
  rttSum: number;
  rttVarSum: number;
  rttCount: number;
}

const ADDR_CACHE_MAX = 65536;
const K = dke_flow_key.fields;
const S = dke_flow_stats.fields;
const KEY = dke_flow_delta.fields.key.offset;
const DELTA = dke_flow_delta.fields.delta.offset;

export class NetflowAggregator {
  private groups = new Map<string, FlowGroup>();
  private addrCache = new Map<string, { ep: Endpoints; srcType: IpType; dstType: IpType }>();
  private listening = new Set<number>();

  constructor(private readonly opts: NetflowOptions) {}

  setListeningPorts(ports: Iterable<number>): void {
    this.listening = new Set(ports);
  }

  /** A DKE_FRAME_FLOWS frame: one delta per changed kernel flow key. */
  ingest(frame: Frame): void {
    const buf = frame.payload;
    forEachRecord(frame, dke_flow_delta, (rec) => {
      const k = rec + KEY;
      const d = rec + DELTA;
      const g = this.group(buf, k);
      if (!g) return;
      g.bytesWritten += readField(buf, d, S.bytes_sent);
      g.bytesRead += readField(buf, d, S.bytes_received);
      g.retransmits += readField(buf, d, S.retransmits);
      g.established += readField(buf, d, S.established);
      g.closed += readField(buf, d, S.closed);
      g.rttSum += readField(buf, d, S.rtt_sum_us);
      g.rttVarSum += readField(buf, d, S.rttvar_sum_us);
      g.rttCount += readField(buf, d, S.rtt_count);
    });
  }

  /**
   * Address text and types per address pair: the same few peers recur in
   * every interval, and formatting them is most of the per-record cost.
   */
  private addresses(local: Buffer, remote: Buffer, family: number): { ep: Endpoints; srcType: IpType; dstType: IpType } {
    const key = `${family}${local.toString('latin1')}${remote.toString('latin1')}`;
    let a = this.addrCache.get(key);
    if (!a) {
      const ep = endpoints({ localAddr: local, remoteAddr: remote, family, localPort: 0, remotePort: 0, direction: 0 });
      a = { ep, srcType: ipType(ep.localIp), dstType: ipType(ep.remoteIp) };
      if (this.addrCache.size >= ADDR_CACHE_MAX) this.addrCache.clear();
      this.addrCache.set(key, a);
    }
    return a;
  }

  private group(buf: Buffer, k: number): FlowGroup | undefined {
    const family = readField(buf, k, K.family);
    const { ep, srcType, dstType } = this.addresses(fieldBytes(buf, k, K.local_addr), fieldBytes(buf, k, K.remote_addr), family);
    if (isZeroIp(ep.localIp) || isZeroIp(ep.remoteIp)) return undefined;
    if (!this.opts.includeLoopback && srcType === 'loopback' && dstType === 'loopback') return undefined;

    const localPort = readField(buf, k, K.local_port);
    const remotePort = readField(buf, k, K.remote_port);
    const tcp = readField(buf, k, K.proto) === IPPROTO_TCP;
    const direction = readField(buf, k, K.direction) as DirectionCode;
    const incoming = resolveDirection({ localAddr: buf, remoteAddr: buf, family, localPort, remotePort, direction }, this.listening) === DKE_DIR_INCOMING;
    const srcPort = incoming ? String(localPort) : collapsePort(localPort, this.opts.ephemeralPort);
    const dstPort = incoming ? collapsePort(remotePort, this.opts.ephemeralPort) : String(remotePort);
    const pidNum = readField(buf, k, K.pid);
    const pid = String(pidNum);
    const comm = this.opts.processName?.(pidNum) ?? readString(buf, k, K.comm);
    const netns = String(readField(buf, k, K.netns));
    const key = [ep.family, incoming ? 'i' : 'o', tcp ? 't' : 'u', ep.localIp, ep.remoteIp, srcPort, dstPort, pid, comm, netns].join('|');
    let g = this.groups.get(key);
    if (g) return g;

    const server = incoming ? { ip: ep.localIp, port: srcPort, type: srcType } : { ip: ep.remoteIp, port: dstPort, type: dstType };
    const client = incoming ? { ip: ep.remoteIp, port: dstPort, type: dstType } : { ip: ep.localIp, port: srcPort, type: srcType };
    g = {
      tags: {
        source: 'netflow',
        family: ep.family,
        direction: incoming ? 'incoming' : 'outgoing',
        transport: tcp ? 'tcp' : 'udp',
        src_ip: ep.localIp,
        dst_ip: ep.remoteIp,
        src_port: srcPort,
        dst_port: dstPort,
        src_ip_type: srcType,
        dst_ip_type: dstType,
        pid,
        process_name: comm,
        netns,
        dst_domain: this.opts.domainOf?.(ep.remoteIp) ?? '',
        dst_nat_ip: 'N/A',
        dst_nat_port: 'N/A',
        conn_side: incoming ? 'server' : 'client',
        client_ip: client.ip,
        client_port: client.port,
        client_ip_type: client.type,
        server_ip: server.ip,
        server_port: server.port,
        // Upstream took this from the wrong side for incoming flows; ours is the server's.
        server_ip_type: server.type,
        server_domain: this.opts.domainOf?.(server.ip) ?? '',
      },
      tcp,
      bytesRead: 0,
      bytesWritten: 0,
      retransmits: 0,
      established: 0,
      closed: 0,
      rttSum: 0,
      rttVarSum: 0,
      rttCount: 0,
    };
    this.groups.set(key, g);
    return g;
  }

  /** The interval's points; starts a new interval. `commonTags` never override flow tags. */
  flush(timestampNs: bigint, commonTags: Record<string, string>): Point[] {
    const points: Point[] = [];
    for (const g of this.groups.values()) {
      if (!g.bytesRead && !g.bytesWritten && !g.retransmits && !g.established && !g.closed) continue;
      const incoming = g.tags.direction === 'incoming';
      const fields: Point['fields'] = {
        bytes_read: g.bytesRead,
        bytes_written: g.bytesWritten,
        client_sent: incoming ? g.bytesRead : g.bytesWritten,
        server_sent: incoming ? g.bytesWritten : g.bytesRead,
      };
      if (g.tcp) {
        fields.retransmits = g.retransmits;
        fields.rtt = g.rttCount ? Math.round(g.rttSum / g.rttCount) : 0;
        fields.rtt_var = g.rttCount ? Math.round(g.rttVarSum / g.rttCount) : 0;
        fields.tcp_established = g.established;
        fields.tcp_closed = g.closed;
      }
      points.push({ measurement: 'netflow', tags: { ...commonTags, ...g.tags }, fields, timestampNs });
    }
    this.groups.clear();
    return points;
  }

  /** Flow keys waiting for the next flush (for self-metrics). */
  get pendingFlows(): number {
    return this.groups.size;
  }
}
