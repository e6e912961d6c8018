// DNS wire format (RFC 1035) for what dnsflow needs: the header, the
// questions, and the A/AAAA/CNAME answers. Input comes from the network
// (anyone can send any bytes to a port we watch), so the parser is total:
// every read is bounds-checked, compression pointers may only point backwards
// (so they cannot loop) and are counted, and names, labels and records are
// capped, so any input returns in time and memory proportional to its length,
// and nothing throws. A message cut short (by capture or by a liar's counts)
// yields what was read before the cut, flagged `truncated`.

import { AF_INET, AF_INET6 } from '../loader/layout';
import { ipText } from '../netflow/classify';

export const DNS_HEADER_LEN = 12;
export const TYPE_A = 1;
export const TYPE_CNAME = 5;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;

/** RFC 1035 2.3.4: a name is at most 255 octets on the wire. */
const MAX_NAME_OCTETS = 255;
/** A name has at most 127 labels; a well-formed one needs no more jumps than that. */
const MAX_POINTER_JUMPS = 128;
/** A real message has one question; a few more are read, none are kept beyond. */
const MAX_QUESTIONS = 4;
/** Answers kept per message (an A record set of a large pool is ~30). */
export const MAX_ANSWERS = 64;
/** Records walked in all sections; the rest are not looked at. */
const MAX_RECORDS = 256;

export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
}

export interface DnsAnswer {
  /** Owner name. */
  name: string;
  type: number;
  class: number;
  /** Seconds. */
  ttl: number;
  /** A/AAAA: the address as text; CNAME: the target name; otherwise undefined. */
  data?: string;
}

export interface DnsMessage {
  id: number;
  /** true for an answer (response), false for a query. */
  qr: boolean;
  opcode: number;
  /** Response code, extended by the EDNS OPT record when there is one. */
  rcode: number;
  /** The TC bit: the server cut the answer to fit (the client retries over TCP). */
  tc: boolean;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
  questions: DnsQuestion[];
  /** Answer-section records, at most MAX_ANSWERS. */
  answers: DnsAnswer[];
  /** Not every record the counts announce could be read. */
  truncated: boolean;
}

/** A name read from `buf`: its text and where the reader continues after it. */
interface NameRead {
  name: string;
  next: number;
}

/**
 * Name at `off`. Compression pointers must point strictly before the label
 * that holds them, so each jump moves backwards and the walk ends; the octet
 * cap bounds the work per name. Undefined when the name is malformed or runs
 * past the end.
 */
export function readName(buf: Buffer, off: number): NameRead | undefined {
  const labels: string[] = [];
  let octets = 1; // the root label
  let pos = off;
  let next = -1;
  let jumps = 0;
  // Pointers may only go below this: the start of the earliest label read so far.
  let floor = off;
  for (;;) {
    if (pos >= buf.length) return undefined;
    const len = buf[pos]!;
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) return undefined;
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (target >= floor) return undefined; // forward or self pointer: a loop or garbage
      if (++jumps > MAX_POINTER_JUMPS) return undefined;
      if (next < 0) next = pos + 2;
      pos = target;
      floor = target;
      continue;
    }
    if (kind !== 0) return undefined; // 0x40/0x80: obsolete extended label types
    octets += len + 1;
    if (octets > MAX_NAME_OCTETS) return undefined;
    if (pos + 1 + len > buf.length) return undefined;
    labels.push(labelText(buf, pos + 1, len));
    pos += 1 + len;
  }
  return { name: labels.length === 0 ? '.' : labels.join('.'), next };
}

/** Printable, lower-cased label text; other bytes (and dots inside a label) as \DDD, as dig prints them. */
function labelText(buf: Buffer, start: number, len: number): string {
  let s = '';
  for (let i = start; i < start + len; i++) {
    let c = buf[i]!;
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) s += String.fromCharCode(c);
    else s += `\\${String(c).padStart(3, '0')}`;
  }
  return s;
}

function u16(buf: Buffer, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

function u32(buf: Buffer, off: number): number {
  return ((buf[off]! << 24) >>> 0) + ((buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!);
}

/** The message in `buf`, or undefined when it is shorter than a DNS header. Never throws. */
export function parseDnsMessage(buf: Buffer): DnsMessage | undefined {
  if (buf.length < DNS_HEADER_LEN) return undefined;
  const flags = u16(buf, 2);
  const msg: DnsMessage = {
    id: u16(buf, 0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    rcode: flags & 0xf,
    tc: (flags & 0x0200) !== 0,
    qdcount: u16(buf, 4),
    ancount: u16(buf, 6),
    nscount: u16(buf, 8),
    arcount: u16(buf, 10),
    questions: [],
    answers: [],
    truncated: false,
  };
  let off = DNS_HEADER_LEN;

  for (let i = 0; i < msg.qdcount; i++) {
    const n = i < MAX_QUESTIONS ? readName(buf, off) : undefined;
    if (!n || n.next + 4 > buf.length) {
      // Past MAX_QUESTIONS the rest of the message is not worth finding.
      msg.truncated = true;
      return msg;
    }
    msg.questions.push({ name: n.name, type: u16(buf, n.next), class: u16(buf, n.next + 2) });
    off = n.next + 4;
  }

  const total = msg.ancount + msg.nscount + msg.arcount;
  for (let i = 0; i < total; i++) {
    if (i >= MAX_RECORDS) {
      msg.truncated = true;
      break;
    }
    const n = readName(buf, off);
    if (!n || n.next + 10 > buf.length) {
      msg.truncated = true;
      break;
    }
    const type = u16(buf, n.next);
    const cls = u16(buf, n.next + 2);
    const ttl = u32(buf, n.next + 4);
    const rdlen = u16(buf, n.next + 8);
    const rdata = n.next + 10;
    if (rdata + rdlen > buf.length) {
      msg.truncated = true;
      break;
    }
    off = rdata + rdlen;
    if (i < msg.ancount) {
      if (msg.answers.length >= MAX_ANSWERS) continue;
      const a: DnsAnswer = { name: n.name, type, class: cls, ttl };
      if (type === TYPE_A && rdlen === 4) a.data = ipText(buf.subarray(rdata, rdata + 4), AF_INET);
      else if (type === TYPE_AAAA && rdlen === 16) a.data = ipText(buf.subarray(rdata, rdata + 16), AF_INET6);
      else if (type === TYPE_CNAME) {
        // The target may point back into the message, but must end inside this record.
        const t = readName(buf, rdata);
        if (t && t.next <= off) a.data = t.name;
      }
      msg.answers.push(a);
    } else if (i >= msg.ancount + msg.nscount && type === TYPE_OPT) {
      // RFC 6891: the OPT TTL's top byte extends the 4-bit rcode.
      msg.rcode |= (ttl >>> 24) << 4;
    }
  }
  return msg;
}

/** The rcode's mnemonic (RFC 1035, 2136, 6891); -1 is our "no answer in time". */
export function rcodeName(rcode: number): string {
  const names: Record<number, string> = {
    [-1]: 'TIMEOUT',
    0: 'NOERROR',
    1: 'FORMERR',
    2: 'SERVFAIL',
    3: 'NXDOMAIN',
    4: 'NOTIMP',
    5: 'REFUSED',
    6: 'YXDOMAIN',
    7: 'YXRRSET',
    8: 'NXRRSET',
    9: 'NOTAUTH',
    10: 'NOTZONE',
    16: 'BADVERS',
  };
  return names[rcode] ?? `RCODE${rcode}`;
}
