// Persisted read-marks: what netflow has already handed to the spool, per
// socket, so a daemon that was SIGKILLed and restarted (pinned kernel maps
// kept counting meanwhile) resumes the deltas exactly where the last durable
// hand-off ended: nothing lost, nothing counted twice.
//
// Commit protocol for one flush, with S = the last spool sequence number of
// the flush's batches:
//   1. write marks.pending = {S, pin dir, marks}        (fsync)
//   2. append the batches to the spool                   (fsync)  <- commit point
//   3. rename marks.pending -> marks
// At start-up, a marks.pending whose S the spool has is promoted (step 3 was
// lost), otherwise dropped (step 2 never happened, its deltas will be read
// again from the kernel). Marks of different kernel maps are ignored.
import fs from 'node:fs';
import path from 'node:path';
import type { MarksState, TcpMark, UdpMark } from './aggregator';

const MAGIC = 0x314d4b44; // "DKM1"
const TCP_ENTRY = 8 + 8 + 8 + 4 + 1;
const UDP_KEY = 56;
const UDP_ENTRY = UDP_KEY + 8 + 8 + 1;

export interface PersistedMarks {
  lastSeq: number;
  pinDir: string;
  marks: MarksState;
}

export function encodeMarks(p: PersistedMarks): Buffer {
  const pin = Buffer.from(p.pinDir);
  const buf = Buffer.alloc(4 + 8 + 2 + pin.length + 8 + p.marks.tcp.size * TCP_ENTRY + p.marks.udp.size * UDP_ENTRY);
  let o = buf.writeUInt32LE(MAGIC, 0);
  o = buf.writeDoubleLE(p.lastSeq, o);
  o = buf.writeUInt16LE(pin.length, o);
  o += pin.copy(buf, o);
  o = buf.writeUInt32LE(p.marks.tcp.size, o);
  o = buf.writeUInt32LE(p.marks.udp.size, o);
  for (const [cookie, m] of p.marks.tcp) {
    o = buf.writeBigUInt64LE(cookie, o);
    o = buf.writeDoubleLE(m.bytesSent, o);
    o = buf.writeDoubleLE(m.bytesReceived, o);
    o = buf.writeUInt32LE(m.totalRetrans, o);
    o = buf.writeUInt8((m.establishedCounted ? 1 : 0) | (m.closedCounted ? 2 : 0), o);
  }
  for (const [key, m] of p.marks.udp) {
    o += Buffer.from(key, 'latin1').copy(buf, o, 0, UDP_KEY);
    o = buf.writeDoubleLE(m.bytesSent, o);
    o = buf.writeDoubleLE(m.bytesReceived, o);
    o = buf.writeUInt8(Math.min(m.idleReads, 255), o);
  }
  return buf;
}

/** Throws on anything malformed; callers treat that as "no marks". */
export function decodeMarks(buf: Buffer): PersistedMarks {
  if (buf.readUInt32LE(0) !== MAGIC) throw new Error('not a marks file');
  let o = 4;
  const lastSeq = buf.readDoubleLE(o);
  o += 8;
  const pinLen = buf.readUInt16LE(o);
  o += 2;
  const pinDir = buf.toString('utf8', o, o + pinLen);
  o += pinLen;
  const nTcp = buf.readUInt32LE(o);
  const nUdp = buf.readUInt32LE(o + 4);
  o += 8;
  if (buf.length !== o + nTcp * TCP_ENTRY + nUdp * UDP_ENTRY) throw new Error('truncated marks file');
  const tcp = new Map<bigint, TcpMark>();
  for (let i = 0; i < nTcp; i++, o += TCP_ENTRY) {
    const flags = buf.readUInt8(o + 28);
    tcp.set(buf.readBigUInt64LE(o), {
      bytesSent: buf.readDoubleLE(o + 8),
      bytesReceived: buf.readDoubleLE(o + 16),
      totalRetrans: buf.readUInt32LE(o + 24),
      establishedCounted: (flags & 1) !== 0,
      closedCounted: (flags & 2) !== 0,
      seenAt: 0,
    });
  }
  const udp = new Map<string, UdpMark>();
  for (let i = 0; i < nUdp; i++, o += UDP_ENTRY) {
    udp.set(buf.toString('latin1', o, o + UDP_KEY), {
      bytesSent: buf.readDoubleLE(o + UDP_KEY),
      bytesReceived: buf.readDoubleLE(o + UDP_KEY + 8),
      idleReads: buf.readUInt8(o + UDP_KEY + 16),
      seenAt: 0,
    });
  }
  return { lastSeq, pinDir, marks: { tcp, udp } };
}

export class MarksStore {
  private readonly file: string;
  private readonly pending: string;

  constructor(dir: string) {
    this.file = path.join(dir, 'netflow-marks');
    this.pending = path.join(dir, 'netflow-marks.pending');
  }

  /** Step 1 of a commit. */
  prepare(p: PersistedMarks): void {
    const fd = fs.openSync(this.pending, 'w', 0o640);
    try {
      fs.writeSync(fd, encodeMarks(p));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Step 3 of a commit. */
  promote(): void {
    fs.renameSync(this.pending, this.file);
  }

  /** Step 1 happened but step 2 failed: forget it. */
  abandon(): void {
    fs.rmSync(this.pending, { force: true });
  }

  /**
   * Marks of the last completed commit, if they belong to `pinDir`'s maps.
   * `committed(seq)` tells whether the spool holds sequence number `seq`.
   */
  load(pinDir: string, committed: (seq: number) => boolean): PersistedMarks | undefined {
    try {
      const pending = decodeMarks(fs.readFileSync(this.pending));
      if (committed(pending.lastSeq)) this.promote();
      else this.abandon();
    } catch {
      this.abandon();
    }
    try {
      const m = decodeMarks(fs.readFileSync(this.file));
      return m.pinDir === pinDir && pinDir !== '' ? m : undefined;
    } catch {
      return undefined;
    }
  }

  /** A clean stop unpins the maps: the marks describe nothing any more. */
  clear(): void {
    fs.rmSync(this.file, { force: true });
    this.abandon();
  }
}
