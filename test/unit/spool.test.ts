// The disk spool on its own: FIFO order across appends and reopens, the acked
// pointer, segment clean-up, the byte bound, and what open() does with torn,
// corrupt, foreign and empty segment files.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Spool, type SpoolRecord } from '../../src/upload/spool';
import { type LogLine, capture } from '../helpers/log-capture';

const WARN = 40;
const ERROR = 50;
const HEADER = 16;

type Item = { category: string; input: string; points: number; body: Buffer };

/** A record whose body is one valid line; `points` is free so drops can be counted exactly. */
function item(i: number, points = 1, category = 'network', input = 'ebpf-net/netflow'): Item {
  return { category, input, points, body: Buffer.from(`netflow,dst_port=${1000 + i} bytes_read=${i}i 17000000000000${String(i).padStart(5, '0')}\n`) };
}

let root: string;
let dir: string;
const open: Spool[] = [];

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-test-'));
  dir = path.join(root, 'spool');
});

afterEach(() => {
  for (const s of open.splice(0)) s.close();
  fs.rmSync(root, { recursive: true, force: true });
});

function openSpool(maxBytes = 64 << 20): { spool: Spool; lines: LogLine[] } {
  const { logger, lines } = capture();
  const spool = new Spool(dir, maxBytes, logger);
  spool.open();
  open.push(spool);
  return { spool, lines };
}

/** Closes a spool as a process exit would (the next Spool on `dir` is the "restart"). */
function shut(spool: Spool): void {
  spool.close();
  open.splice(open.indexOf(spool), 1);
}

/** Everything still queued, oldest first, acknowledging as it goes. */
function drainAll(spool: Spool): SpoolRecord[] {
  const out: SpoolRecord[] = [];
  for (let r = spool.peek(); r; r = spool.peek()) {
    out.push({ ...r, body: Buffer.from(r.body) });
    spool.ack(r.seq);
  }
  return out;
}

const segments = (): string[] => fs.readdirSync(dir).filter((f) => /^seg-\d+\.dat$/.test(f)).sort();
const segName = (seq: number): string => `seg-${String(seq).padStart(16, '0')}.dat`;
const ackedFile = (): string => fs.readFileSync(path.join(dir, 'acked'), 'utf8');
const view = (r: SpoolRecord) => ({ seq: r.seq, category: r.category, input: r.input, points: r.points, body: r.body.toString() });

describe('Spool order and the acked pointer', () => {
  it('peeks and acks oldest first across appends, and a reopen sees exactly the un-acked records with identical bodies', () => {
    const { spool } = openSpool();
    const items = [item(1, 3), item(2, 5), item(3, 7, 'logging', 'ebpf-bash'), item(4, 1), item(5, 2)];
    expect(spool.append(items.slice(0, 2)).map((m) => m.seq)).toEqual([1, 2]);
    expect(spool.append(items.slice(2, 3))).toEqual([{ seq: 3, category: 'logging', input: 'ebpf-bash', points: 7 }]);
    expect(spool.append(items.slice(3)).map((m) => m.seq)).toEqual([4, 5]);
    expect(spool.append([])).toEqual([]);
    expect(spool.stats).toMatchObject({ records: 5, points: 18 });
    expect(spool.upcomingSeq).toBe(6);

    expect(view(spool.peek()!)).toEqual({ seq: 1, category: 'network', input: 'ebpf-net/netflow', points: 3, body: items[0]!.body.toString() });
    spool.ack(1);
    expect(spool.peek()!.seq).toBe(2);
    // Only the head can be acknowledged: anything else is ignored.
    spool.ack(4);
    spool.ack(1);
    expect(spool.peek()!.seq).toBe(2);
    spool.ack(2);
    expect(spool.stats).toMatchObject({ records: 3, points: 10 });
    expect(ackedFile().trim()).toBe('2');
    shut(spool);

    const { spool: again, lines } = openSpool();
    expect(again.stats).toMatchObject({ records: 3, points: 10, corruptSegments: 0 });
    expect(again.upcomingSeq).toBe(6);
    expect(lines.find((l) => /spool holds 10 undelivered point\(s\)/.test(l.msg))).toMatchObject({ records: 3, points: 10 });
    const rest = drainAll(again).map(view);
    expect(rest).toEqual([
      { seq: 3, category: 'logging', input: 'ebpf-bash', points: 7, body: items[2]!.body.toString() },
      { seq: 4, category: 'network', input: 'ebpf-net/netflow', points: 1, body: items[3]!.body.toString() },
      { seq: 5, category: 'network', input: 'ebpf-net/netflow', points: 2, body: items[4]!.body.toString() },
    ]);
    expect(again.isEmpty).toBe(true);
    expect(again.peek()).toBeUndefined();
  });

  it('keeps the acked pointer across several reopens and keeps numbering after it', () => {
    const first = openSpool().spool;
    first.append([item(1), item(2), item(3), item(4)]);
    first.ack(1);
    shut(first);

    const second = openSpool().spool;
    expect(second.peek()!.seq).toBe(2);
    second.ack(2);
    second.ack(3);
    shut(second);
    expect(ackedFile().trim()).toBe('3');

    const third = openSpool().spool;
    expect(third.stats.records).toBe(1);
    expect(third.peek()!.body.toString()).toBe(item(4).body.toString());
    third.ack(4);
    shut(third);

    // Everything delivered: the next record continues the numbering rather than reusing seq 1.
    const fourth = openSpool().spool;
    expect(fourth.isEmpty).toBe(true);
    expect(fourth.upcomingSeq).toBe(5);
    expect(fourth.append([item(5)])[0]!.seq).toBe(5);
    expect(drainAll(fourth).map((r) => r.seq)).toEqual([5]);
  });

  it('does not lose a torn acked file: a missing pointer re-delivers rather than skips', () => {
    const s = openSpool().spool;
    s.append([item(1), item(2)]);
    s.ack(1);
    shut(s);
    fs.writeFileSync(path.join(dir, 'acked'), 'garbage\n');
    const again = openSpool().spool;
    expect(drainAll(again).map((r) => r.seq)).toEqual([1, 2]);
  });

  it('removes a segment file once every record in it is acknowledged, and only then', () => {
    // Segments roll over at 8 MiB: three 5 MiB bodies give seg-1 (records 1, 2) and seg-3 (record 3).
    const big = (i: number): Item => ({ category: 'network', input: 'ebpf-net/netflow', points: 1, body: Buffer.alloc(5 << 20, 97 + i) });
    const { spool } = openSpool();
    spool.append([big(1)]);
    spool.append([big(2)]);
    spool.append([big(3)]);
    expect(segments()).toEqual([segName(1), segName(3)]);

    spool.ack(1);
    expect(segments()).toEqual([segName(1), segName(3)]);
    spool.ack(2);
    expect(segments()).toEqual([segName(3)]);
    shut(spool);

    const again = openSpool().spool;
    const r = again.peek()!;
    expect(r.seq).toBe(3);
    expect(r.body.equals(big(3).body)).toBe(true);
    again.ack(3);
    expect(segments()).toEqual([]);
    // The emptied current segment is closed, not reused: the next append starts a new file.
    again.append([item(4)]);
    expect(segments()).toEqual([segName(4)]);
    again.ack(4);
    expect(segments()).toEqual([]);
  });

  it('deletes fully acknowledged segments left by a previous run at open', () => {
    const s = openSpool().spool;
    s.append([item(1), item(2)]);
    shut(s);
    // A crash after writing `acked` but before unlinking: the segment is all acknowledged.
    fs.writeFileSync(path.join(dir, 'acked'), '2\n');
    const again = openSpool().spool;
    expect(again.isEmpty).toBe(true);
    expect(segments()).toEqual([]);
    expect(again.upcomingSeq).toBe(3);
  });
});

describe('Spool bound', () => {
  // Every test record has a one-digit seq and points count, so all have the same size on disk.
  function recordSize(): number {
    const probeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-probe-'));
    try {
      const s = new Spool(probeDir, 1 << 20, capture().logger);
      s.open();
      s.append([item(1, 1)]);
      const n = s.stats.bytes;
      s.close();
      return n;
    } finally {
      fs.rmSync(probeDir, { recursive: true, force: true });
    }
  }

  it('drops the oldest records beyond maxBytes, counts points and records exactly, and logs once per append', () => {
    const size = recordSize();
    expect(size).toBeGreaterThan(HEADER);
    const { spool, lines } = openSpool(3 * size);
    const full = () => lines.filter((l) => l.level === ERROR && /spool is full/.test(l.msg));

    spool.append([item(1, 1), item(2, 2)]);
    expect(full()).toHaveLength(0);
    expect(spool.stats).toMatchObject({ records: 2, bytes: 2 * size, droppedPoints: 0, droppedRecords: 0 });

    // 5 records for room of 3: the two oldest (1 + 2 points) go, in one log line.
    spool.append([item(3, 3), item(4, 4), item(5, 5)]);
    expect(spool.stats).toMatchObject({ records: 3, points: 12, bytes: 3 * size, droppedPoints: 3, droppedRecords: 2 });
    expect(full()).toHaveLength(1);
    expect(full()[0]).toMatchObject({ droppedPoints: 3, droppedRecords: 2, totalDroppedPoints: 3, maxBytes: 3 * size });
    expect(spool.peek()!.seq).toBe(3);

    spool.append([item(6, 6)]);
    expect(spool.stats).toMatchObject({ records: 3, points: 15, droppedPoints: 6, droppedRecords: 3 });
    expect(full()).toHaveLength(2);
    expect(full()[1]).toMatchObject({ droppedPoints: 3, droppedRecords: 1, totalDroppedPoints: 6 });

    // What was dropped stays dropped after a restart.
    shut(spool);
    const again = openSpool(3 * size).spool;
    expect(drainAll(again).map((r) => [r.seq, r.points, r.body.toString()])).toEqual([
      [4, 4, item(4).body.toString()],
      [5, 5, item(5).body.toString()],
      [6, 6, item(6).body.toString()],
    ]);
  });

  it('never drops the newest record, even when it alone exceeds the bound', () => {
    const size = recordSize();
    const { spool, lines } = openSpool(2 * size);
    spool.append([item(1, 1), item(2, 2)]);
    const huge: Item = { category: 'network', input: 'ebpf-net/netflow', points: 9, body: Buffer.from(`netflow f="${'x'.repeat(4 * size)}" 1\n`) };
    spool.append([huge]);
    expect(spool.stats).toMatchObject({ records: 1, points: 9, droppedPoints: 3, droppedRecords: 2 });
    expect(spool.peek()!.body.equals(huge.body)).toBe(true);
    expect(lines.filter((l) => /spool is full/.test(l.msg))).toHaveLength(1);
  });
});

describe('Spool.open with damaged or foreign files', () => {
  const damage = (lines: LogLine[]) => lines.filter((l) => l.level === WARN && /is damaged at byte/.test(l.msg));

  /** Writes records 1..n into seg-1 (one append per record) and returns each record's [offset, size]. */
  function writeRecords(n: number): { layout: [number, number][]; items: Item[] } {
    const s = openSpool().spool;
    const layout: [number, number][] = [];
    const items: Item[] = [];
    let offset = 0;
    for (let i = 1; i <= n; i++) {
      const it = item(i, i);
      s.append([it]);
      const size = fs.statSync(path.join(dir, segName(1))).size - offset;
      layout.push([offset, size]);
      items.push(it);
      offset += size;
    }
    shut(s);
    return { layout, items };
  }

  it('(a) a segment cut in the middle of a record keeps every complete record before it, and the spool keeps working across reopens', () => {
    const { layout, items } = writeRecords(4);
    const [off4, size4] = layout[3]!;
    fs.truncateSync(path.join(dir, segName(1)), off4 + HEADER + 5 + Math.floor((size4 - HEADER - 5) / 2));

    const { spool, lines } = openSpool();
    expect(spool.stats).toMatchObject({ records: 3, points: 6, corruptSegments: 1 });
    expect(damage(lines)).toHaveLength(1);
    expect(damage(lines)[0]).toMatchObject({ offset: off4, why: 'truncated record' });
    expect(damage(lines)[0]!.file).toBe(path.join(dir, segName(1)));

    // New records get the numbers after the last intact one and land in a new segment.
    expect(spool.append([item(10, 1), item(11, 1)]).map((m) => m.seq)).toEqual([4, 5]);
    shut(spool);

    const { spool: again, lines: lines2 } = openSpool();
    expect(again.stats.corruptSegments).toBe(1);
    expect(damage(lines2)).toHaveLength(1);
    expect(drainAll(again).map((r) => [r.seq, r.body.toString()])).toEqual([
      [1, items[0]!.body.toString()],
      [2, items[1]!.body.toString()],
      [3, items[2]!.body.toString()],
      [4, item(10).body.toString()],
      [5, item(11).body.toString()],
    ]);
    expect(segments()).toEqual([]);
  });

  it('(a) a segment cut inside a record header is handled the same way', () => {
    const { layout } = writeRecords(3);
    fs.truncateSync(path.join(dir, segName(1)), layout[2]![0] + 7);
    const { spool, lines } = openSpool();
    expect(spool.stats).toMatchObject({ records: 2, corruptSegments: 1 });
    expect(damage(lines)[0]).toMatchObject({ offset: layout[2]![0], why: 'truncated header' });
    expect(drainAll(spool).map((r) => r.seq)).toEqual([1, 2]);
  });

  it('(b) a flipped byte inside a body fails the checksum; the rest of that segment is skipped', () => {
    const { layout, items } = writeRecords(4);
    const file = path.join(dir, segName(1));
    const data = fs.readFileSync(file);
    const [off2, size2] = layout[1]!;
    data[off2 + size2 - 3] ^= 0x01; // inside record 2's body
    fs.writeFileSync(file, data);

    const { spool, lines } = openSpool();
    expect(spool.stats).toMatchObject({ records: 1, points: 1, corruptSegments: 1 });
    expect(damage(lines)).toHaveLength(1);
    expect(damage(lines)[0]).toMatchObject({ offset: off2, why: 'checksum mismatch' });
    expect(drainAll(spool).map((r) => [r.seq, r.body.toString()])).toEqual([[1, items[0]!.body.toString()]]);
  });

  it('(b) a damaged segment does not hide the intact segments after it', () => {
    // seg-1 holds 1..2 (damaged at 2); a reopen then writes 2..3 into a new segment.
    const { layout } = writeRecords(2);
    const file = path.join(dir, segName(1));
    const data = fs.readFileSync(file);
    data[layout[1]![0] + layout[1]![1] - 2] ^= 0xff;
    fs.writeFileSync(file, data);
    const s = openSpool().spool;
    s.append([item(20), item(21)]);
    shut(s);
    const { spool } = openSpool();
    expect(drainAll(spool).map((r) => [r.seq, r.body.toString()])).toEqual([
      [1, item(1).body.toString()],
      [2, item(20).body.toString()],
      [3, item(21).body.toString()],
    ]);
  });

  it('(c) a garbage file named like a segment is skipped, and records later written under that name survive', () => {
    // 98 records, so the first append after the reopen starts seg-...99: the garbage file's name.
    const s = openSpool().spool;
    s.append(Array.from({ length: 98 }, (_, i) => item(i + 1)));
    shut(s);
    fs.writeFileSync(path.join(dir, segName(99)), Buffer.from('this is not a spool segment, just some text that is long enough'));

    const { spool, lines } = openSpool();
    expect(spool.stats).toMatchObject({ records: 98, corruptSegments: 1 });
    expect(damage(lines)).toHaveLength(1);
    expect(damage(lines)[0]).toMatchObject({ file: path.join(dir, segName(99)), offset: 0, why: 'bad record header' });
    expect(spool.append([item(500)])[0]!.seq).toBe(99);
    shut(spool);

    const { spool: again, lines: lines2 } = openSpool();
    expect(again.stats).toMatchObject({ records: 99, corruptSegments: 0 });
    expect(damage(lines2)).toEqual([]);
    const all = drainAll(again);
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 99 }, (_, i) => i + 1));
    expect(all.at(-1)!.body.toString()).toBe(item(500).body.toString());
  });

  it('(c) a short garbage file and a directory named like a segment never make open() throw', () => {
    writeRecords(2);
    fs.writeFileSync(path.join(dir, segName(40)), 'xy');
    fs.mkdirSync(path.join(dir, segName(41)));
    const { spool, lines } = openSpool();
    expect(spool.stats).toMatchObject({ records: 2, corruptSegments: 1 });
    expect(lines.some((l) => l.level === WARN && /cannot read spool segment/.test(l.msg))).toBe(true);
    expect(drainAll(spool).map((r) => r.seq)).toEqual([1, 2]);
  });

  it('(d) an empty segment file is neither an error nor a record', () => {
    writeRecords(2);
    fs.writeFileSync(path.join(dir, segName(30)), '');
    const { spool, lines } = openSpool();
    expect(spool.stats).toMatchObject({ records: 2, points: 3, corruptSegments: 0 });
    expect(lines.filter((l) => l.level >= WARN)).toEqual([]);
    spool.append([item(3)]);
    shut(spool);
    const again = openSpool().spool;
    expect(drainAll(again).map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  it('(d) a spool holding only an empty segment opens empty', () => {
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, segName(1)), '');
    const { spool, lines } = openSpool();
    expect(spool.isEmpty).toBe(true);
    expect(spool.stats.corruptSegments).toBe(0);
    expect(lines.filter((l) => l.level >= WARN)).toEqual([]);
    expect(spool.append([item(1)])[0]!.seq).toBe(1);
    expect(drainAll(spool).map((r) => r.body.toString())).toEqual([item(1).body.toString()]);
  });

  it('creates a missing directory', () => {
    dir = path.join(root, 'nested', 'spool');
    const { spool } = openSpool();
    expect(spool.isEmpty).toBe(true);
    expect(fs.statSync(dir).isDirectory()).toBe(true);
  });
});
