// IP -> domain, learned from the A/AAAA answers local clients receive, for
// netflow's dst_domain/server_domain. The domain is the name the client asked
// for: an address reached through a CNAME chain belongs to the chain's head
// (`api.example.com`, not `api.example.com.edgekey.net`). Entries live for
// the record's TTL, raised to a floor (a flow is reported up to an interval
// after the lookup, and resolvers answer from cache with shrinking TTLs) and
// cut to a cap, and the table holds at most maxEntries, dropping the least
// recently learned. Upstream's cache never expired and never stopped growing.

export interface DomainCacheOptions {
  maxEntries: number;
  minTtlS: number;
  maxTtlS: number;
  /** Monotonic milliseconds. */
  now?: () => number;
}

export const DOMAIN_CACHE_DEFAULTS: DomainCacheOptions = { maxEntries: 16_384, minTtlS: 300, maxTtlS: 3600 };


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

  /** An address a local client resolved (the loader's DKE_FRAME_DNS_NAMES: CNAME chains already followed). */
  learn(ip: string, domain: string, ttlS: number): void {
    const ttl = Math.min(Math.max(ttlS, this.opts.minTtlS), this.opts.maxTtlS);
    // Re-inserting moves the address to the young end of the eviction order.
    this.entries.delete(ip);
    this.entries.set(ip, { domain, expiresAt: this.now() + ttl * 1000 });
    while (this.entries.size > this.opts.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
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
