// Pairs DNS queries with their answers. A transaction is keyed by {id,
// transport, family, client ip:port, server ip:port}; its latency is the
// answer's kernel timestamp minus the query's. A query without an answer
// within the timeout is a transaction with rcode -1. The query alone is never
// a sample (upstream counted it once more with latency 0). The pending table
// is bounded: when it is full a new query is shed and counted.

export interface DnsEndpoints {
  family: 'IPv4' | 'IPv6';
  transport: 'udp' | 'tcp';
  clientIp: string;
  clientPort: number;
  serverIp: string;
  serverPort: number;
}

export interface DnsTransaction extends DnsEndpoints {
  /** The answer's rcode, or RCODE_TIMEOUT. */
  rcode: number;
  /** Answer time - query time (kernel clock); 0 for a timeout. */
  latencyNs: number;
}

export const RCODE_TIMEOUT = -1;

export interface PairingOptions {
  timeoutNs: bigint;
  maxPending: number;
  /**
   * Packets reach us up to a poll period after the kernel saw them: a query is
   * declared unanswered only this long after its timeout, so an answer that
   * came in time but is still on its way is not mistaken for none.
   */
  graceNs?: bigint;
}

interface Pending {
  ep: DnsEndpoints;
  queryNs: bigint;
}

export interface PairingStats {
  /** Queries dropped because the pending table was full. */
  shed: number;
  /** Answers to no query we saw (it predates us, timed out, or was shed). */
  unmatched: number;
  /** A query repeated with the same key while pending (kept once, from its first send). */
  repeated: number;
}

export function transactionKey(ep: DnsEndpoints, id: number): string {
  return `${id}|${ep.transport}|${ep.family}|${ep.clientIp}|${ep.clientPort}|${ep.serverIp}|${ep.serverPort}`;
}

export class DnsPairer {
  private readonly pending = new Map<string, Pending>();
  private readonly graceNs: bigint;
  readonly stats: PairingStats = { shed: 0, unmatched: 0, repeated: 0 };

  constructor(private readonly opts: PairingOptions) {
    this.graceNs = opts.graceNs ?? 1_000_000_000n;
  }

  get size(): number {
    return this.pending.size;
  }

  /**
   * Records a query. A full table first gives up queries already past their
   * timeout (returned, they are transactions), then sheds the new one.
   */
  query(ep: DnsEndpoints, id: number, queryNs: bigint): DnsTransaction[] {
    const key = transactionKey(ep, id);
    if (this.pending.has(key)) {
      this.stats.repeated++;
      return [];
    }
    let expired: DnsTransaction[] = [];
    if (this.pending.size >= this.opts.maxPending) {
      expired = this.expire(queryNs);
      if (this.pending.size >= this.opts.maxPending) {
        this.stats.shed++;
        return expired;
      }
    }
    this.pending.set(key, { ep, queryNs });
    return expired;
  }

  /** The transaction this answer completes, if its query is pending. */
  answer(ep: DnsEndpoints, id: number, rcode: number, answerNs: bigint): DnsTransaction | undefined {
    const key = transactionKey(ep, id);
    const p = this.pending.get(key);
    if (!p) {
      this.stats.unmatched++;
      return undefined;
    }
    this.pending.delete(key);
    const latency = answerNs - p.queryNs;
    // Too late is no answer, whenever we learn of it.
    if (latency > this.opts.timeoutNs) return { ...p.ep, rcode: RCODE_TIMEOUT, latencyNs: 0 };
    return { ...p.ep, rcode, latencyNs: latency > 0n ? Number(latency) : 0 };
  }

  /** Queries unanswered for longer than the timeout (plus grace) at kernel time `nowNs`. */
  expire(nowNs: bigint): DnsTransaction[] {
    const cutoff = nowNs - this.opts.timeoutNs - this.graceNs;
    const out: DnsTransaction[] = [];
    for (const [k, p] of this.pending) {
      if (p.queryNs > cutoff) continue;
      this.pending.delete(k);
      out.push({ ...p.ep, rcode: RCODE_TIMEOUT, latencyNs: 0 });
    }
    return out;
  }
}
