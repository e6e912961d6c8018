// Decoders for the records of bpf/netflow.h. The offsets here are written out
// once and checked against the ones the compiler gave the addon
// (`assertLayout`, run by the loader at start-up and by a unit test), so a
// change on one side that is not made on the other fails loudly.

export const Direction = { unknown: 0, outgoing: 1, incoming: 2 } as const;
export type DirectionCode = (typeof Direction)[keyof typeof Direction];

export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export interface Tuple {
  /** 16 bytes, network order; IPv4 uses the first 4. */
  localAddr: Buffer;
  remoteAddr: Buffer;
  localPort: number;
  remotePort: number;
  family: number;
  proto: number;
  direction: DirectionCode;
  netns: number;
}

export interface TcpConnRecord {
  tuple: Tuple;
  cookie: bigint;
  bytesSent: number;
  bytesReceived: number;
  pid: number;
  totalRetrans: number;
  srttUs: number;
  rttvarUs: number;
  established: boolean;
  /** The socket is destroyed; the counters are final. */
  closed: boolean;
  comm: string;
}

export interface UdpFlowRecord {
  /** The raw key, used to delete the entry later. */
  key: Buffer;
  tuple: Tuple;
  cookie: bigint;
  bytesSent: number;
  bytesReceived: number;
  lastSeenNs: bigint;
}

export interface SockOwnerRecord {
  cookie: bigint;
  pid: number;
  netns: number;
  comm: string;
}

export const LAYOUT = {
  tuple: {
    size: 48,
    local_addr: 0,
    remote_addr: 16,
    local_port: 32,
    remote_port: 34,
    family: 36,
    proto: 38,
    direction: 39,
    netns: 40,
  },
  tcpConn: {
    size: 112,
    cookie: 48,
    bytes_sent: 56,
    bytes_received: 64,
    pid: 72,
    total_retrans: 76,
    srtt_us: 80,
    rttvar_us: 84,
    established: 88,
    closed: 92,
    comm: 96,
  },
  udpKey: { size: 56, cookie: 48 },
  udpStats: { size: 24, bytes_sent: 0, bytes_received: 8, last_seen_ns: 16 },
  sockOwner: { size: 24, pid: 0, netns: 4, comm: 8 },
  telemetryMax: 8,
} as const;

export type Layout = typeof LAYOUT;

/** Throws when the addon's compiled layout differs from the one decoded here. */
export function assertLayout(native: unknown): void {
  const mismatches: string[] = [];
  const walk = (want: Record<string, unknown>, got: unknown, path: string): void => {
    for (const [k, v] of Object.entries(want)) {
      const g = (got as Record<string, unknown> | undefined)?.[k];
      if (typeof v === 'object' && v !== null) walk(v as Record<string, unknown>, g, `${path}${k}.`);
      else if (g !== v) mismatches.push(`${path}${k}: decoder ${String(v)}, addon ${String(g)}`);
    }
  };
  walk(LAYOUT as unknown as Record<string, unknown>, native, '');
  if (mismatches.length > 0) {
    throw new Error(`record layout mismatch between bpf/netflow.h and src/loader/layout.ts: ${mismatches.join('; ')}`);
  }
}

const T = LAYOUT.tuple;

function readComm(buf: Buffer, off: number): string {
  const end = buf.indexOf(0, off);
  const stop = end < 0 || end > off + 16 ? off + 16 : end;
  return buf.toString('utf8', off, stop);
}

// Counters are u64 in the kernel; below 2^53 they are exact as numbers, which
// covers 9 PB per connection.
function u64(buf: Buffer, off: number): number {
  return Number(buf.readBigUInt64LE(off));
}

export function decodeTuple(buf: Buffer, off: number): Tuple {
  return {
    // Views, not copies: records are consumed while their batch is alive.
    localAddr: buf.subarray(off + T.local_addr, off + T.local_addr + 16),
    remoteAddr: buf.subarray(off + T.remote_addr, off + T.remote_addr + 16),
    localPort: buf.readUInt16LE(off + T.local_port),
    remotePort: buf.readUInt16LE(off + T.remote_port),
    family: buf.readUInt16LE(off + T.family),
    proto: buf.readUInt8(off + T.proto),
    direction: buf.readUInt8(off + T.direction) as DirectionCode,
    netns: buf.readUInt32LE(off + T.netns),
  };
}

export function decodeTcpConn(buf: Buffer, off: number): TcpConnRecord {
  const L = LAYOUT.tcpConn;
  return {
    tuple: decodeTuple(buf, off),
    cookie: buf.readBigUInt64LE(off + L.cookie),
    bytesSent: u64(buf, off + L.bytes_sent),
    bytesReceived: u64(buf, off + L.bytes_received),
    pid: buf.readUInt32LE(off + L.pid),
    totalRetrans: buf.readUInt32LE(off + L.total_retrans),
    srttUs: buf.readUInt32LE(off + L.srtt_us),
    rttvarUs: buf.readUInt32LE(off + L.rttvar_us),
    established: buf.readUInt32LE(off + L.established) !== 0,
    closed: buf.readUInt32LE(off + L.closed) !== 0,
    comm: readComm(buf, off + L.comm),
  };
}

/** Close events are bare dke_tcp_conn records. */
export function decodeTcpConns(buf: Buffer): TcpConnRecord[] {
  return decodeFixed(buf, LAYOUT.tcpConn.size, (off) => decodeTcpConn(buf, off));
}

/** dumpMap('tcp_conns') gives [u64 cookie][dke_tcp_conn] pairs. */
export function decodeTcpConnMap(buf: Buffer): TcpConnRecord[] {
  return decodeFixed(buf, 8 + LAYOUT.tcpConn.size, (off) => decodeTcpConn(buf, off + 8));
}

/** dumpMap('udp_flows') and lookupAndDelete('udp_flows') give [dke_udp_key][dke_udp_stats] pairs. */
export function decodeUdpFlowMap(buf: Buffer): UdpFlowRecord[] {
  const K = LAYOUT.udpKey;
  const S = LAYOUT.udpStats;
  return decodeFixed(buf, K.size + S.size, (off) => {
    const s = off + K.size;
    return {
      key: Buffer.from(buf.subarray(off, off + K.size)),
      tuple: decodeTuple(buf, off),
      cookie: buf.readBigUInt64LE(off + K.cookie),
      bytesSent: u64(buf, s + S.bytes_sent),
      bytesReceived: u64(buf, s + S.bytes_received),
      lastSeenNs: buf.readBigUInt64LE(s + S.last_seen_ns),
    };
  });
}

/** dumpMap('sock_owners') gives [u64 cookie][dke_sock_owner] pairs. */
export function decodeSockOwnerMap(buf: Buffer): SockOwnerRecord[] {
  const O = LAYOUT.sockOwner;
  return decodeFixed(buf, 8 + O.size, (off) => ({
    cookie: buf.readBigUInt64LE(off),
    pid: buf.readUInt32LE(off + 8 + O.pid),
    netns: buf.readUInt32LE(off + 8 + O.netns),
    comm: readComm(buf, off + 8 + O.comm),
  }));
}

function decodeFixed<R>(buf: Buffer, size: number, one: (off: number) => R): R[] {
  if (buf.length % size !== 0) {
    throw new Error(`truncated record batch: ${buf.length} bytes is not a multiple of ${size}`);
  }
  const out: R[] = new Array(buf.length / size);
  for (let i = 0, off = 0; off < buf.length; i++, off += size) out[i] = one(off);
  return out;
}
