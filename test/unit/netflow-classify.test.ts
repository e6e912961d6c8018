// Pure classification rules of netflow (src/netflow/classify.ts): address text,
// address type, direction of connections seen mid-life, the ephemeral `*`.
import { describe, expect, it } from 'vitest';
import { familyOf, ipBytes } from '../helpers/records';
import { DKE_DIR_INCOMING, DKE_DIR_OUTGOING, DKE_DIR_UNKNOWN } from '../../src/loader/layout.generated';
import { AF_INET, collapsePort, endpoints, ipText, ipType, resolveDirection, type DirectionCode, type Tuple } from '../../src/netflow/classify';

const Direction = { outgoing: DKE_DIR_OUTGOING, incoming: DKE_DIR_INCOMING, unknown: DKE_DIR_UNKNOWN } as const;
const AF_INET6 = 10;

function tuple(
  local: string,
  localPort: number,
  remote: string,
  remotePort: number,
  direction: DirectionCode = Direction.outgoing,
  family = familyOf(local),
): Tuple {
  return { localAddr: ipBytes(local), remoteAddr: ipBytes(remote), localPort, remotePort, family, direction };
}

describe('ipType', () => {
  it.each([
    ['10.0.0.1', 'private'],
    ['10.255.255.255', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.254', 'private'],
    ['172.15.255.255', 'other'],
    ['172.32.0.1', 'other'],
    ['192.168.0.1', 'private'],
    ['192.168.255.255', 'private'],
    ['192.167.1.1', 'other'],
    ['192.169.1.1', 'other'],
    ['11.0.0.1', 'other'],
    ['9.255.255.255', 'other'],
    ['127.0.0.1', 'loopback'],
    ['127.1.2.3', 'loopback'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['223.255.255.255', 'other'],
    ['240.0.0.1', 'other'],
    ['8.8.8.8', 'other'],
    ['93.184.216.34', 'other'],
  ] as const)('IPv4 %s is %s', (ip, want) => {
    expect(ipType(ip)).toBe(want);
  });

  it.each([
    ['fc00::1', 'private'],
    ['fd00:dead:1::2', 'private'],
    ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'private'],
    ['FD12:3456::1', 'private'],
    ['fe00::1', 'other'],
    ['fb00::1', 'other'],
    ['fe80::1', 'other'],
    ['::1', 'loopback'],
    ['ff02::1', 'multicast'],
    ['ff05::1:3', 'multicast'],
    ['ff00::', 'multicast'],
    ['2001:db8::1', 'other'],
    ['2606:4700:4700::1111', 'other'],
    ['::2', 'other'],
  ] as const)('IPv6 %s is %s', (ip, want) => {
    expect(ipType(ip)).toBe(want);
  });
});

describe('endpoints', () => {
  it('IPv4 uses the first 4 bytes in network order', () => {
    const t = tuple('10.1.2.3', 40000, '93.184.216.34', 443);
    // Bytes past the first 4 are not part of an IPv4 address.
    t.localAddr.fill(0xee, 4);
    expect(endpoints(t)).toEqual({ family: 'IPv4', localIp: '10.1.2.3', remoteIp: '93.184.216.34' });
  });

  it('IPv4 with every octet at its extremes', () => {
    const t = tuple('255.0.128.1', 1, '0.255.1.254', 2);
    expect(endpoints(t)).toEqual({ family: 'IPv4', localIp: '255.0.128.1', remoteIp: '0.255.1.254' });
  });

  it.each([
    ['fd00:dead:1:0:0:0:0:2', 'fd00:dead:1::2'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1'],
    // Longest run of zeros wins.
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    // On a tie the first run is compressed.
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    // A single zero group is not compressed.
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    // Leading zeros dropped, hex lower case.
    ['2001:0DB8:00AB:000C:0000:0000:0000:0001', '2001:db8:ab:c::1'],
    ['fe80:0:0:0:0:0:0:0', 'fe80::'],
    ['ff02:0:0:0:0:0:0:fb', 'ff02::fb'],
  ])('IPv6 %s is written %s', (full, canonical) => {
    const t = tuple(full, 40000, '2001:db8::99', 443);
    const ep = endpoints(t);
    expect(ep.family).toBe('IPv6');
    expect(ep.localIp).toBe(canonical);
    expect(ep.remoteIp).toBe('2001:db8::99');
  });

  it('an IPv4-mapped IPv6 pair reports as IPv4', () => {
    const t = tuple('::ffff:10.0.0.1', 40000, '::ffff:93.184.216.34', 443, Direction.outgoing, AF_INET6);
    expect(endpoints(t)).toEqual({ family: 'IPv4', localIp: '10.0.0.1', remoteIp: '93.184.216.34' });
  });

  it('a mapped loopback pair reports as IPv4 loopback', () => {
    const t = tuple('::ffff:127.0.0.1', 40000, '::ffff:127.0.0.1', 8080, Direction.outgoing, AF_INET6);
    const ep = endpoints(t);
    expect(ep).toEqual({ family: 'IPv4', localIp: '127.0.0.1', remoteIp: '127.0.0.1' });
    expect(ipType(ep.localIp)).toBe('loopback');
  });

  it('only one side mapped stays IPv6', () => {
    const t = tuple('::ffff:10.0.0.1', 40000, '2001:db8::1', 443, Direction.outgoing, AF_INET6);
    const ep = endpoints(t);
    expect(ep.family).toBe('IPv6');
    expect(ep.remoteIp).toBe('2001:db8::1');
    expect(ep.localIp).toMatch(/^::ffff:/);
  });

  it('::ffff-like prefixes that are not the mapped prefix stay IPv6', () => {
    const t = tuple('::fffe:a00:1', 40000, '::fffe:a00:2', 443, Direction.outgoing, AF_INET6);
    expect(endpoints(t)).toEqual({ family: 'IPv6', localIp: '::fffe:a00:1', remoteIp: '::fffe:a00:2' });
  });
});

describe('ipText', () => {
  it('writes one kernel address field by its family', () => {
    expect(ipText(ipBytes('10.1.2.3'), AF_INET)).toBe('10.1.2.3');
    expect(ipText(ipBytes('2001:db8::53'), AF_INET6)).toBe('2001:db8::53');
    // No unmapping here: that is endpoints' business, for a pair.
    expect(ipText(ipBytes('::ffff:10.0.0.1'), AF_INET6)).toBe('::ffff:a00:1');
  });
});

describe('resolveDirection', () => {
  const none = new Set<number>();

  it('keeps a direction the kernel knows, whatever the ports say', () => {
    expect(resolveDirection(tuple('10.0.0.1', 8080, '10.0.0.2', 50000, Direction.outgoing), new Set([8080]))).toBe(
      Direction.outgoing,
    );
    expect(resolveDirection(tuple('10.0.0.1', 50000, '10.0.0.2', 443, Direction.incoming), none)).toBe(
      Direction.incoming,
    );
  });

  it('unknown: incoming when the local port is listening', () => {
    expect(resolveDirection(tuple('10.0.0.1', 50000, '10.0.0.2', 40000, Direction.unknown), new Set([50000]))).toBe(
      Direction.incoming,
    );
    expect(resolveDirection(tuple('10.0.0.1', 8080, '10.0.0.2', 443, Direction.unknown), new Set([8080]))).toBe(
      Direction.incoming,
    );
  });

  it('unknown: the remote port listening somewhere locally does not make it incoming', () => {
    expect(resolveDirection(tuple('10.0.0.1', 50000, '10.0.0.2', 8080, Direction.unknown), new Set([8080]))).toBe(
      Direction.outgoing,
    );
  });

  it('unknown and not listening: incoming only when local looks fixed and remote ephemeral', () => {
    expect(resolveDirection(tuple('10.0.0.1', 22, '10.0.0.2', 50000, Direction.unknown), none)).toBe(Direction.incoming);
    expect(resolveDirection(tuple('10.0.0.1', 32767, '10.0.0.2', 32768, Direction.unknown), none)).toBe(
      Direction.incoming,
    );
    expect(resolveDirection(tuple('10.0.0.1', 50000, '10.0.0.2', 443, Direction.unknown), none)).toBe(
      Direction.outgoing,
    );
    expect(resolveDirection(tuple('10.0.0.1', 32768, '10.0.0.2', 40000, Direction.unknown), none)).toBe(
      Direction.outgoing,
    );
    // Both low or both high: no evidence, outgoing.
    expect(resolveDirection(tuple('10.0.0.1', 1022, '10.0.0.2', 22, Direction.unknown), none)).toBe(Direction.outgoing);
    expect(resolveDirection(tuple('10.0.0.1', 40000, '10.0.0.2', 50000, Direction.unknown), none)).toBe(
      Direction.outgoing,
    );
  });
});

describe('collapsePort', () => {
  it('ephemeralPort 0 collapses every port', () => {
    for (const p of [1, 22, 443, 32767, 32768, 65535]) expect(collapsePort(p, 0)).toBe('*');
  });

  it('ephemeralPort 32768: below stays numeric, at and above is *', () => {
    expect(collapsePort(1, 32768)).toBe('1');
    expect(collapsePort(443, 32768)).toBe('443');
    expect(collapsePort(32767, 32768)).toBe('32767');
    expect(collapsePort(32768, 32768)).toBe('*');
    expect(collapsePort(60000, 32768)).toBe('*');
    expect(collapsePort(65535, 32768)).toBe('*');
  });

  it('port 0 is a port the kernel already collapsed: * whatever ephemeralPort says', () => {
    expect(collapsePort(0, 32768)).toBe('*');
    expect(collapsePort(0, 65535)).toBe('*');
  });
});
