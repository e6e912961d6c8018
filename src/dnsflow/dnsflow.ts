// dnsflow from packets to points: kernel records (src/dnsflow/record.ts) ->
// DNS messages (TCP reassembled) -> query/answer pairs -> points per flush;
// answers also teach the IP -> domain cache netflow reads. Client side only:
// the kernel keeps queries leaving local sockets and answers arriving at them.
import type { Point } from '../lineproto/point';
import { DnsflowAggregator } from './aggregator';
import { DOMAIN_CACHE_DEFAULTS, DomainCache } from './domains';
import { DnsPairer, type DnsEndpoints, type DnsTransaction } from './pairing';
import { parseDnsMessage, type DnsMessage } from './parser';
import { decodeDnsPackets, type DnsPacket } from './record';
import { TcpDnsStreams } from './tcp';

export interface DnsflowOptions {
  dnsPorts: readonly number[];
  timeoutMs: number;
  includeLoopback: boolean;
  maxPending?: number;
  maxGroups?: number;
}

/** Counters of what was dropped or could not be used, cumulative. */
export interface DnsflowStats {
  packets: number;
  /** Kernel records that did not decode. */
  malformedRecords: number;
  /** Payloads that are not a DNS message, or a query without a question. */
  notDns: number;
  pendingShed: number;
  groupsShed: number;
  tcpStreamsShed: number;
  tcpStreamsLost: number;
  unmatchedAnswers: number;
}

export class Dnsflow {
  readonly domains = new DomainCache(DOMAIN_CACHE_DEFAULTS);
  private readonly pairer: DnsPairer;
  private readonly tcp = new TcpDnsStreams();
  private readonly agg: DnsflowAggregator;
  private packets = 0;
  private malformedRecords = 0;
  private notDns = 0;

  constructor(opts: DnsflowOptions) {
    this.pairer = new DnsPairer({ timeoutNs: BigInt(opts.timeoutMs) * 1_000_000n, maxPending: opts.maxPending ?? 10_000 });
    this.agg = new DnsflowAggregator({
      dnsPorts: opts.dnsPorts,
      includeLoopback: opts.includeLoopback,
      maxGroups: opts.maxGroups ?? 10_000,
      domainOf: (ip) => this.domains.lookup(ip),
    });
  }

  /** A batch from the loader's dns stream. */
  ingest(records: Buffer): void {
    const { packets, malformed } = decodeDnsPackets(records);
    this.malformedRecords += malformed;
    for (const p of packets) this.ingestPacket(p);
  }

  private ingestPacket(p: DnsPacket): void {
    this.packets++;
    if (p.transport === 'udp') {
      this.onMessage(p, parseDnsMessage(p.payload), p.ktimeNs);
      return;
    }
    const key = `${p.srcIp}|${p.srcPort}|${p.dstIp}|${p.dstPort}`;
    for (const m of this.tcp.push({ key, seq: p.tcpSeq, wireLen: p.wireLen, data: p.payload, ktimeNs: p.ktimeNs })) {
      // A query is sent when its first byte leaves; an answer is in when its last byte arrives.
      this.onMessage(p, parseDnsMessage(m.message), p.egress ? m.firstNs : m.lastNs);
    }
  }

  private onMessage(p: DnsPacket, msg: DnsMessage | undefined, ktimeNs: bigint): void {
    if (!msg) {
      this.notDns++;
      return;
    }
    if (p.egress && !msg.qr) {
      // Something on a DNS port that does not even hold its question is not a query.
      if (msg.questions.length === 0) {
        this.notDns++;
        return;
      }
      const ep: DnsEndpoints = { family: p.family, transport: p.transport, clientIp: p.srcIp, clientPort: p.srcPort, serverIp: p.dstIp, serverPort: p.dstPort };
      this.addAll(this.pairer.query(ep, msg.id, ktimeNs));
    } else if (!p.egress && msg.qr) {
      const ep: DnsEndpoints = { family: p.family, transport: p.transport, clientIp: p.dstIp, clientPort: p.dstPort, serverIp: p.srcIp, serverPort: p.srcPort };
      this.domains.learn(msg);
      const t = this.pairer.answer(ep, msg.id, msg.rcode, ktimeNs);
      if (t) this.agg.add(t);
    }
  }

  private addAll(ts: DnsTransaction[]): void {
    for (const t of ts) this.agg.add(t);
  }

  /**
   * Points of everything answered since the last flush and of queries that
   * timed out by kernel time `monoNowNs` (CLOCK_MONOTONIC, the clock of
   * bpf_ktime_get_ns and process.hrtime).
   */
  flush(monoNowNs: bigint, timestampNs: bigint, commonTags: Record<string, string>): Point[] {
    this.addAll(this.pairer.expire(monoNowNs));
    this.tcp.expire(monoNowNs);
    return this.agg.flush(timestampNs, commonTags);
  }

  get pendingQueries(): number {
    return this.pairer.size;
  }

  stats(): DnsflowStats {
    return {
      packets: this.packets,
      malformedRecords: this.malformedRecords,
      notDns: this.notDns,
      pendingShed: this.pairer.stats.shed,
      groupsShed: this.agg.shed,
      tcpStreamsShed: this.tcp.shed,
      tcpStreamsLost: this.tcp.lost,
      unmatchedAnswers: this.pairer.stats.unmatched,
    };
  }
}
