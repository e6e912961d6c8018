// netflow aggregation: cumulative per-socket kernel counters in, one point per
// flow key per interval out. The kernel keeps totals per connection; we keep
// the last totals we reported ("marks") and emit the difference, so a missed
// read costs nothing and a close event carries the remainder.
//
// Every update is idempotent against the marks: a record seen twice (a close
// event and a snapshot of the same closed socket, a stale snapshot, a record
// replayed after a restart with persisted marks) adds nothing the second
// time. That is what makes restarts exact (see src/netflow/marks.ts).
import type { Point } from '../lineproto/point';
import { Direction, IPPROTO_TCP, type SockOwnerRecord, type TcpConnRecord, type Tuple, type UdpFlowRecord } from '../loader/layout';
import type { Snapshot } from './source';
import { collapsePort, endpoints, ipType, isZeroIp, resolveDirection, type Endpoints, type IpType } from './classify';

export interface NetflowOptions {
  ephemeralPort: number;
  includeLoopback: boolean;
  /** UDP flows unchanged for this many reads are removed from the kernel map. */
  udpIdleReads?: number;
  /** The domain an address was resolved from (dnsflow's cache), '' if unknown. */
  domainOf?: (ip: string) => string;
}

export interface TcpMark {
  bytesSent: number;
  bytesReceived: number;
  totalRetrans: number;
  establishedCounted: boolean;
  closedCounted: boolean;
  seenAt: number;
}

export interface UdpMark {
  bytesSent: number;
  bytesReceived: number;
  idleReads: number;
  seenAt: number;
}

/** The marks, for persisting with each durable hand-off (src/netflow/marks.ts). */
export interface MarksState {
  tcp: Map<bigint, TcpMark>;
  /** Keyed by the raw dke_udp_key bytes as latin1. */
  udp: Map<string, UdpMark>;
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

interface Owner {
  pid: number;
  comm: string;
  netns: number;
}

const ADDR_CACHE_MAX = 65536;

/** Marks, owners and tombstones not refreshed for this many reads are dropped. */
const FORGET_AFTER_READS = 3;

export class NetflowAggregator {
  private tcpMarks = new Map<bigint, TcpMark>();
  /** Closed connections whose kernel entries can go once their counts are durably handed off. */
  private closedPending = new Set<bigint>();
  /** Deleted from the kernel at read N: their marks are kept a little longer for late close events. */
  private deletedAt = new Map<bigint, number>();
  private udpMarks = new Map<string, UdpMark>();
  private owners = new Map<bigint, Owner & { seenAt: number }>();
  private groups = new Map<string, FlowGroup>();
  private addrCache = new Map<string, { ep: Endpoints; srcType: IpType; dstType: IpType }>();
  private listening = new Set<number>();
  /** First loader generation of the current kernel maps. */
  private epoch = 0;
  private reads = 0;
  private readonly udpIdleReads: number;

  constructor(private readonly opts: NetflowOptions) {
    this.udpIdleReads = opts.udpIdleReads ?? 2;
  }

  setListeningPorts(ports: Iterable<number>): void {
    this.listening = new Set(ports);
  }

  /**
   * The loader of `generation` started with fresh kernel maps (not pinned
   * ones of an earlier loader): every counter restarted from 0, so the marks
   * no longer apply, and records of older generations describe maps that are
   * gone. With pinned maps a restarted loader continues the same counters and
   * this is not called.
   */
  mapsRestarted(generation: number): void {
    this.epoch = generation;
    this.tcpMarks.clear();
    this.udpMarks.clear();
    this.closedPending.clear();
    this.deletedAt.clear();
  }

  ingestClosed(records: TcpConnRecord[], generation: number): void {
    if (generation < this.epoch) return;
    for (const r of records) this.addTcp(r, true);
  }

  /** Returns the keys of UDP flows that went idle; remove them after the hand-off and pass their final counters to ingestUdpFinal. */
  ingestSnapshot(s: Snapshot): Buffer[] {
    if (s.generation < this.epoch) return [];
    this.reads += 1;
    for (const o of s.owners) this.owners.set(o.cookie, { pid: o.pid, comm: o.comm, netns: o.netns, seenAt: this.reads });
    for (const r of s.tcp) this.addTcp(r, false);
    const idle: Buffer[] = [];
    for (const r of s.udp) {
      if (this.addUdp(r)) idle.push(r.key);
    }
    this.forgetStale();
    return idle;
  }

  /** Final counters of UDP flows removed from the kernel map. */
  ingestUdpFinal(records: UdpFlowRecord[]): void {
    for (const r of records) {
      this.addUdp(r);
      this.udpMarks.delete(r.key.toString('latin1'));
    }
  }

  private forgetStale(): void {
    const limit = this.reads - FORGET_AFTER_READS;
    for (const [k, m] of this.tcpMarks) if (m.seenAt < limit && !this.closedPending.has(k)) this.tcpMarks.delete(k);
    for (const [k, m] of this.udpMarks) if (m.seenAt < limit) this.udpMarks.delete(k);
    for (const [k, o] of this.owners) if (o.seenAt < limit) this.owners.delete(k);
    for (const [k, at] of this.deletedAt) {
      if (at >= limit) continue;
      this.deletedAt.delete(k);
      this.tcpMarks.delete(k);
    }
  }

  /** Closed connections whose counts are in the points flushed so far: delete their kernel entries after the hand-off. */
  closedToDelete(): bigint[] {
    return [...this.closedPending];
  }

  /** Their kernel entries are gone; forget their marks once no late record can arrive. */
  closedDeleted(cookies: bigint[]): void {
    for (const c of cookies) {
      this.closedPending.delete(c);
      this.deletedAt.set(c, this.reads);
    }
  }

  /** The marks to persist with a durable hand-off. */
  marks(): MarksState {
    return { tcp: this.tcpMarks, udp: this.udpMarks };
  }

  /** Marks persisted by an earlier process whose kernel maps we continue. */
  restoreMarks(m: MarksState): void {
    this.tcpMarks = m.tcp;
    this.udpMarks = m.udp;
    for (const [cookie, mark] of m.tcp) if (mark.closedCounted) this.closedPending.add(cookie);
  }

  private addTcp(r: TcpConnRecord, closeEvent: boolean): void {
    if (this.deletedAt.has(r.cookie)) return; // a late event of an entry we already finished
    const final = closeEvent || r.closed;
    let mark = this.tcpMarks.get(r.cookie);
    if (!mark) {
      // A connection adopted mid-life (not established after attach) brings
      // retransmits from before we watched; count only what follows.
      mark = {
        bytesSent: 0,
        bytesReceived: 0,
        totalRetrans: r.established ? 0 : r.totalRetrans,
        establishedCounted: false,
        closedCounted: false,
        seenAt: this.reads,
      };
      this.tcpMarks.set(r.cookie, mark);
    }
    const dSent = delta(r.bytesSent, mark.bytesSent);
    const dRecv = delta(r.bytesReceived, mark.bytesReceived);
    const dRetrans = delta(r.totalRetrans, mark.totalRetrans);
    const dEst = r.established && !mark.establishedCounted ? 1 : 0;
    const dClosed = final && !mark.closedCounted ? 1 : 0;
    mark.bytesSent += dSent;
    mark.bytesReceived += dRecv;
    mark.totalRetrans += dRetrans;
    mark.establishedCounted ||= r.established;
    mark.closedCounted ||= final;
    mark.seenAt = this.reads;
    if (final) this.closedPending.add(r.cookie);
    if (!dSent && !dRecv && !dRetrans && !dEst && !dClosed) return;

    const g = this.group(r.tuple, { pid: r.pid, comm: r.comm, netns: r.tuple.netns });
    if (!g) return;
    g.bytesWritten += dSent;
    g.bytesRead += dRecv;
    g.retransmits += dRetrans;
    g.established += dEst;
    g.closed += dClosed;
    if (r.srttUs > 0) {
      g.rttSum += r.srttUs;
      g.rttVarSum += r.rttvarUs;
      g.rttCount += 1;
    }
  }

  /** Returns true when the flow has been idle long enough to be removed. */
  private addUdp(r: UdpFlowRecord): boolean {
    const id = r.key.toString('latin1');
    let mark = this.udpMarks.get(id);
    if (!mark) {
      mark = { bytesSent: 0, bytesReceived: 0, idleReads: 0, seenAt: this.reads };
      this.udpMarks.set(id, mark);
    }
    const dSent = delta(r.bytesSent, mark.bytesSent);
    const dRecv = delta(r.bytesReceived, mark.bytesReceived);
    mark.bytesSent += dSent;
    mark.bytesReceived += dRecv;
    mark.seenAt = this.reads;
    if (!dSent && !dRecv) {
      mark.idleReads += 1;
      return mark.idleReads >= this.udpIdleReads;
    }
    mark.idleReads = 0;
    const owner = this.owners.get(r.cookie) ?? { pid: 0, comm: '', netns: 0 };
    const g = this.group(r.tuple, owner);
    if (g) {
      g.bytesWritten += dSent;
      g.bytesRead += dRecv;
    }
    return false;
  }

  /**
   * Address text and types per address pair: the same few peers recur in
   * every interval, and formatting them per record is most of the per-close
   * cost in user space.
   */
  private addresses(t: Tuple): { ep: Endpoints; srcType: IpType; dstType: IpType } {
    const key = `${t.family}${t.localAddr.toString('latin1')}${t.remoteAddr.toString('latin1')}`;
    let a = this.addrCache.get(key);
    if (!a) {
      const ep = endpoints(t);
      a = { ep, srcType: ipType(ep.localIp), dstType: ipType(ep.remoteIp) };
      if (this.addrCache.size >= ADDR_CACHE_MAX) this.addrCache.clear();
      this.addrCache.set(key, a);
    }
    return a;
  }

  private group(t: Tuple, owner: Owner): FlowGroup | undefined {
    const { ep, srcType, dstType } = this.addresses(t);
    if (isZeroIp(ep.localIp) || isZeroIp(ep.remoteIp) || t.localPort === 0 || t.remotePort === 0) return undefined;
    if (!this.opts.includeLoopback && srcType === 'loopback' && dstType === 'loopback') return undefined;

    const tcp = t.proto === IPPROTO_TCP;
    const incoming = resolveDirection(t, this.listening) === Direction.incoming;
    const srcPort = incoming ? String(t.localPort) : collapsePort(t.localPort, this.opts.ephemeralPort);
    const dstPort = incoming ? collapsePort(t.remotePort, this.opts.ephemeralPort) : String(t.remotePort);
    const pid = String(owner.pid);
    const netns = String(owner.netns || t.netns);
    const key = [ep.family, incoming ? 'i' : 'o', tcp ? 't' : 'u', ep.localIp, ep.remoteIp, srcPort, dstPort, pid, owner.comm, netns].join('|');
    let g = this.groups.get(key);
    if (g) return g;

    const server = incoming
      ? { ip: ep.localIp, port: srcPort, type: srcType }
      : { ip: ep.remoteIp, port: dstPort, type: dstType };
    const client = incoming
      ? { ip: ep.remoteIp, port: dstPort, type: dstType }
      : { ip: ep.localIp, port: srcPort, type: srcType };
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
        process_name: owner.comm,
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

/**
 * Counters only grow within one set of kernel maps (fresh maps reset the
 * marks, see mapsRestarted): a smaller value is a stale record, worth nothing.
 */
function delta(now: number, before: number): number {
  return now > before ? now - before : 0;
}
