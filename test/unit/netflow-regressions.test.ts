// Regression tests for netflow bugs found in review: IPv6 multicast matched
// 00ff::/16.
import { describe, expect, it } from 'vitest';
import { ipType } from '../../src/netflow/classify';

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
});
