// Pure rules that turn a kernel tuple into netflow's tag values: address text
// and type, direction for connections seen mid-life, the ephemeral-port `*`.
import net from 'node:net';
import { DKE_DIR_INCOMING, DKE_DIR_OUTGOING, DKE_DIR_UNKNOWN } from '../loader/layout.generated';

export const AF_INET = 2;
export const IPPROTO_TCP = 6;
export type DirectionCode = typeof DKE_DIR_UNKNOWN | typeof DKE_DIR_OUTGOING | typeof DKE_DIR_INCOMING;

/** A flow key's endpoints as the kernel gives them (struct dke_flow_key). */
export interface Tuple {
  /** 16 bytes, network order; IPv4 uses the first 4. */
  localAddr: Buffer;
  remoteAddr: Buffer;
  /** 0 on the client's side: the port collapsed in the kernel (`*`). */
  localPort: number;
  remotePort: number;
  family: number;
  direction: DirectionCode;
}

export type IpType = 'private' | 'loopback' | 'multicast' | 'other';
export type Family = 'IPv4' | 'IPv6';

export interface Endpoints {
  family: Family;
  localIp: string;
  remoteIp: string;
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

function v4(buf: Buffer, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

function v6(buf: Buffer): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(buf.readUInt16BE(i).toString(16));
  // Round-trip through the URL parser's canonical form (RFC 5952 compression).
  return new URL(`http://[${parts.join(':')}]/`).hostname.slice(1, -1);
}

/** Text of a 16-byte kernel address field (IPv4 in the first 4 bytes). */
export function ipText(addr: Buffer, family: number): string {
  return family === AF_INET ? v4(addr, 0) : v6(addr);
}

/** Address text; an IPv4-mapped IPv6 pair reports as IPv4, as the traffic on the wire is. */
export function endpoints(t: Tuple): Endpoints {
  if (t.family === AF_INET) return { family: 'IPv4', localIp: v4(t.localAddr, 0), remoteIp: v4(t.remoteAddr, 0) };
  const mapped = (b: Buffer): boolean => b.subarray(0, 12).equals(V4_MAPPED_PREFIX);
  if (mapped(t.localAddr) && mapped(t.remoteAddr)) {
    return { family: 'IPv4', localIp: v4(t.localAddr, 12), remoteIp: v4(t.remoteAddr, 12) };
  }
  return { family: 'IPv6', localIp: v6(t.localAddr), remoteIp: v6(t.remoteAddr) };
}

export function ipType(ip: string): IpType {
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    if (a === 127) return 'loopback';
    if (a >= 224 && a <= 239) return 'multicast';
    if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'private';
    return 'other';
  }
  const lower = ip.toLowerCase();
  if (lower === '::1') return 'loopback';
  if (/^ff[0-9a-f]{2}:/.test(lower)) return 'multicast';
  if (/^f[cd][0-9a-f]{2}:/.test(lower)) return 'private';
  return 'other';
}

export function isZeroIp(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::';
}

/** Linux's default ephemeral range starts here; used only to guess direction. */
const EPHEMERAL_GUESS = 32768;

/**
 * Direction of a connection. New connections carry it from the kernel (who
 * sent the SYN); connections that predate the collector are incoming when
 * their local port was listening, else judged by which side looks ephemeral.
 */
export function resolveDirection(t: Tuple, listeningPorts: ReadonlySet<number>): Exclude<DirectionCode, 0> {
  if (t.direction !== DKE_DIR_UNKNOWN) return t.direction as Exclude<DirectionCode, 0>;
  if (listeningPorts.has(t.localPort)) return DKE_DIR_INCOMING;
  if (t.localPort < EPHEMERAL_GUESS && t.remotePort >= EPHEMERAL_GUESS) return DKE_DIR_INCOMING;
  return DKE_DIR_OUTGOING;
}

/** The client's port collapses to `*` when it is at or above `ephemeralPort` (0: always, as upstream). */
export function collapsePort(port: number, ephemeralPort: number): string {
  return port === 0 || port >= ephemeralPort ? '*' : String(port);
}
