// Decoder for the packet records of bpf/dns.h. The offsets are written out
// once and checked against the ones the compiler gave the addon
// (assertDnsLayout, run by the net loader at start-up and by a unit test).
// Records are variable-size: the ring-buffer poller prefixes each with its
// length as a u32 (native/ringbuf_poller.cc, record_size 0).
import { ipText } from '../netflow/classify';
import { AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP } from '../loader/layout';

export const DNS_LAYOUT = {
  ktime_ns: 0,
  saddr: 8,
  daddr: 24,
  sport: 40,
  dport: 42,
  family: 44,
  proto: 46,
  flags: 47,
  tcp_seq: 48,
  wire_len: 52,
  cap_len: 56,
  payload: 64,
  payloadMax: 2048,
  portsMax: 8,
  flagEgress: 1,
  telemetryMax: 4,
} as const;

/** Indexes of the kernel's dns_telemetry counters (enum dke_dns_telemetry). */
export const DNS_TELEMETRY = { packets: 0, ringbufFull: 1, truncated: 2 } as const;

export interface DnsPacket {
  /** CLOCK_MONOTONIC nanoseconds when the packet passed the socket. */
  ktimeNs: bigint;
  family: 'IPv4' | 'IPv6';
  transport: 'udp' | 'tcp';
  srcIp: string;
  dstIp: string;
  srcPort: number;
  dstPort: number;
  /** Sent by a local socket (a query); else received by one (an answer). */
  egress: boolean;
  /** TCP: sequence number of the first payload byte. */
  tcpSeq: number;
  /** Payload bytes on the wire; `payload` holds the first of them. */
  wireLen: number;
  payload: Buffer;
}

/** Throws when the addon's compiled layout differs from the one decoded here. */
export function assertDnsLayout(native: unknown): void {
  const got = native as Record<string, unknown> | undefined;
  const mismatches = Object.entries(DNS_LAYOUT)
    .filter(([k, v]) => got?.[k] !== v)
    .map(([k, v]) => `${k}: decoder ${v}, addon ${String(got?.[k])}`);
  if (mismatches.length > 0) {
    throw new Error(`record layout mismatch between bpf/dns.h and src/dnsflow/record.ts: ${mismatches.join('; ')}`);
  }
}

/**
 * A batch of [u32 length][record] entries. Records that are too short, of an
 * unknown family or protocol, or claim more payload than they hold are
 * skipped and counted; the payload is copied out of the batch.
 */
export function decodeDnsPackets(buf: Buffer): { packets: DnsPacket[]; malformed: number } {
  const L = DNS_LAYOUT;
  const packets: DnsPacket[] = [];
  let malformed = 0;
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt32LE(off);
    const start = off + 4;
    off = start + len;
    if (off > buf.length) {
      malformed++;
      break;
    }
    if (len < L.payload) {
      malformed++;
      continue;
    }
    const family = buf.readUInt16LE(start + L.family);
    const proto = buf[start + L.proto]!;
    const capLen = buf.readUInt32LE(start + L.cap_len);
    if ((family !== AF_INET && family !== AF_INET6) || (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) || capLen > len - L.payload || capLen > L.payloadMax) {
      malformed++;
      continue;
    }
    packets.push({
      ktimeNs: buf.readBigUInt64LE(start + L.ktime_ns),
      family: family === AF_INET ? 'IPv4' : 'IPv6',
      transport: proto === IPPROTO_TCP ? 'tcp' : 'udp',
      srcIp: ipText(buf.subarray(start + L.saddr, start + L.saddr + 16), family),
      dstIp: ipText(buf.subarray(start + L.daddr, start + L.daddr + 16), family),
      srcPort: buf.readUInt16LE(start + L.sport),
      dstPort: buf.readUInt16LE(start + L.dport),
      egress: (buf[start + L.flags]! & L.flagEgress) !== 0,
      tcpSeq: buf.readUInt32LE(start + L.tcp_seq),
      wireLen: buf.readUInt32LE(start + L.wire_len),
      payload: Buffer.from(buf.subarray(start + L.payload, start + L.payload + capLen)),
    });
  }
  if (off < buf.length) malformed++;
  return { packets, malformed };
}
