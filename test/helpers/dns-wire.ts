// Builds DNS messages for unit tests, with name compression like real servers
// use, and the kernel's dnsflow records around them (bpf/dns.h).
import net from 'node:net';
import { DNS_LAYOUT } from '../../src/dnsflow/record';
import { ipBytes } from './records';

export interface WireRecord {
  name: string;
  type: number;
  ttl?: number;
  /** A/AAAA: address text; CNAME: target name; else raw bytes. */
  data: string | Buffer;
}

export interface WireMessage {
  id: number;
  qr?: boolean;
  rcode?: number;
  tc?: boolean;
  questions?: { name: string; type: number }[];
  answers?: WireRecord[];
  additional?: WireRecord[];
  /** Compress names against earlier ones (default true). */
  compress?: boolean;
}

/** A (4 bytes) or AAAA (16 bytes) rdata. */
function rdataBytes(ip: string): Buffer {
  return net.isIPv4(ip) ? ipBytes(ip).subarray(0, 4) : ipBytes(ip);
}

export function buildMessage(m: WireMessage): Buffer {
  const parts: Buffer[] = [];
  let size = 12;
  const known = new Map<string, number>();
  const compress = m.compress ?? true;
  const push = (b: Buffer): void => {
    parts.push(b);
    size += b.length;
  };
  const name = (n: string): Buffer => {
    const labels = n === '.' ? [] : n.split('.').filter(Boolean);
    const out: Buffer[] = [];
    let at = size;
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      const ptr = known.get(suffix);
      if (compress && ptr !== undefined) {
        out.push(Buffer.from([0xc0 | (ptr >> 8), ptr & 0xff]));
        return Buffer.concat(out);
      }
      if (at < 0x3fff) known.set(suffix, at);
      const l = Buffer.from(labels[i]!, 'latin1');
      out.push(Buffer.from([l.length]), l);
      at += 1 + l.length;
    }
    out.push(Buffer.from([0]));
    return Buffer.concat(out);
  };
  const record = (r: WireRecord): void => {
    push(name(r.name));
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(r.type, 0);
    fixed.writeUInt16BE(1, 2);
    fixed.writeUInt32BE(r.ttl ?? 300, 4);
    push(fixed);
    // rdata length is known only after the name inside it is compressed
    const lenAt = parts.length - 1;
    let rdata: Buffer;
    if (Buffer.isBuffer(r.data)) rdata = r.data;
    else if (r.type === 5) rdata = name(r.data);
    else rdata = rdataBytes(r.data);
    parts[lenAt]!.writeUInt16BE(rdata.length, 8);
    push(rdata);
  };
  const qs = m.questions ?? [];
  for (const q of qs) {
    push(name(q.name));
    const t = Buffer.alloc(4);
    t.writeUInt16BE(q.type, 0);
    t.writeUInt16BE(1, 2);
    push(t);
  }
  for (const r of m.answers ?? []) record(r);
  for (const r of m.additional ?? []) record(r);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(m.id, 0);
  header.writeUInt16BE((m.qr ? 0x8000 : 0) | 0x0100 | (m.tc ? 0x0200 : 0) | (m.qr ? 0x0080 : 0) | ((m.rcode ?? 0) & 0xf), 2);
  header.writeUInt16BE(qs.length, 4);
  header.writeUInt16BE(m.answers?.length ?? 0, 6);
  header.writeUInt16BE(0, 8);
  header.writeUInt16BE(m.additional?.length ?? 0, 10);
  return Buffer.concat([header, ...parts]);
}

export interface RawPacket {
  ktimeNs: bigint;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  tcp?: boolean;
  egress: boolean;
  seq?: number;
  payload: Buffer;
  /** Bytes on the wire, if more than captured. */
  wireLen?: number;
}

/** One [u32 length][dke_dns_event] entry as the ring-buffer poller delivers it. */
export function rawRecord(p: RawPacket): Buffer {
  const L = DNS_LAYOUT;
  const rec = Buffer.alloc(L.payload + p.payload.length);
  rec.writeBigUInt64LE(p.ktimeNs, L.ktime_ns);
  ipBytes(p.src).copy(rec, L.saddr);
  ipBytes(p.dst).copy(rec, L.daddr);
  rec.writeUInt16LE(p.sport, L.sport);
  rec.writeUInt16LE(p.dport, L.dport);
  rec.writeUInt16LE(net.isIPv4(p.src) ? 2 : 10, L.family);
  rec[L.proto] = p.tcp ? 6 : 17;
  rec[L.flags] = p.egress ? L.flagEgress : 0;
  rec.writeUInt32LE(p.seq ?? 0, L.tcp_seq);
  rec.writeUInt32LE(p.wireLen ?? p.payload.length, L.wire_len);
  rec.writeUInt32LE(p.payload.length, L.cap_len);
  p.payload.copy(rec, L.payload);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(rec.length);
  return Buffer.concat([len, rec]);
}

/** A DNS message with its TCP length prefix. */
export function tcpFramed(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/** Deterministic PRNG (mulberry32) so a failing fuzz case can be replayed from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
