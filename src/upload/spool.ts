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
  /** Byte offset just past each point (see Batch.ends); absent in old records. */
  ends?: number[];
  /** The body's timestamp precision (`ns` when absent): forwarded bodies keep their sender's. */
  precision?: string;
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

/**
 * The undelivered records in order, with O(1) push/shift and running totals,
 * and how many live records each segment file still holds (a file with none
 * is deleted). Draining a large spool must not cost more per record than a
 * small one.
 */
class RecordIndex {
  private items: IndexEntry[] = [];
  private head = 0;
  private readonly liveByFile = new Map<string, number>();
  points = 0;
  bytes = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  first(): IndexEntry | undefined {
    return this.items[this.head];
  }

  push(e: IndexEntry): void {
    this.items.push(e);
    this.liveByFile.set(e.file, (this.liveByFile.get(e.file) ?? 0) + 1);
    this.points += e.points;
    this.bytes += e.size;
  }

  /** Removes the first record; returns it and whether its file is now empty. */
  shift(): { entry: IndexEntry; fileEmpty: boolean } | undefined {
    const entry = this.items[this.head];
    if (!entry) return undefined;
    this.items[this.head++] = undefined as unknown as IndexEntry;
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    this.points -= entry.points;
    this.bytes -= entry.size;
    const left = (this.liveByFile.get(entry.file) ?? 1) - 1;
    if (left > 0) this.liveByFile.set(entry.file, left);
    else this.liveByFile.delete(entry.file);
    return { entry, fileEmpty: left <= 0 };
  }

  /** Drops every record of a file (it vanished or cannot be read); returns their points. */
  dropFile(file: string): { records: number; points: number } {
    let records = 0;
    let points = 0;
    const kept: IndexEntry[] = [];
    for (let i = this.head; i < this.items.length; i++) {
      const e = this.items[i]!;
      if (e.file === file) {
        records++;
        points += e.points;
        this.points -= e.points;
        this.bytes -= e.size;
      } else kept.push(e);
    }
    this.items = kept;
    this.head = 0;
    this.liveByFile.delete(file);
    return { records, points };
  }

  maxSeq(floor: number): number {
    let max = floor;
    for (let i = this.head; i < this.items.length; i++) if (this.items[i]!.seq > max) max = this.items[i]!.seq;
    return max;
  }
}

export class Spool {
  private index = new RecordIndex();
  private nextSeq = 1;
  private ackedSeq = 0;
  private current?: { file: string; fd: number; size: number };
  readonly durable = true;
  private ackWriteFailing = false;
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
    // A loop, not Math.max(...): a big spool holds more records than V8 takes arguments.
    this.nextSeq = this.index.maxSeq(this.ackedSeq) + 1;
    this.refreshStats();
    if (this.index.length > 0) {
      this.log.info({ records: this.index.length, points: this.stats.points, bytes: this.index.bytes }, `spool holds ${this.stats.points} undelivered point(s) from before; delivering them first`);
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
      if (magic !== MAGIC || metaLen > 1 << 20) {
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
        kept++;
      }
      off += size;
    }
    if (kept === 0) this.unlink(file);
  }

  /** Appends records durably (one fsync). Drops the oldest records when over the bound. */
  append(items: { category: string; input: string; points: number; body: Buffer; ends?: number[]; precision?: string }[]): SpoolMeta[] {
    if (items.length === 0) return [];
    const metas: SpoolMeta[] = [];
    const chunks: Buffer[] = [];
    let seq = this.nextSeq;
    for (const it of items) {
      const meta: SpoolMeta = { seq: seq++, category: it.category, input: it.input, points: it.points, ends: it.ends, precision: it.precision };
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
    const buf = Buffer.concat(chunks);
    // Durable first, indexed after: a failed write (ENOSPC, EIO) leaves the
    // queue exactly as it was, and no half record on disk.
    try {
      for (let done = 0; done < buf.length; ) done += fs.writeSync(seg.fd, buf, done, buf.length - done);
      fs.fsyncSync(seg.fd);
    } catch (err) {
      try {
        fs.ftruncateSync(seg.fd, seg.size);
      } catch {
        /* the scan at the next start skips a torn tail anyway */
      }
      throw err;
    }
    this.nextSeq = seq;
    let offset = seg.size;
    for (let i = 0, c = 0; i < metas.length; i++, c += 3) {
      const size = chunks[c]!.length + chunks[c + 1]!.length + chunks[c + 2]!.length;
      this.index.push({ ...metas[i]!, file: seg.file, offset, size });
      offset += size;
    }
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
    while (this.index.bytes > this.maxBytes && this.index.length > 1) {
      const gone = this.index.shift()!;
      droppedPoints += gone.entry.points;
      droppedRecords += 1;
      this.ackedSeq = gone.entry.seq;
      if (gone.fileEmpty) this.release(gone.entry.file);
    }
    if (droppedRecords === 0) return;
    this.persistAcked();
    this.stats.droppedPoints += droppedPoints;
    this.stats.droppedRecords += droppedRecords;
    this.log.error(
      { droppedPoints, droppedRecords, totalDroppedPoints: this.stats.droppedPoints, maxBytes: this.maxBytes },
      `spool is full (${this.maxBytes} bytes): dropped the oldest ${droppedPoints} point(s); DataKit has been unreachable too long or --spool-max-bytes is too small`,
    );
  }

  /**
   * The oldest undelivered record, or undefined. A segment that vanished or
   * cannot be read is given up (its points counted as dropped, logged once),
   * so one bad file never blocks what is queued behind it.
   */
  peek(): SpoolRecord | undefined {
    for (;;) {
      const e = this.index.first();
      if (!e) return undefined;
      const buf = Buffer.alloc(e.size);
      try {
        const fd = fs.openSync(path.join(this.dir, e.file), 'r');
        try {
          if (fs.readSync(fd, buf, 0, e.size, e.offset) !== e.size) throw new Error('short read');
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        const lost = this.index.dropFile(e.file);
        this.stats.droppedPoints += lost.points;
        this.stats.droppedRecords += lost.records;
        this.log.error({ file: e.file, err: (err as Error).message, ...lost }, `spool segment ${e.file} cannot be read (${(err as Error).message}): dropped its ${lost.points} point(s)`);
        if (this.current?.file === e.file) this.release(e.file);
        this.refreshStats();
        continue;
      }
      const metaLen = buf.readUInt32LE(4);
      return { seq: e.seq, category: e.category, input: e.input, points: e.points, ends: e.ends, precision: e.precision, body: buf.subarray(HEADER + metaLen) };
    }
  }

  /** Marks the oldest record delivered (or given up on). */
  ack(seq: number): void {
    const e = this.index.first();
    if (!e || e.seq !== seq) return;
    const gone = this.index.shift()!;
    this.ackedSeq = seq;
    this.persistAcked();
    if (gone.fileEmpty) this.release(gone.entry.file);
    this.refreshStats();
  }

  get isEmpty(): boolean {
    return this.index.length === 0;
  }

  /** The sequence number the next append() will use. */
  get upcomingSeq(): number {
    return this.nextSeq;
  }

  /**
   * Records the delivered position. A failure is logged, not thrown:
   * delivered is delivered, and only a restart before the next successful
   * write would resend what was delivered since.
   */
  private persistAcked(): void {
    try {
      const tmp = path.join(this.dir, 'acked.tmp');
      fs.writeFileSync(tmp, `${this.ackedSeq}\n`);
      fs.renameSync(tmp, path.join(this.dir, 'acked'));
      this.ackWriteFailing = false;
    } catch (err) {
      if (!this.ackWriteFailing) {
        this.log.warn({ err: (err as Error).message }, `cannot record delivery progress in ${this.dir}: ${(err as Error).message}; a restart may resend some points`);
      }
      this.ackWriteFailing = true;
    }
  }

  /** A segment with no live record left: close it if it is the one we append to, and delete it. */
  private release(file: string): void {
    if (this.current?.file === file) {
      fs.closeSync(this.current.fd);
      this.current = undefined;
    }
    this.unlink(file);
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
    this.stats.points = this.index.points;
    this.stats.bytes = this.index.bytes;
  }

  close(): void {
    if (this.current) fs.closeSync(this.current.fd);
    this.current = undefined;
  }
}
