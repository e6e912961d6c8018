// A bounded, durable FIFO of encoded batches on disk: what DataKit has not
// accepted yet survives a DataKit outage, a crash or a SIGKILL.
//
// Layout: <dir>/seg-<first seq>.dat segment files of framed records, and
// <dir>/acked holding the highest delivered sequence number. A record is
//   magic u32 | meta length u32 | body length u32 | crc32(meta+body) u32 | meta JSON | body
// A torn write at a crash leaves a short or mismatching tail: the scan stops
// reading that segment there (logged), and never fails start-up.
//
// Durability policy: append() writes a group of records and fsyncs once per
// call (once per flush cycle); ack() rewrites `acked` with tmp+rename. A power
// loss can at worst resend the batches acknowledged since the last ack write.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import type { Logger } from 'pino';

export interface SpoolMeta {
  seq: number;
  category: string;
  input: string;
  points: number;
}

export interface SpoolRecord extends SpoolMeta {
  body: Buffer;
}

interface IndexEntry extends SpoolMeta {
  file: string;
  offset: number;
  /** Whole record size on disk. */
  size: number;
}

const MAGIC = 0x53454b44; // "DKES"
const HEADER = 16;
const SEGMENT_BYTES = 8 << 20;

export interface SpoolStats {
  records: number;
  points: number;
  bytes: number;
  droppedPoints: number;
  droppedRecords: number;
  corruptSegments: number;
}

export class Spool {
  private index: IndexEntry[] = [];
  private bytes = 0;
  private nextSeq = 1;
  private ackedSeq = 0;
  private current?: { file: string; fd: number; size: number };
  readonly stats: SpoolStats = { records: 0, points: 0, bytes: 0, droppedPoints: 0, droppedRecords: 0, corruptSegments: 0 };

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  /** Reads what a previous process left. Never throws for bad content; throws only if `dir` cannot be created. */
  open(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    try {
      this.ackedSeq = Number(fs.readFileSync(path.join(this.dir, 'acked'), 'utf8').trim()) || 0;
    } catch {
      this.ackedSeq = 0;
    }
    const segments = fs
      .readdirSync(this.dir)
      .filter((f) => /^seg-\d+\.dat$/.test(f))
      .sort();
    for (const f of segments) this.scan(f);
    this.nextSeq = Math.max(this.ackedSeq, ...this.index.map((e) => e.seq)) + 1;
    this.refreshStats();
    if (this.index.length > 0) {
      this.log.info({ records: this.index.length, points: this.stats.points, bytes: this.bytes }, `spool holds ${this.stats.points} undelivered point(s) from before; delivering them first`);
    }
  }

  private scan(file: string): void {
    const full = path.join(this.dir, file);
    let data: Buffer;
    try {
      data = fs.readFileSync(full);
    } catch (err) {
      this.log.warn({ file: full, err: (err as Error).message }, 'cannot read spool segment; skipped');
      return;
    }
    let off = 0;
    let kept = 0;
    while (off < data.length) {
      const bad = (why: string): void => {
        this.stats.corruptSegments += 1;
        this.log.warn({ file: full, offset: off, why }, `spool segment ${file} is damaged at byte ${off} (${why}); the rest of it is skipped`);
      };
      if (data.length - off < HEADER) {
        bad('truncated header');
        break;
      }
      const magic = data.readUInt32LE(off);
      const metaLen = data.readUInt32LE(off + 4);
      const bodyLen = data.readUInt32LE(off + 8);
      const crc = data.readUInt32LE(off + 12);
      const size = HEADER + metaLen + bodyLen;
      if (magic !== MAGIC || metaLen > 4096) {
        bad('bad record header');
        break;
      }
      if (off + size > data.length) {
        bad('truncated record');
        break;
      }
      if (zlib.crc32(data.subarray(off + HEADER, off + size)) !== crc) {
        bad('checksum mismatch');
        break;
      }
      let meta: SpoolMeta;
      try {
        meta = JSON.parse(data.toString('utf8', off + HEADER, off + HEADER + metaLen)) as SpoolMeta;
      } catch {
        bad('unreadable record metadata');
        break;
      }
      if (meta.seq > this.ackedSeq) {
        this.index.push({ ...meta, file, offset: off, size });
        this.bytes += size;
        kept++;
      }
      off += size;
    }
    if (kept === 0) this.unlink(file);
  }

  /** Appends records durably (one fsync). Drops the oldest records when over the bound. */
  append(items: { category: string; input: string; points: number; body: Buffer }[]): SpoolMeta[] {
    if (items.length === 0) return [];
    const metas: SpoolMeta[] = [];
    const chunks: Buffer[] = [];
    for (const it of items) {
      const meta: SpoolMeta = { seq: this.nextSeq++, category: it.category, input: it.input, points: it.points };
      const metaBuf = Buffer.from(JSON.stringify(meta));
      const header = Buffer.alloc(HEADER);
      header.writeUInt32LE(MAGIC, 0);
      header.writeUInt32LE(metaBuf.length, 4);
      header.writeUInt32LE(it.body.length, 8);
      header.writeUInt32LE(zlib.crc32(it.body, zlib.crc32(metaBuf)), 12);
      chunks.push(header, metaBuf, it.body);
      metas.push(meta);
    }
    const seg = this.segmentFor(metas[0]!.seq);
    let offset = seg.size;
    for (let i = 0, c = 0; i < metas.length; i++, c += 3) {
      const size = chunks[c]!.length + chunks[c + 1]!.length + chunks[c + 2]!.length;
      this.index.push({ ...metas[i]!, file: seg.file, offset, size });
      this.bytes += size;
      offset += size;
    }
    const buf = Buffer.concat(chunks);
    fs.writeSync(seg.fd, buf);
    fs.fsyncSync(seg.fd);
    seg.size += buf.length;
    this.enforceBound();
    this.refreshStats();
    return metas;
  }

  private segmentFor(seq: number): { file: string; fd: number; size: number } {
    if (this.current && this.current.size < SEGMENT_BYTES) return this.current;
    if (this.current) fs.closeSync(this.current.fd);
    const file = `seg-${String(seq).padStart(16, '0')}.dat`;
    const fd = fs.openSync(path.join(this.dir, file), 'a', 0o640);
    this.current = { file, fd, size: fs.fstatSync(fd).size };
    return this.current;
  }

  private enforceBound(): void {
    let droppedPoints = 0;
    let droppedRecords = 0;
    while (this.bytes > this.maxBytes && this.index.length > 1) {
      const e = this.index.shift()!;
      this.bytes -= e.size;
      droppedPoints += e.points;
      droppedRecords += 1;
      this.ackedSeq = e.seq;
      this.releaseSegmentsBefore();
    }
    if (droppedRecords > 0) {
      this.writeAcked();
      this.stats.droppedPoints += droppedPoints;
      this.stats.droppedRecords += droppedRecords;
      this.log.error(
        { droppedPoints, droppedRecords, totalDroppedPoints: this.stats.droppedPoints, maxBytes: this.maxBytes },
        `spool is full (${this.maxBytes} bytes): dropped the oldest ${droppedPoints} point(s); DataKit has been unreachable too long or --spool-max-bytes is too small`,
      );
    }
  }

  /** The oldest undelivered record, or undefined. */
  peek(): SpoolRecord | undefined {
    const e = this.index[0];
    if (!e) return undefined;
    const buf = Buffer.alloc(e.size);
    const fd = fs.openSync(path.join(this.dir, e.file), 'r');
    try {
      fs.readSync(fd, buf, 0, e.size, e.offset);
    } finally {
      fs.closeSync(fd);
    }
    const metaLen = buf.readUInt32LE(4);
    return { seq: e.seq, category: e.category, input: e.input, points: e.points, body: buf.subarray(HEADER + metaLen) };
  }

  /** Marks the oldest record delivered (or given up on). */
  ack(seq: number): void {
    const e = this.index[0];
    if (!e || e.seq !== seq) return;
    this.index.shift();
    this.bytes -= e.size;
    this.ackedSeq = seq;
    this.writeAcked();
    this.releaseSegmentsBefore();
    this.refreshStats();
  }

  get isEmpty(): boolean {
    return this.index.length === 0;
  }

  /** The sequence number the next append() will use. */
  get upcomingSeq(): number {
    return this.nextSeq;
  }

  private releaseSegmentsBefore(): void {
    const live = new Set(this.index.map((e) => e.file));
    for (const f of fs.readdirSync(this.dir)) {
      if (!/^seg-\d+\.dat$/.test(f) || live.has(f)) continue;
      if (this.current?.file === f) {
        fs.closeSync(this.current.fd);
        this.current = undefined;
      }
      this.unlink(f);
    }
  }

  private writeAcked(): void {
    const tmp = path.join(this.dir, 'acked.tmp');
    fs.writeFileSync(tmp, `${this.ackedSeq}\n`);
    fs.renameSync(tmp, path.join(this.dir, 'acked'));
  }

  private unlink(file: string): void {
    try {
      fs.unlinkSync(path.join(this.dir, file));
    } catch {
      /* already gone */
    }
  }

  private refreshStats(): void {
    this.stats.records = this.index.length;
    this.stats.points = this.index.reduce((a, e) => a + e.points, 0);
    this.stats.bytes = this.bytes;
  }

  close(): void {
    if (this.current) fs.closeSync(this.current.fd);
    this.current = undefined;
  }
}
