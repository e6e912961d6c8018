// IP -> domain, learned from the A/AAAA answers local clients receive, for
// netflow's dst_domain/server_domain. The domain is the name the client asked
// for: an address reached through a CNAME chain belongs to the chain's head
// (`api.example.com`, not `api.example.com.edgekey.net`). Entries live for
// the record's TTL, raised to a floor (a flow is reported up to an interval
// after the lookup, and resolvers answer from cache with shrinking TTLs) and
// cut to a cap, and the table holds at most maxEntries, dropping the least
// recently learned. Upstream's cache never expired and never stopped growing.
import { TYPE_A, TYPE_AAAA, TYPE_CNAME, type DnsMessage } from './parser';

export interface DomainCacheOptions {
  maxEntries: number;
  minTtlS: number;
  maxTtlS: number;
  /** Monotonic milliseconds. */
  now?: () => number;
}

export const DOMAIN_CACHE_DEFAULTS: DomainCacheOptions = { maxEntries: 16_384, minTtlS: 300, maxTtlS: 3600 };

/** A CNAME chain longer than this is not followed (resolvers stop near 8-16). */
const MAX_CNAME_HOPS = 16;
const CLASS_IN = 1;

interface Entry {
  domain: string;
  expiresAt: number;
}

export class DomainCache {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;

  constructor(private readonly opts: DomainCacheOptions = DOMAIN_CACHE_DEFAULTS) {
    this.now = opts.now ?? (() => performance.now());
  }

  get size(): number {
    return this.entries.size;
  }

  /** Learns the addresses of a successful answer; returns how many. */
  learn(msg: DnsMessage): number {
    if (!msg.qr || msg.rcode !== 0) return 0;
    const cnames = new Map<string, string>();
    for (const a of msg.answers) if (a.type === TYPE_CNAME && a.class === CLASS_IN && a.data) cnames.set(a.name, a.data);
    const heads = new Map<string, string>();
    for (const q of msg.questions) {
      let name = q.name;
      heads.set(name, q.name);
      for (let hop = 0; hop < MAX_CNAME_HOPS; hop++) {
        const target = cnames.get(name);
        if (target === undefined || heads.has(target)) break;
        heads.set(target, q.name);
        name = target;
      }
    }
    let learned = 0;
    const now = this.now();
    for (const a of msg.answers) {
      if ((a.type !== TYPE_A && a.type !== TYPE_AAAA) || a.class !== CLASS_IN || !a.data) continue;
      const ttl = Math.min(Math.max(a.ttl, this.opts.minTtlS), this.opts.maxTtlS);
      // Re-inserting moves the address to the young end of the eviction order.
      this.entries.delete(a.data);
      this.entries.set(a.data, { domain: heads.get(a.name) ?? a.name, expiresAt: now + ttl * 1000 });
      learned++;
    }
    while (this.entries.size > this.opts.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    return learned;
  }

  /** The domain `ip` was last resolved from, '' when unknown or expired. */
  lookup(ip: string): string {
    const e = this.entries.get(ip);
    if (!e) return '';
    if (e.expiresAt <= this.now()) {
      this.entries.delete(ip);
      return '';
    }
    return e.domain;
  }
}
