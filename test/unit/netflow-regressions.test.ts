// Regression tests for netflow bugs found in review: IPv6 multicast matched
// 00ff::/16, and a late close batch of a dead loader generation wiped the
// live marks (double counting after a loader restart).
import { describe, expect, it } from 'vitest';
import { AF_INET, Direction, IPPROTO_TCP, type TcpConnRecord, type Tuple } from '../../src/loader/layout';
import type { Snapshot } from '../../src/netflow/source';
import { NetflowAggregator } from '../../src/netflow/aggregator';
import { ipType } from '../../src/netflow/classify';

function v4Tuple(local: string, localPort: number, remote: string, remotePort: number): Tuple {
  const addr = (s: string): Buffer => {
    const b = Buffer.alloc(16);
    s.split('.').forEach((p, i) => (b[i] = Number(p)));
    return b;
  };
  return {
    localAddr: addr(local),
    remoteAddr: addr(remote),
    localPort,
    remotePort,
    family: AF_INET,
    proto: IPPROTO_TCP,
    direction: Direction.outgoing,
    netns: 4026531840,
  };
}

function tcp(cookie: number, t: Tuple, bytesSent: number, established = true): TcpConnRecord {
  return {
    tuple: t,
    cookie: BigInt(cookie),
    bytesSent,
    bytesReceived: 0,
    pid: 1,
    totalRetrans: 0,
    srttUs: 0,
    rttvarUs: 0,
    established,
    closed: false,
    comm: 'app',
  };
}

function snap(generation: number, records: TcpConnRecord[]): Snapshot {
  return { generation, tcp: records, udp: [], owners: [], telemetry: [] };
}

describe('netflow regressions', () => {
  // BUG (src/netflow/classify.ts, ipType): IPv6 multicast is ff00::/8, i.e. a
  // first 16-bit group of ff00..ffff, which canonical text always writes with 4
  // hex digits. `lower.startsWith('ff')` also matches the groups 00ff..0fff
  // written without leading zeros ("ff::1" is 00ff::1, "fff::1" is 0fff::1),
  // which are not multicast. Fix: /^ff[0-9a-f]{2}:/ (as the private rule does).
  it('ipType: ff::1 and fff::1 (00ff::/16, 0fff::/16) are not multicast', () => {
    expect(ipType('ff::1')).toBe('other');
    expect(ipType('fff::1')).toBe('other');
    expect(ipType('ff02::1')).toBe('multicast');
  });

  // BUG (src/netflow/aggregator.ts, syncGeneration): any generation different
  // from the current one resets every mark and *replaces* the current
  // generation, including an OLDER one. A close-event batch of the previous
  // loader child delivered after the new child's first snapshot
  // (ingestClosed(records, oldGeneration)) therefore wipes the marks of the
  // live generation and flips `generation` back; the next snapshot of the live
  // generation flips it forward again and wipes them once more, so every live
  // connection's cumulative counters are reported again in full (double
  // counting). Fix: ignore (do not reset on) generations lower than the
  // current one.
  it('a late close event of a dead loader whose maps are gone does not reset the current marks', () => {
    const a = new NetflowAggregator({ ephemeralPort: 0, includeLoopback: false });
    const live = v4Tuple('10.0.0.1', 40000, '10.0.0.2', 443);
    a.ingestSnapshot(snap(1, [tcp(1, live, 10)]));
    a.flush(1n, {});
    // Loader restarted with fresh maps: generation 2 sees the live connection from 0.
    a.mapsRestarted(2);
    a.ingestSnapshot(snap(2, [tcp(1, live, 100, false)]));
    expect(a.flush(2n, {})[0]?.fields.bytes_written).toBe(100);
    // A close batch of generation 1 arrives late (another connection).
    a.ingestClosed([tcp(9, v4Tuple('10.0.0.1', 40001, '10.0.0.3', 443), 5)], 1);
    a.flush(3n, {});
    // The live connection grew by 50 in generation 2.
    a.ingestSnapshot(snap(2, [tcp(1, live, 150, false)]));
    expect(a.flush(4n, {})[0]?.fields.bytes_written).toBe(50);
  });
});
