// Delivery end to end on 127.0.0.1: a real Uploader posting to the real
// DataKit-compatible receiver, through the disk spool (or the memory queue).
// The receiver's responder forces DataKit's failure answers.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Metrics } from '../../src/daemon/metrics';
import { float, type Point } from '../../src/lineproto/point';
import type { ParsedPoint } from '../../src/lineproto/parse';
import { dataKitError, startReceiver, type Receiver } from '../../src/receiver/receiver';
import { Delivery, MemoryQueue, type BatchQueue } from '../../src/upload/delivery';
import { Spool } from '../../src/upload/spool';
import { encodeBatches, Uploader } from '../../src/upload/uploader';
import { type LogLine, capture } from '../helpers/log-capture';

const INFO = 30;
const WARN = 40;
const ERROR = 50;
const INPUT = 'ebpf-net/netflow';
const T0 = 1700000000000000000n;

/** Netflow-shaped points; `bytes_read` is the point's identity (from + index). */
function netflow(n: number, from = 0): Point[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return {
      measurement: 'netflow',
      tags: {
        host: 'h1',
        service: 'ebpf',
        direction: 'outgoing',
        transport: 'tcp',
        family: 'IPv4',
        src_ip: '10.0.0.5',
        src_port: '*',
        dst_ip: `93.184.${(i >> 8) & 255}.${i & 255}`,
        dst_port: '443',
        process_name: 'curl',
      },
      fields: { bytes_read: i, bytes_written: 2 * i, retransmits: i % 3, rtt: float(1.5 + i / 8), rtt_var: float(0.25) },
      timestampNs: T0 + BigInt(i),
    };
  });
}

/** What the receiver's parser must give back for a point made by netflow(). */
function parsedView(p: Point): Pick<ParsedPoint, 'measurement' | 'tags' | 'fields' | 'timestamp'> {
  const fields: Record<string, number> = {};
  for (const [k, v] of Object.entries(p.fields)) fields[k] = typeof v === 'object' ? (v as { value: number }).value : (v as number);
  return { measurement: p.measurement, tags: { ...p.tags }, fields, timestamp: p.timestampNs };
}

const ids = (pts: ParsedPoint[]): number[] => pts.map((p) => p.fields.bytes_read as number);
const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

/** One counter with exactly these labels, read from the Prometheus text (0 if absent). */
function counter(m: Metrics, name: string, labels: Record<string, string>): number {
  for (const line of m.prometheus().split('\n')) {
    const match = /^datakit_ebpf_(\w+)_total\{(.*)\} (\d+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const got = Object.fromEntries([...match[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (JSON.stringify(Object.entries(got).sort()) === JSON.stringify(Object.entries(labels).sort())) return Number(match[3]);
  }
  return 0;
}

const total = (m: Metrics, name: string): number => m.summary()[name] ?? 0;

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let root: string;
let receivers: Receiver[];
let receiver: Receiver;
let cleanups: (() => Promise<void> | void)[];

beforeEach(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'delivery-test-'));
  cleanups = [];
  receiver = await startReceiver({ host: '127.0.0.1', port: 0 });
  receivers = [receiver];
});

afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  for (const r of receivers) await r.close();
  fs.rmSync(root, { recursive: true, force: true });
});

interface Rig {
  delivery: Delivery;
  queue: BatchQueue;
  metrics: Metrics;
  lines: LogLine[];
  uploader: Uploader;
}

function openSpool(dir = path.join(root, 'spool'), log = capture()): { spool: Spool; lines: LogLine[] } {
  const spool = new Spool(dir, 64 << 20, log.logger);
  spool.open();
  return { spool, lines: log.lines };
}

function rig(opts: { url?: string; queue?: BatchQueue; gzip?: boolean; log?: ReturnType<typeof capture> } = {}): Rig {
  const log = opts.log ?? capture();
  const metrics = new Metrics();
  const uploader = new Uploader({ baseUrl: opts.url ?? receiver.url, logger: log.logger, timeoutMs: 5_000 });
  const queue = opts.queue ?? openSpool(path.join(root, 'spool'), log).spool;
  const delivery = new Delivery({ uploader, queue, log: log.logger, metrics, gzip: opts.gzip ?? false, backoffInitialMs: 20, backoffMaxMs: 200 });
  cleanups.push(async () => {
    await delivery.close();
    uploader.destroy();
  });
  return { delivery, queue, metrics, lines: log.lines, uploader };
}

const segmentFiles = (dir = path.join(root, 'spool')): string[] => fs.readdirSync(dir).filter((f) => /^seg-\d+\.dat$/.test(f));

describe('Delivery: the happy path', () => {
  it('delivers 600 netflow points as 3 batches in order, exactly as written, and empties the spool', async () => {
    const { delivery, queue, metrics, lines } = rig();
    const points = netflow(600);
    const receipt = await delivery.write('network', INPUT, points);
    expect(receipt).toEqual({ queued: 600, rejected: 0, lastSeq: 3 });

    await waitFor('the spool to empty', () => queue.isEmpty);
    expect(receiver.writes.map((w) => [w.status, w.points.length])).toEqual([
      [200, 256],
      [200, 256],
      [200, 88],
    ]);
    for (const w of receiver.writes) {
      expect(w).toMatchObject({ url: '/v1/write/network?input=ebpf-net%2Fnetflow&precision=ns', category: 'network', input: INPUT, precision: 'ns' });
    }
    const got = receiver.points('netflow');
    expect(got.map((p) => ({ measurement: p.measurement, tags: p.tags, fields: p.fields, timestamp: p.timestamp }))).toEqual(points.map(parsedView));
    expect(got[599]!.fieldTypes).toEqual({ bytes_read: 'int', bytes_written: 'int', retransmits: 'int', rtt: 'float', rtt_var: 'float' });

    expect(counter(metrics, 'points_collected', { input: INPUT })).toBe(600);
    expect(counter(metrics, 'points_spooled', { input: INPUT })).toBe(600);
    expect(counter(metrics, 'points_sent', { input: INPUT })).toBe(600);
    expect(total(metrics, 'batches_retried')).toBe(0);
    expect(total(metrics, 'points_dropped')).toBe(0);
    expect(queue.stats).toMatchObject({ records: 0, points: 0, bytes: 0 });
    expect(segmentFiles()).toEqual([]);
    expect(fs.readFileSync(path.join(root, 'spool', 'acked'), 'utf8').trim()).toBe('3');
    expect(lines.filter((l) => l.level >= WARN)).toEqual([]);
    expect(await delivery.drain(1_000)).toBe(true);
  });

  it('keeps write order across several writes and inputs', async () => {
    const { delivery, queue } = rig();
    await delivery.write('network', INPUT, netflow(100, 0));
    const bash: Point = { measurement: 'bash', tags: { host: 'h1' }, fields: { cmd: 'ls -la "x"', pid: '42' }, timestampNs: 5n };
    await delivery.write('logging', 'ebpf-bash', [bash]);
    await delivery.write('network', INPUT, netflow(100, 100));
    await waitFor('the spool to empty', () => queue.isEmpty);
    expect(receiver.writes.map((w) => [w.category, w.input, w.status])).toEqual([
      ['network', INPUT, 200],
      ['logging', 'ebpf-bash', 200],
      ['network', INPUT, 200],
    ]);
    expect(ids(receiver.points('netflow'))).toEqual(range(200));
    expect(receiver.points('bash')[0]!.fields.cmd).toBe('ls -la "x"');
  });

  it('counts and logs points that cannot be encoded, and delivers the rest', async () => {
    const { delivery, queue, metrics, lines } = rig();
    const bad: Point = { measurement: 'netflow', tags: { host: 'h1' }, fields: { bytes_read: 1.5 }, timestampNs: 1n };
    const receipt = await delivery.write('network', INPUT, [...netflow(2), bad]);
    expect(receipt).toEqual({ queued: 2, rejected: 1, lastSeq: 1 });
    expect(counter(metrics, 'points_dropped', { input: INPUT, reason: 'unencodable' })).toBe(1);
    expect(lines.filter((l) => l.level === ERROR && /cannot be encoded/.test(l.msg))).toHaveLength(1);
    await waitFor('the spool to empty', () => queue.isEmpty);
    expect(ids(receiver.points('netflow'))).toEqual([0, 1]);
  });

  it('sends gzip bodies when asked, and the points arrive intact', async () => {
    const encodings: (string | undefined)[] = [];
    receiver.setResponder((req) => {
      encodings.push(req.headers['content-encoding'] as string | undefined);
      return undefined; // default handling: parse and accept
    });
    const { delivery, queue } = rig({ gzip: true });
    const points = netflow(600);
    await delivery.write('network', INPUT, points);
    await waitFor('the spool to empty', () => queue.isEmpty);
    expect(encodings).toEqual(['gzip', 'gzip', 'gzip']);
    expect(receiver.writes.map((w) => w.status)).toEqual([200, 200, 200]);
    const got = receiver.points('netflow');
    expect(got.map((p) => ({ measurement: p.measurement, tags: p.tags, fields: p.fields, timestamp: p.timestamp }))).toEqual(points.map(parsedView));
  });
});

describe('Delivery: retries', () => {
  async function failFirst(n: number, answer: ReturnType<typeof dataKitError>): Promise<Rig> {
    let calls = 0;
    receiver.setResponder(() => (calls++ < n ? answer : undefined));
    const r = rig();
    await r.delivery.write('network', INPUT, netflow(600));
    await waitFor('the spool to empty', () => r.queue.isEmpty);
    expect(receiver.writes.filter((w) => w.status === answer.status)).toHaveLength(n);
    // Every point exactly once, in order: the failing batch was retried, never skipped or duplicated.
    expect(ids(receiver.points('netflow'))).toEqual(range(600));
    expect(receiver.writes.filter((w) => w.status === 200)).toHaveLength(3);
    expect(total(r.metrics, 'batches_retried')).toBeGreaterThanOrEqual(n);
    expect(counter(r.metrics, 'batches_retried', { input: INPUT })).toBe(n);
    expect(counter(r.metrics, 'points_sent', { input: INPUT })).toBe(600);
    expect(total(r.metrics, 'points_dropped')).toBe(0);

    const failures = r.lines.filter((l) => /^delivering 256 ebpf-net\/netflow point\(s\) failed/.test(l.msg));
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ level: WARN, input: INPUT, status: answer.status, attempt: 1 });
    expect(failures[0]!.msg).toMatch(/kept in the spool, retrying in \d+ ms/);
    const recoveries = r.lines.filter((l) => /DataKit accepts points again/.test(l.msg));
    expect(recoveries).toHaveLength(1);
    expect(recoveries[0]).toMatchObject({ level: INFO, retries: n });
    expect(recoveries[0]!.msg).toContain(`after ${n} failed attempt(s)`);
    return r;
  }

  it('retries a 500 until DataKit accepts: everything arrives once, one failure line, one recovery line', async () => {
    const r = await failFirst(4, dataKitError(500, 'datakit.internalError', 'disk is busy'));
    const failure = r.lines.find((l) => /failed/.test(l.msg))!;
    expect(failure).toMatchObject({ error_code: 'datakit.internalError', dk_message: 'disk is busy' });
    expect(failure.msg).toContain('HTTP 500 datakit.internalError: disk is busy');
  });

  it('retries a 429 the same way and names rate limiting', async () => {
    const r = await failFirst(3, dataKitError(429, 'datakit.reachMaxAPIRateLimit', 'too many requests'));
    const failure = r.lines.find((l) => /failed/.test(l.msg))!;
    expect(failure).toMatchObject({ error_code: 'datakit.reachMaxAPIRateLimit' });
    expect(failure.msg).toContain('DataKit is rate limiting its API');
  });

  it('waits out a DataKit that is down, then delivers everything once when it comes up on the same port', async () => {
    const probe = await startReceiver({ host: '127.0.0.1', port: 0 });
    const port = probe.port;
    await probe.close();

    const { delivery, queue, metrics, lines } = rig({ url: `http://127.0.0.1:${port}` });
    await delivery.write('network', INPUT, netflow(600));
    await waitFor('two failed attempts', () => total(metrics, 'batches_retried') >= 2);
    expect(queue.stats.points).toBe(600);
    const refused = lines.filter((l) => /failed/.test(l.msg));
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ level: WARN, attempt: 1 });
    expect(refused[0]!.msg).toContain('connection refused');

    const up = await startReceiver({ host: '127.0.0.1', port });
    receivers.push(up);
    await waitFor('the spool to empty', () => queue.isEmpty);
    expect(ids(up.points('netflow'))).toEqual(range(600));
    expect(up.writes.map((w) => w.status)).toEqual([200, 200, 200]);
    expect(counter(metrics, 'points_sent', { input: INPUT })).toBe(600);
    expect(lines.filter((l) => /DataKit accepts points again/.test(l.msg))).toHaveLength(1);
  });
});

describe('Delivery: rejected points', () => {
  it('isolates a point DataKit rejects with 400, drops only it, and delivers every other point once', async () => {
    receiver.setResponder((req) => (req.body.includes('BADPOINT') ? dataKitError(400, 'datakit.invalidLinePoint', 'invalid field value') : undefined));
    const { delivery, queue, metrics, lines } = rig();
    const points = netflow(300);
    const bad: Point = { ...points[0]!, tags: { ...points[0]!.tags, process_name: 'BADPOINT' }, fields: { bytes_read: 99_999, bytes_written: 1 } };
    await delivery.write('network', INPUT, [...points.slice(0, 137), bad, ...points.slice(137)]);
    await waitFor('the spool to empty', () => queue.isEmpty);

    const got = ids(receiver.points('netflow'));
    expect([...got].sort((a, b) => a - b)).toEqual(range(300));
    expect(receiver.writes.filter((w) => w.status === 200 && w.body.includes('BADPOINT'))).toEqual([]);

    const rejected = lines.filter((l) => /DataKit rejected a point of ebpf-net\/netflow/.test(l.msg));
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatchObject({ level: ERROR, input: INPUT, status: 400, error_code: 'datakit.invalidLinePoint', dk_message: 'invalid field value' });
    const sample = rejected[0]!.sample as string[];
    expect(sample).toHaveLength(1);
    expect(sample[0]).toContain('process_name=BADPOINT');
    expect(sample[0]).toContain('bytes_read=99999i');
    expect(rejected[0]!.msg).toContain('HTTP 400 datakit.invalidLinePoint');

    expect(counter(metrics, 'points_dropped', { input: INPUT, reason: 'rejected' })).toBe(1);
    expect(total(metrics, 'points_dropped')).toBe(1);
    expect(counter(metrics, 'points_sent', { input: INPUT })).toBe(300);
    // Bisection, not line by line: a 256-point batch needs log2(256) splits.
    expect(counter(metrics, 'batches_split', { input: INPUT })).toBe(8);
    // A rejection is not an outage: nothing retried, no failure streak.
    expect(total(metrics, 'batches_retried')).toBe(0);
    expect(lines.filter((l) => /accepts points again/.test(l.msg))).toEqual([]);
  });

  it('splits on 413 the same way', async () => {
    receiver.setResponder((req) => (req.body.split('\n').filter(Boolean).length > 10 ? dataKitError(413, 'datakit.requestEntityTooLarge', 'too large') : undefined));
    const { delivery, queue, metrics } = rig();
    await delivery.write('network', INPUT, netflow(40));
    await waitFor('the spool to empty', () => queue.isEmpty);
    expect([...ids(receiver.points('netflow'))].sort((a, b) => a - b)).toEqual(range(40));
    expect(total(metrics, 'points_dropped')).toBe(0);
  });
});

describe('Delivery: queues and restarts', () => {
  it('MemoryQueue drops the oldest batches beyond its bound, counts them, and delivers the rest', async () => {
    const { batches } = encodeBatches(netflow(40), 10, 1 << 20);
    expect(batches).toHaveLength(4);
    const sizes = batches.map((b) => b.body.length);
    const queue = new MemoryQueue(sizes[2]! + sizes[3]!);
    const metas = queue.append(batches.map((b) => ({ category: 'network', input: INPUT, points: b.points, body: b.body })));
    expect(metas.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(queue.stats).toMatchObject({ records: 2, points: 20, bytes: sizes[2]! + sizes[3]!, droppedPoints: 20 });
    expect(queue.peek()!.seq).toBe(3);
    expect(queue.peek()!.body.equals(batches[2]!.body)).toBe(true);
    // Only the head can be acknowledged.
    queue.ack(4);
    expect(queue.stats.records).toBe(2);

    const { delivery } = rig({ queue });
    delivery.kick();
    await waitFor('the queue to empty', () => queue.isEmpty);
    expect(ids(receiver.points('netflow'))).toEqual(range(20, 20));
    expect(queue.stats).toMatchObject({ records: 0, points: 0, bytes: 0, droppedPoints: 20 });
  });

  it('MemoryQueue keeps the newest batch even when it alone exceeds the bound', () => {
    const queue = new MemoryQueue(10);
    queue.append([{ category: 'network', input: INPUT, points: 1, body: Buffer.from('m f=1i 1\n') }]);
    queue.append([{ category: 'network', input: INPUT, points: 2, body: Buffer.from('m f=2i 2\nm f=3i 3\n') }]);
    expect(queue.stats).toMatchObject({ records: 1, points: 2, droppedPoints: 1 });
    expect(queue.peek()!.seq).toBe(2);
  });

  it('delivers through a MemoryQueue with retries like through the spool', async () => {
    let calls = 0;
    receiver.setResponder(() => (calls++ < 2 ? dataKitError(503, 'datakit.unavailable', 'starting') : undefined));
    const queue = new MemoryQueue(64 << 20);
    const { delivery, metrics } = rig({ queue });
    await delivery.write('network', INPUT, netflow(600));
    await waitFor('the queue to empty', () => queue.isEmpty);
    expect(ids(receiver.points('netflow'))).toEqual(range(600));
    expect(counter(metrics, 'batches_retried', { input: INPUT })).toBe(2);
  });

  it('close() leaves what was not delivered in the spool, and a new Delivery on the reopened spool delivers it once', async () => {
    receiver.setResponder(() => dataKitError(503, 'datakit.unavailable', 'not now'));
    const first = rig();
    await first.delivery.write('network', INPUT, netflow(600));
    await waitFor('a failed attempt', () => total(first.metrics, 'batches_retried') >= 1);
    await first.delivery.close();
    await first.delivery.close(); // idempotent
    first.uploader.destroy();
    const failedSoFar = receiver.writes.length;
    expect(receiver.points('netflow')).toEqual([]);
    expect(segmentFiles().length).toBeGreaterThan(0);

    // The "restart": a new process opens the same directory.
    receiver.setResponder(undefined);
    const log = capture();
    const { spool } = openSpool(path.join(root, 'spool'), log);
    expect(spool.stats).toMatchObject({ records: 3, points: 600, corruptSegments: 0 });
    expect(log.lines.some((l) => /spool holds 600 undelivered point\(s\)/.test(l.msg))).toBe(true);
    const second = rig({ queue: spool, log });
    second.delivery.kick();
    await waitFor('the spool to empty', () => spool.isEmpty);
    expect(ids(receiver.points('netflow'))).toEqual(range(600));
    expect(receiver.writes.slice(failedSoFar).map((w) => w.status)).toEqual([200, 200, 200]);
    // Nothing more was sent by the closed Delivery.
    expect(receiver.writes.slice(0, failedSoFar).every((w) => w.status === 503)).toBe(true);
    expect(segmentFiles()).toEqual([]);
  });

  it('drain() reports whether the queue emptied within the time given', async () => {
    receiver.setResponder(() => dataKitError(500, 'datakit.internalError', 'no'));
    const { delivery } = rig();
    await delivery.write('network', INPUT, netflow(5));
    expect(await delivery.drain(150)).toBe(false);
    receiver.setResponder(undefined);
    expect(await delivery.drain(10_000)).toBe(true);
    expect(ids(receiver.points('netflow'))).toEqual(range(5));
  });
});
