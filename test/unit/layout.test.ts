// Decoders of the kernel records (src/loader/layout.ts), fed Buffers built by
// hand at the LAYOUT offsets, and the check that the compiled addon agrees.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import {
  AF_INET,
  AF_INET6,
  assertLayout,
  decodeSockOwnerMap,
  decodeTcpConnMap,
  decodeTcpConns,
  decodeUdpFlowMap,
  Direction,
  IPPROTO_TCP,
  IPPROTO_UDP,
  LAYOUT,
} from '../../src/loader/layout';
import { ADDON_PATH } from '../../src/paths';

const T = LAYOUT.tuple;
const C = LAYOUT.tcpConn;
const K = LAYOUT.udpKey;
const S = LAYOUT.udpStats;
const O = LAYOUT.sockOwner;

interface RawTuple {
  local: number[];
  remote: number[];
  localPort: number;
  remotePort: number;
  family: number;
  proto: number;
  direction: number;
  netns: number;
}

function addr(bytes: number[]): Buffer {
  const b = Buffer.alloc(16);
  Buffer.from(bytes).copy(b);
  return b;
}

function writeTuple(buf: Buffer, off: number, t: RawTuple): void {
  addr(t.local).copy(buf, off + T.local_addr);
  addr(t.remote).copy(buf, off + T.remote_addr);
  buf.writeUInt16LE(t.localPort, off + T.local_port);
  buf.writeUInt16LE(t.remotePort, off + T.remote_port);
  buf.writeUInt16LE(t.family, off + T.family);
  buf.writeUInt8(t.proto, off + T.proto);
  buf.writeUInt8(t.direction, off + T.direction);
  buf.writeUInt32LE(t.netns, off + T.netns);
  // The struct's trailing padding: garbage there must not matter.
  buf.fill(0xa5, off + T.netns + 4, off + T.size);
}

/** comm as the kernel writes it: up to 16 bytes, NUL-terminated when shorter, then whatever was there. */
function writeComm(buf: Buffer, off: number, comm: string): void {
  buf.fill(0x5a, off, off + 16); // garbage after the NUL
  const n = buf.write(comm, off, 16, 'utf8');
  if (n < 16) buf[off + n] = 0;
}

interface RawTcp {
  tuple: RawTuple;
  cookie: bigint;
  bytesSent: bigint;
  bytesReceived: bigint;
  pid: number;
  totalRetrans: number;
  srttUs: number;
  rttvarUs: number;
  established: number;
  comm: string;
}

function writeTcp(buf: Buffer, off: number, r: RawTcp): void {
  writeTuple(buf, off, r.tuple);
  buf.writeBigUInt64LE(r.cookie, off + C.cookie);
  buf.writeBigUInt64LE(r.bytesSent, off + C.bytes_sent);
  buf.writeBigUInt64LE(r.bytesReceived, off + C.bytes_received);
  buf.writeUInt32LE(r.pid, off + C.pid);
  buf.writeUInt32LE(r.totalRetrans, off + C.total_retrans);
  buf.writeUInt32LE(r.srttUs, off + C.srtt_us);
  buf.writeUInt32LE(r.rttvarUs, off + C.rttvar_us);
  buf.writeUInt32LE(r.established, off + C.established);
  buf.fill(0xc3, off + C.established + 4, off + C.comm); // _pad
  writeComm(buf, off + C.comm, r.comm);
}

const V4_OUT: RawTuple = {
  local: [10, 0, 0, 1],
  remote: [93, 184, 216, 34],
  localPort: 40000,
  remotePort: 443,
  family: AF_INET,
  proto: IPPROTO_TCP,
  direction: Direction.outgoing,
  netns: 4026531840,
};

const V6_IN: RawTuple = {
  local: [0xfd, 0x00, 0xde, 0xad, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
  remote: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
  localPort: 65535,
  remotePort: 1,
  family: AF_INET6,
  proto: IPPROTO_TCP,
  direction: Direction.incoming,
  netns: 0xf0000001,
};

const TCP_A: RawTcp = {
  tuple: V4_OUT,
  cookie: 0x1122334455667788n,
  bytesSent: 5_000_000_000n, // above 2^32
  bytesReceived: 2n ** 52n + 7n,
  pid: 0xfffffffe,
  totalRetrans: 3,
  srttUs: 1500,
  rttvarUs: 250,
  established: 1,
  comm: 'curl',
};

const TCP_B: RawTcp = {
  tuple: V6_IN,
  cookie: 0xfedcba9876543210n,
  bytesSent: 0n,
  bytesReceived: 1n,
  pid: 1,
  totalRetrans: 0xffffffff,
  srttUs: 0,
  rttvarUs: 0xffffffff,
  established: 0,
  comm: 'abcdefghijklmnop', // exactly 16 bytes, no NUL
};

function expectTuple(got: ReturnType<typeof decodeTcpConns>[number]['tuple'], want: RawTuple): void {
  expect(got.localAddr).toEqual(addr(want.local));
  expect(got.remoteAddr).toEqual(addr(want.remote));
  expect(got.localPort).toBe(want.localPort);
  expect(got.remotePort).toBe(want.remotePort);
  expect(got.family).toBe(want.family);
  expect(got.proto).toBe(want.proto);
  expect(got.direction).toBe(want.direction);
  expect(got.netns).toBe(want.netns);
}

function expectTcp(got: ReturnType<typeof decodeTcpConns>[number], want: RawTcp): void {
  expectTuple(got.tuple, want.tuple);
  expect(got.cookie).toBe(want.cookie);
  expect(got.bytesSent).toBe(Number(want.bytesSent));
  expect(got.bytesReceived).toBe(Number(want.bytesReceived));
  expect(got.pid).toBe(want.pid);
  expect(got.totalRetrans).toBe(want.totalRetrans);
  expect(got.srttUs).toBe(want.srttUs);
  expect(got.rttvarUs).toBe(want.rttvarUs);
  expect(got.established).toBe(want.established !== 0);
  expect(got.comm).toBe(want.comm);
}

describe('LAYOUT', () => {
  it('matches the C structs of bpf/netflow.h (sizes add up)', () => {
    expect(T.size).toBe(48);
    expect(C.size).toBe(112);
    expect(C.comm + 16).toBe(C.size);
    expect(K.size).toBe(T.size + 8);
    expect(K.cookie).toBe(T.size);
    expect(S.size).toBe(24);
    expect(O.size).toBe(O.comm + 16);
  });
});

describe('decodeTcpConns (close events: bare dke_tcp_conn records)', () => {
  it('decodes every field of every record', () => {
    const buf = Buffer.alloc(2 * C.size);
    writeTcp(buf, 0, TCP_A);
    writeTcp(buf, C.size, TCP_B);
    const rs = decodeTcpConns(buf);
    expect(rs).toHaveLength(2);
    expectTcp(rs[0]!, TCP_A);
    expectTcp(rs[1]!, TCP_B);
  });

  it('established is any non-zero u32', () => {
    const buf = Buffer.alloc(C.size);
    writeTcp(buf, 0, { ...TCP_A, established: 0x100 });
    expect(decodeTcpConns(buf)[0]!.established).toBe(true);
  });

  it('decoded addresses are views of their batch, not copies (each batch buffer is fresh and never reused)', () => {
    const buf = Buffer.alloc(C.size);
    writeTcp(buf, 0, TCP_A);
    const r = decodeTcpConns(buf)[0]!;
    expect(r.tuple.localAddr).toEqual(addr(V4_OUT.local));
    expect(r.tuple.localAddr.buffer).toBe(buf.buffer);
  });

  it('an empty batch is no records', () => {
    expect(decodeTcpConns(Buffer.alloc(0))).toEqual([]);
  });

  it('a truncated batch throws', () => {
    expect(() => decodeTcpConns(Buffer.alloc(C.size - 1))).toThrow(/truncated/);
    expect(() => decodeTcpConns(Buffer.alloc(C.size + 1))).toThrow(/truncated/);
  });
});

describe('decodeTcpConnMap ([u64 cookie][dke_tcp_conn] pairs)', () => {
  it('decodes every field; a full 16-byte comm stops at the record end', () => {
    const rec = 8 + C.size;
    const buf = Buffer.alloc(2 * rec);
    // The map key (the cookie again); non-zero bytes right after a full comm.
    buf.writeBigUInt64LE(TCP_B.cookie, 0);
    writeTcp(buf, 8, TCP_B);
    buf.writeBigUInt64LE(TCP_A.cookie, rec);
    writeTcp(buf, rec + 8, TCP_A);
    const rs = decodeTcpConnMap(buf);
    expect(rs).toHaveLength(2);
    expectTcp(rs[0]!, TCP_B);
    expect(rs[0]!.comm).toBe('abcdefghijklmnop');
    expectTcp(rs[1]!, TCP_A);
  });

  it('a full comm in the last record of the batch', () => {
    const buf = Buffer.alloc(8 + C.size);
    buf.writeBigUInt64LE(TCP_B.cookie, 0);
    writeTcp(buf, 8, TCP_B);
    expect(decodeTcpConnMap(buf)[0]!.comm).toBe('abcdefghijklmnop');
  });

  it('an empty comm', () => {
    const buf = Buffer.alloc(8 + C.size);
    writeTcp(buf, 8, { ...TCP_A, comm: '' });
    expect(decodeTcpConnMap(buf)[0]!.comm).toBe('');
  });

  it('a truncated batch throws', () => {
    expect(() => decodeTcpConnMap(Buffer.alloc(C.size))).toThrow(/truncated/);
    expect(() => decodeTcpConnMap(Buffer.alloc(2 * (8 + C.size) - 1))).toThrow(/truncated/);
  });
});

describe('decodeUdpFlowMap ([dke_udp_key][dke_udp_stats] pairs)', () => {
  const UDP_T: RawTuple = { ...V4_OUT, remote: [10, 0, 0, 53], remotePort: 53, proto: IPPROTO_UDP };
  const UDP_T6: RawTuple = { ...V6_IN, proto: IPPROTO_UDP };

  function writeUdp(buf: Buffer, off: number, t: RawTuple, cookie: bigint, sent: bigint, recv: bigint, seen: bigint): void {
    writeTuple(buf, off, t);
    buf.writeBigUInt64LE(cookie, off + K.cookie);
    buf.writeBigUInt64LE(sent, off + K.size + S.bytes_sent);
    buf.writeBigUInt64LE(recv, off + K.size + S.bytes_received);
    buf.writeBigUInt64LE(seen, off + K.size + S.last_seen_ns);
  }

  it('decodes every field and keeps the raw key', () => {
    const rec = K.size + S.size;
    const buf = Buffer.alloc(2 * rec);
    writeUdp(buf, 0, UDP_T, 0x0102030405060708n, 6_000_000_000n, 42n, 0xffffffffffffffffn);
    writeUdp(buf, rec, UDP_T6, 9n, 0n, 2n ** 40n, 123456789n);
    const rs = decodeUdpFlowMap(buf);
    expect(rs).toHaveLength(2);

    expectTuple(rs[0]!.tuple, UDP_T);
    expect(rs[0]!.cookie).toBe(0x0102030405060708n);
    expect(rs[0]!.bytesSent).toBe(6_000_000_000);
    expect(rs[0]!.bytesReceived).toBe(42);
    expect(rs[0]!.lastSeenNs).toBe(0xffffffffffffffffn);
    expect(rs[0]!.key).toEqual(buf.subarray(0, K.size));

    expectTuple(rs[1]!.tuple, UDP_T6);
    expect(rs[1]!.cookie).toBe(9n);
    expect(rs[1]!.bytesSent).toBe(0);
    expect(rs[1]!.bytesReceived).toBe(2 ** 40);
    expect(rs[1]!.lastSeenNs).toBe(123456789n);
    expect(rs[1]!.key).toEqual(buf.subarray(rec, rec + K.size));

    // The key is a copy: it survives the batch buffer being reused.
    buf.fill(0);
    expect(rs[0]!.key.readBigUInt64LE(K.cookie)).toBe(0x0102030405060708n);
  });

  it('a truncated batch throws', () => {
    expect(() => decodeUdpFlowMap(Buffer.alloc(K.size))).toThrow(/truncated/);
    expect(() => decodeUdpFlowMap(Buffer.alloc(K.size + S.size + 1))).toThrow(/truncated/);
  });

  it('an empty batch is no records', () => {
    expect(decodeUdpFlowMap(Buffer.alloc(0))).toEqual([]);
  });
});

describe('decodeSockOwnerMap ([u64 cookie][dke_sock_owner] pairs)', () => {
  it('decodes every field; NUL-terminated and full 16-byte comm', () => {
    const rec = 8 + O.size;
    const buf = Buffer.alloc(3 * rec);
    buf.writeBigUInt64LE(0xaabbccddeeff0011n, 0);
    buf.writeUInt32LE(4321, 8 + O.pid);
    buf.writeUInt32LE(0xf0000001, 8 + O.netns);
    writeComm(buf, 8 + O.comm, 'systemd-resolve'); // 15 bytes + NUL
    buf.writeBigUInt64LE(0xffffffffffffffffn, rec);
    buf.writeUInt32LE(0xffffffff, rec + 8 + O.pid);
    buf.writeUInt32LE(4026531840, rec + 8 + O.netns);
    writeComm(buf, rec + 8 + O.comm, 'ABCDEFGHIJKLMNOP'); // full, followed by the next cookie
    buf.writeBigUInt64LE(0x4141414141414141n, 2 * rec);
    buf.writeUInt32LE(7, 2 * rec + 8 + O.pid);
    writeComm(buf, 2 * rec + 8 + O.comm, 'x');

    expect(decodeSockOwnerMap(buf)).toEqual([
      { cookie: 0xaabbccddeeff0011n, pid: 4321, netns: 0xf0000001, comm: 'systemd-resolve' },
      { cookie: 0xffffffffffffffffn, pid: 0xffffffff, netns: 4026531840, comm: 'ABCDEFGHIJKLMNOP' },
      { cookie: 0x4141414141414141n, pid: 7, netns: 0, comm: 'x' },
    ]);
  });

  it('a truncated batch throws', () => {
    expect(() => decodeSockOwnerMap(Buffer.alloc(8 + O.size - 1))).toThrow(/truncated/);
  });
});

describe('assertLayout', () => {
  it('accepts LAYOUT itself and a deep copy of it', () => {
    expect(() => assertLayout(LAYOUT)).not.toThrow();
    expect(() => assertLayout(structuredClone(LAYOUT))).not.toThrow();
  });

  it('throws naming the mismatched field', () => {
    const bad = structuredClone(LAYOUT) as unknown as { tcpConn: { comm: number }; sockOwner: { netns: number } };
    bad.tcpConn.comm = 100;
    expect(() => assertLayout(bad)).toThrow(/tcpConn\.comm: decoder 96, addon 100/);
    bad.sockOwner.netns = 8;
    const err = (() => {
      try {
        assertLayout(bad);
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err?.message).toMatch(/tcpConn\.comm/);
    expect(err?.message).toMatch(/sockOwner\.netns/);
  });

  it('throws on a size mismatch and on a missing field', () => {
    const bad = structuredClone(LAYOUT) as unknown as { tuple: { size: number; netns?: number } };
    bad.tuple.size = 56;
    expect(() => assertLayout(bad)).toThrow(/tuple\.size/);
    const missing = structuredClone(LAYOUT) as unknown as { tuple: { netns?: number } };
    delete missing.tuple.netns;
    expect(() => assertLayout(missing)).toThrow(/tuple\.netns: decoder 40, addon undefined/);
    const noTop = structuredClone(LAYOUT) as unknown as { telemetryMax?: number };
    delete noTop.telemetryMax;
    expect(() => assertLayout(noTop)).toThrow(/telemetryMax/);
  });

  it('throws on no layout at all', () => {
    expect(() => assertLayout(undefined)).toThrow(/layout mismatch/);
    expect(() => assertLayout({})).toThrow(/layout mismatch/);
  });

  it('the compiled addon reports the same offsets as the decoder', () => {
    if (!fs.existsSync(ADDON_PATH)) {
      throw new Error(`${ADDON_PATH} is missing: run \`bash scripts/build\` first (this test checks the addon's compiled record offsets)`);
    }
    const addon = createRequire(ADDON_PATH)(ADDON_PATH) as { layout: unknown };
    expect(addon.layout).toBeTypeOf('object');
    expect(() => assertLayout(addon.layout)).not.toThrow();
  });
});
