// Regression tests for defects found in review of the delivery layer
// (src/upload/spool.ts, src/upload/delivery.ts): each names the bug it guards.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Metrics } from '../../src/daemon/metrics';
import type { Point } from '../../src/lineproto/point';
import { dataKitError, startReceiver, type Receiver } from '../../src/receiver/receiver';
import { Delivery, logSample, MemoryQueue, type BatchQueue } from '../../src/upload/delivery';
import { Spool } from '../../src/upload/spool';
import { Uploader, type SendOutcome } from '../../src/upload/uploader';
import { capture, waitUntil as waitFor } from '../helpers/log-capture';
import { netflowPoints } from '../helpers/records';

const segName = (seq: number): string => `seg-${String(seq).padStart(16, '0')}.dat`;
const line = (i: number): Buffer => Buffer.from(`m f=${i}i ${i}\n`);

let root: string;
let cleanups: (() => Promise<void> | void)[];

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'delivery-bugs-'));
  cleanups = [];
});

afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  fs.rmSync(root, { recursive: true, force: true });
});

async function receiverFor(): Promise<Receiver> {
  const r = await startReceiver({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => r.close());
  return r;
}

function deliveryTo(url: string, queue: BatchQueue, opts: { backoffInitialMs?: number; backoffMaxMs?: number } = {}) {
  const log = capture();
  const metrics = new Metrics();
  const uploader = new Uploader({ baseUrl: url, logger: log.logger, timeoutMs: 5_000 });
  const delivery = new Delivery({ uploader, queue, log: log.logger, metrics, gzip: false, backoffInitialMs: opts.backoffInitialMs ?? 20, backoffMaxMs: opts.backoffMaxMs ?? 200 });
  cleanups.push(async () => {
    await delivery.close();
    uploader.destroy();
  });
  return { delivery, metrics, lines: log.lines };
}

describe('spool.ts', () => {
  // Spool.open(): `Math.max(this.ackedSeq, ...this.index.map((e) => e.seq))`
  // spreads one argument per record; past ~125k records V8 throws
  // "RangeError: Maximum call stack size exceeded". A 256 MiB spool (the default
  // bound) of small records (1-point bash batches, 400-split halves) holds far
  // more than that. The daemon then treats the state dir as unusable, falls
  // back to memory, and the spooled points are never delivered, on every start.
  it('Spool.open() reads a spool of 200k small records instead of throwing', () => {
    const dir = path.join(root, 'spool');
    const n = 200_000;
    const s = new Spool(dir, 1 << 30, capture().logger);
    s.open();
    s.append(Array.from({ length: n }, (_, i) => ({ category: 'logging', input: 'ebpf-bash', points: 1, body: line(i) })));
    s.close();

    const again = new Spool(dir, 1 << 30, capture().logger);
    expect(() => again.open()).not.toThrow();
    cleanups.push(() => again.close());
    expect(again.stats.records).toBe(n);
    expect(again.upcomingSeq).toBe(n + 1);
  });

  // Spool.append() pushes the new records into the in-memory index (and bumps
  // `bytes` and the segment bookkeeping) *before* fs.writeSync/fsyncSync. When
  // the write fails (ENOSPC, EIO), the exception propagates but the index keeps
  // entries for bytes that were never written: isEmpty is false and peek()
  // returns zero-filled bodies that Delivery then POSTs (DataKit 400s them and
  // they are "dropped" as rejected points). The short-write case is the same
  // bug: writeSync's return value is ignored, so seg.size and every later offset
  // in that segment are wrong.
  // Fix: write (and check the byte count) and fsync first, then push the index
  // entries; on failure ftruncate the segment back to its old size and rethrow.
  it('Spool.append() that fails to write leaves the queue as it was', () => {
    const dir = path.join(root, 'spool');
    const s = new Spool(dir, 1 << 20, capture().logger);
    s.open();
    cleanups.push(() => s.close());
    // The next segment the spool opens is a device that answers every write with ENOSPC.
    fs.symlinkSync('/dev/full', path.join(dir, segName(1)));

    let error: unknown;
    let metas: unknown;
    try {
      metas = s.append([{ category: 'network', input: 'ebpf-net/netflow', points: 1, body: line(1) }]);
    } catch (err) {
      error = err;
    }
    // Reported either way: the disk error is thrown, or nothing is claimed queued.
    if (error === undefined) expect(metas).toEqual([]);
    else expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
    expect(s.isEmpty).toBe(true);
    expect(s.peek()).toBeUndefined();
  });
});

describe('delivery.ts', () => {
  // Delivery.split() cuts a rejected body with `split('\n')`, but the encoder
  // keeps a raw newline inside a string field value (escapeStringValue only
  // escapes `"` and `\`; DataKit and our parser accept it), e.g. a multi-line
  // bash command. When such a point shares a batch with a point DataKit
  // rejects, the bisection can cut it into two fragments; each fragment is then
  // rejected on its own and dropped, so a valid point is lost (and counted as
  // `points: ls.length`, i.e. one point per fragment).
  // Fix: split on point boundaries, not on '\n': scan for newlines outside
  // double quotes (honouring `\"` and `\\`), or keep each point's byte offset
  // in the record's meta when encoding.
  it('isolating a rejected point never cuts a valid point whose string field holds a newline', async () => {
    const receiver = await receiverFor();
    receiver.setResponder((req) => (req.body.includes('BADPOINT') ? dataKitError(400, 'datakit.invalidLinePoint', 'bad point') : undefined));
    const queue = new MemoryQueue(64 << 20);
    const { delivery, metrics } = deliveryTo(receiver.url, queue);
    const bash = (cmd: string, i: number): Point => ({ measurement: 'bash', tags: { host: 'h1' }, fields: { cmd, pid: String(100 + i) }, timestampNs: BigInt(i) });
    // Lines of the body: [first, multi(part 1), multi(part 2), BADPOINT]: the first halving cuts between the two parts.
    await delivery.write('logging', 'ebpf-bash', [bash('ls', 1), bash('for f in *; do\necho "$f"; done', 2), bash('BADPOINT', 3)]);
    await waitFor('the queue to empty', () => queue.isEmpty, 10_000);

    expect(receiver.points('bash').map((p) => p.fields.cmd).sort()).toEqual(['for f in *; do\necho "$f"; done', 'ls']);
    expect(metrics.prometheus()).toContain('datakit_ebpf_points_dropped_total{input="ebpf-bash",reason="rejected"} 1\n');
  });

  // Delivery.kick() does `this.pumping ??= this.pump().finally(() => { this.pumping = undefined })`.
  // When pump() finds the queue empty it returns, but `pumping` is only cleared
  // one microtask later, by the finally callback. A write() that runs in that
  // gap (any microtask queued in the same checkpoint as the pump's last
  // continuation) appends its batch and calls kick(), which sees `pumping` still
  // set and does nothing: the batch sits in the queue until some later write()
  // or drain() kicks again (in the daemon: the next flush interval, or never
  // for the last write before a quiet period).
  // Fix: clear `pumping` inside pump() itself before returning (try/finally in
  // pump), or have the finally callback re-kick when the queue is not empty.
  it('a write that lands just as the sender goes idle is still sent', async () => {
    const bodies: string[] = [];
    const answers: ((o: SendOutcome) => void)[] = [];
    const fake = {
      post: (_category: string, _input: string, body: Buffer): Promise<SendOutcome> => {
        bodies.push(body.toString());
        return new Promise((resolve) => answers.push(resolve));
      },
      describe: () => 'fake',
    } as unknown as Uploader;
    const queue = new MemoryQueue(64 << 20);
    const log = capture();
    const delivery = new Delivery({ uploader: fake, queue, log: log.logger, metrics: new Metrics(), gzip: false, backoffInitialMs: 20, backoffMaxMs: 200 });
    cleanups.push(async () => {
      for (const a of answers) a({ kind: 'ok' });
      await delivery.close();
    });

    await delivery.write('network', 'ebpf-net/netflow', netflowPoints(1, 0));
    expect(bodies).toHaveLength(1);
    // DataKit answers the only batch; the next write arrives in the same microtask checkpoint.
    answers[0]!({ kind: 'ok' });
    queueMicrotask(() => void delivery.write('network', 'ebpf-net/netflow', netflowPoints(1, 1)));

    await waitFor('the second batch to be posted', () => bodies.length === 2, 2_000);
    expect(bodies[1]).toContain('bytes_read=1i');
  });

  // When the `acked` pointer cannot be written (ENOSPC/EIO on `acked.tmp`),
  // delivery must neither die nor repeat itself. Originally pump() let the
  // exception escape as an unhandled rejection (the daemon exits). Now
  // Spool.ack() writes `acked` before shifting the index and throws, and
  // pump() catches and backs off: the record stays at the head, so the batch
  // DataKit already accepted with 200 is POSTed again after every backoff
  // (measured: 18 POSTs of the same 256 points in 2 s with 20/200 ms backoff;
  // one duplicate batch per <=30 s in production) for as long as the disk
  // stays full, and nothing behind it is delivered.
  // Fix: in Spool.ack(), shift the index and keep going when writeAcked fails,
  // logging it (rate-limited): the batch *was* delivered, the in-memory pointer
  // is authoritative, and at worst a restart re-sends what was acknowledged
  // since the last good write (the guarantee the spool already gives for a
  // power loss). Keep the catch in pump() for other queue errors.
  it('an acknowledgement that cannot be persisted neither kills the sender nor re-sends delivered batches', async () => {
    const receiver = await receiverFor();
    const dir = path.join(root, 'spool');
    const spool = new Spool(dir, 64 << 20, capture().logger);
    spool.open();
    // writeFileSync('acked.tmp') now fails (EISDIR), as it would with ENOSPC.
    fs.mkdirSync(path.join(dir, 'acked.tmp'));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(() => void process.off('unhandledRejection', onUnhandled));

    const { delivery } = deliveryTo(receiver.url, spool);
    await delivery.write('network', 'ebpf-net/netflow', netflowPoints(600));
    const arrived = (): number => receiver.points('netflow').length;
    await waitFor('all 600 points (3 batches), or an unhandled rejection', () => arrived() >= 600 || unhandled.length > 0, 5_000);
    expect(unhandled.map(String)).toEqual([]);
    await waitFor('the spool to empty', () => spool.isEmpty, 5_000);
    const got = receiver.points('netflow').map((p) => p.fields.bytes_read as number);
    expect(got).toEqual(Array.from({ length: 600 }, (_, i) => i));
  });

  // Delivery.kick() resolves a pending backoff (`this.wake`) whenever write()
  // queues something, so during an outage every write retries the failing batch
  // at once: the retry rate follows the write rate and the capped exponential
  // backoff (delivery.ts header) is bypassed. With a 429 that means answering
  // DataKit's "slow down" with a request per flush per input.
  // Fix: only wake the sender when it is idle (queue was empty), not while it
  // is backing off; close() can resolve the wait through its own hook.
  it('writes during an outage do not cut the backoff short', async () => {
    const receiver = await receiverFor();
    receiver.setResponder(() => dataKitError(429, 'datakit.reachMaxAPIRateLimit', 'slow down'));
    const queue = new MemoryQueue(64 << 20);
    // First retry no sooner than 30 s.
    const { delivery, metrics } = deliveryTo(receiver.url, queue, { backoffInitialMs: 60_000, backoffMaxMs: 60_000 });
    await delivery.write('network', 'ebpf-net/netflow', netflowPoints(1, 0));
    // batches_retried is counted as the sender starts waiting.
    await waitFor('the sender to back off', () => (metrics.summary().batches_retried ?? 0) === 1, 5_000);
    expect(receiver.writes).toHaveLength(1);
    await delivery.write('network', 'ebpf-net/netflow', netflowPoints(1, 1));
    // Bounded wait for requests that must not come (the bug sends them within milliseconds).
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.writes).toHaveLength(1);
  });
});

describe('delivery.ts: logging points in our log', () => {
  // A rejected point was logged with a sample of its line: for an ebpf-bash
  // point that is the command someone typed, secrets included. DataKit's
  // message about it may quote the point too.
  it('a bash point DataKit rejects is logged without its command text or DataKit\'s message', async () => {
    const receiver = await receiverFor();
    receiver.setResponder((req) => (req.body.includes('hunter2') ? dataKitError(400, 'datakit.invalidLinePoint', 'bad point: cmd="mysql -phunter2"') : undefined));
    const { delivery, lines } = deliveryTo(`http://127.0.0.1:${receiver.port}`, new MemoryQueue(1 << 20));
    const bash: Point = {
      measurement: 'bash',
      tags: { host: 'h1', source: 'bash' },
      fields: { cmd: 'mysql -phunter2', message: 'pid:`1` user:`alice` cmd:`mysql -phunter2`', pid: '1', user: 'alice' },
      timestampNs: 1700000000000000000n,
    };
    await delivery.write('logging', 'ebpf-bash', [bash]);
    await waitFor('the rejection to be logged', () => lines.some((l) => /DataKit rejected a point of ebpf-bash/.test(l.msg)), 5_000);
    const text = JSON.stringify(lines);
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('alice');
    const rejected = lines.find((l) => /DataKit rejected a point of ebpf-bash/.test(l.msg))!;
    expect(rejected).toMatchObject({ error_code: 'datakit.invalidLinePoint', status: 400 });
    expect(rejected.sample).toEqual(['bash,host=h1,source=bash cmd=(omitted),message=(omitted),pid=(omitted),user=(omitted)']);
  });

  it('a network point is still logged with its line', () => {
    expect(logSample('network', 'netflow,host=h1 bytes_read=1i 1')).toBe('netflow,host=h1 bytes_read=1i 1');
    expect(logSample('logging', 'not line protocol')).toBe('(a logging point that does not parse; its text is not logged)');
  });
});
