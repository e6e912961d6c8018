// What the plugins hand their points to. Every batch is first appended to the
// durable spool (the commit point: once there, it survives DataKit outages,
// crashes and SIGKILL), then a single sender drains the spool oldest first:
//   200            -> delivered
//   429, 5xx, network errors, timeouts, 403/404 and other 4xx
//                  -> retried with capped exponential backoff, jittered in [cap/2, cap]
//                     (403/404 are logged with their likely cause)
//   400, 413       -> the batch is split in halves, re-queued, until the bad
//                     point stands alone; it is logged (a sample) and dropped
// Logging points (ebpf-bash) hold what people typed, secrets included: their
// samples show tags and field names only, and DataKit's message about them
// (which may quote the point) is not logged.
import type { Logger } from 'pino';
import { parseLines } from '../lineproto/parse';
import type { Point } from '../lineproto/point';
import type { Metrics } from '../daemon/metrics';
import type { SpoolMeta, SpoolRecord } from './spool';
import { encodeBatches, type Category, type SendOutcome, type Uploader } from './uploader';

/** The queue the sender drains: the disk spool, or memory when no state directory is usable. */
export interface BatchQueue {
  append(items: { category: string; input: string; points: number; body: Buffer; ends?: number[]; precision?: string }[]): SpoolMeta[];
  peek(): SpoolRecord | undefined;
  ack(seq: number): void;
  readonly isEmpty: boolean;
  /** Sequence number the next appended record gets. */
  readonly upcomingSeq: number;
  /** Whether appended records survive this process (the disk spool) or not (memory). */
  readonly durable: boolean;
  readonly stats: { records: number; points: number; bytes: number; droppedPoints: number };
  close(): void;
}

export interface WriteHooks {
  /**
   * Called after encoding, right before the batches are appended, with the
   * sequence number the last of them will get (not called when there is
   * nothing to append). Lets a caller persist state that must commit together
   * with these points.
   */
  beforeAppend?: (lastSeq: number) => void;
}

/** What plugins write to. */
export interface PointSink {
  write(category: Category, input: string, points: readonly Point[], hooks?: WriteHooks): Promise<WriteReceipt>;
  /** Appended records survive a crash (the disk spool is in use). */
  readonly durable: boolean;
  /** Whether the record with this sequence number was durably appended before. */
  committed(seq: number): boolean;
}

export interface WriteReceipt {
  /** Points now safely queued. */
  queued: number;
  /** Points that could not be encoded (producer bugs). */
  rejected: number;
  /** Sequence number of the last queued batch; 0 if nothing was queued. */
  lastSeq: number;
}

export interface DeliveryOptions {
  uploader: Uploader;
  queue: BatchQueue;
  log: Logger;
  metrics: Metrics;
  gzip: boolean;
  maxBatchPoints?: number;
  maxBatchBytes?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

/** Lines of a rejected batch that are logged as a sample. */
const SAMPLE_LINES = 3;
/** Categories whose field values must never reach our log: a bash point's fields are a typed command. */
const PRIVATE_CATEGORIES = new Set(['logging']);

/** A rejected line as it may be logged: as is, or for a private category without its field values. */
export function logSample(category: string, line: string): string {
  if (!PRIVATE_CATEGORIES.has(category)) return line.slice(0, 500);
  try {
    const [p] = parseLines(line);
    if (!p) return '(empty line)';
    const tags = Object.entries(p.tags).map(([k, v]) => `,${k}=${v}`);
    return `${p.measurement}${tags.join('')} ${Object.keys(p.fields)
      .map((k) => `${k}=(omitted)`)
      .join(',')}`.slice(0, 500);
  } catch {
    return `(a ${category} point that does not parse; its text is not logged)`;
  }
}

/** DataKit's answer as it may be logged: its message may quote a private category's point. */
function loggable<T extends Exclude<SendOutcome, { kind: 'ok' }>>(category: string, o: T): T {
  return o.kind === 'http' && PRIVATE_CATEGORIES.has(category) && o.message !== undefined ? { ...o, message: '(not logged for logging points)' } : o;
}

export class Delivery implements PointSink {
  private readonly log: Logger;
  private pumping?: Promise<void>;
  private wake?: () => void;
  private closed = false;
  private attempt = 0;
  private failingSince?: number;
  private lastFailureLog = 0;

  constructor(private readonly opts: DeliveryOptions) {
    this.log = opts.log;
  }

  async write(category: Category, input: string, points: readonly Point[], hooks?: WriteHooks): Promise<WriteReceipt> {
    const m = this.opts.metrics;
    const { batches, rejected, firstError } = encodeBatches(points, this.opts.maxBatchPoints ?? 256, this.opts.maxBatchBytes ?? 1 << 20);
    m.add('points_collected', points.length, { input });
    if (rejected > 0) {
      m.add('points_dropped', rejected, { input, reason: 'unencodable' });
      this.log.error({ input, points: rejected }, `dropped ${rejected} ${input} point(s) that cannot be encoded: ${firstError?.message}`);
    }
    if (batches.length > 0) hooks?.beforeAppend?.(this.opts.queue.upcomingSeq + batches.length - 1);
    const metas = this.opts.queue.append(batches.map((b) => ({ category, input, points: b.points, body: b.body, ends: b.ends })));
    const queued = metas.reduce((a, x) => a + x.points, 0);
    m.add('points_spooled', queued, { input });
    this.kick();
    return { queued, rejected, lastSeq: metas.at(-1)?.seq ?? 0 };
  }

  /**
   * Starts the sender if it is idle. A sender backing off is left alone: new
   * points must not turn the backoff into a retry per write.
   */
  kick(): void {
    if (this.closed || this.pumping) return;
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      // A write may have landed between the last peek and this callback.
      if (!this.opts.queue.isEmpty) this.kick();
    });
  }

  private async pump(): Promise<void> {
    while (!this.closed) {
      try {
        const rec = this.opts.queue.peek();
        if (!rec) return;
        const outcome = await this.opts.uploader.post(rec.category, rec.input, rec.body, this.opts.gzip, rec.precision);
        if (this.closed && outcome.kind !== 'ok') return;
        if (outcome.kind === 'ok') {
          this.delivered(rec);
          continue;
        }
        if (outcome.kind === 'http' && (outcome.status === 400 || outcome.status === 413)) {
          this.split(rec, outcome);
          continue;
        }
        await this.backoff(rec, outcome);
      } catch (err) {
        // The queue itself failed (disk full, I/O error): keep the record and
        // retry later; the sender must never die of it.
        await this.backoff(undefined, { kind: 'network', error: err as Error });
      }
    }
  }

  private delivered(rec: SpoolRecord): void {
    this.opts.queue.ack(rec.seq);
    this.opts.metrics.add('points_sent', rec.points, { input: rec.input });
    if (this.failingSince !== undefined) {
      this.log.info(
        { input: rec.input, retries: this.attempt, downForMs: Date.now() - this.failingSince, spooledPoints: this.opts.queue.stats.points },
        `DataKit accepts points again after ${this.attempt} failed attempt(s); delivering the spool`,
      );
    }
    this.attempt = 0;
    this.failingSince = undefined;
  }

  /** A 400 names bad data somewhere in the batch: halve until it is isolated. */
  private split(rec: SpoolRecord, o: Extract<SendOutcome, { kind: 'http' }>): void {
    const lines = pointsOf(rec);
    if (lines.length <= 1) {
      this.opts.metrics.add('points_dropped', rec.points, { input: rec.input, reason: 'rejected' });
      const shown = loggable(rec.category, o);
      this.log.error(
        { input: rec.input, status: o.status, error_code: o.errorCode, dk_message: shown.message, sample: lines.slice(0, SAMPLE_LINES).map((l) => logSample(rec.category, l)) },
        `DataKit rejected a point of ${rec.input}: ${this.opts.uploader.describe(shown)}; dropped it, the rest of its batch is delivered`,
      );
      this.opts.queue.ack(rec.seq);
      return;
    }
    const half = Math.ceil(lines.length / 2);
    const part = (ls: string[]) => {
      const bodies = ls.map((l) => Buffer.from(`${l}\n`));
      let end = 0;
      return { category: rec.category, input: rec.input, points: ls.length, body: Buffer.concat(bodies), ends: bodies.map((b) => (end += b.length)), precision: rec.precision };
    };
    // Re-queue both halves before acknowledging the original: a crash in
    // between re-sends, it never loses.
    this.opts.queue.append([part(lines.slice(0, half)), part(lines.slice(half))]);
    this.opts.queue.ack(rec.seq);
    this.opts.metrics.add('batches_split', 1, { input: rec.input });
  }

  private async backoff(rec: SpoolRecord | undefined, failure: Exclude<SendOutcome, { kind: 'ok' }>): Promise<void> {
    const o = rec ? loggable(rec.category, failure) : failure;
    const initial = this.opts.backoffInitialMs ?? 500;
    const max = this.opts.backoffMaxMs ?? 30_000;
    this.attempt += 1;
    this.failingSince ??= Date.now();
    const input = rec?.input ?? 'spool';
    this.opts.metrics.add('batches_retried', 1, { input });
    const cap = Math.min(max, initial * 2 ** Math.min(this.attempt - 1, 20));
    const delay = Math.round(cap / 2 + (Math.random() * cap) / 2);
    // One line per failure streak start, then at most every 30 s.
    const now = Date.now();
    if (this.attempt === 1 || now - this.lastFailureLog >= 30_000) {
      this.lastFailureLog = now;
      const level = o.kind === 'http' && o.status >= 400 && o.status < 500 && o.status !== 429 ? 'error' : 'warn';
      this.log[level](
        {
          input,
          status: o.kind === 'http' ? o.status : undefined,
          error_code: o.kind === 'http' ? o.errorCode : undefined,
          dk_message: o.kind === 'http' ? o.message : undefined,
          attempt: this.attempt,
          retryInMs: delay,
          spooledPoints: this.opts.queue.stats.points,
        },
        rec
          ? `delivering ${rec.points} ${rec.input} point(s) failed (${this.opts.uploader.describe(o)}); kept in the spool, retrying in ${delay} ms`
          : `the spool failed (${o.kind === 'network' ? o.error.message : o.status}); retrying in ${delay} ms`,
      );
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delay);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = undefined;
  }

  /** Waits until the queue is empty or `timeoutMs` passed; true if empty. */
  async drain(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (!this.opts.queue.isEmpty && Date.now() < end) {
      this.kick();
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.opts.queue.isEmpty;
  }

  get queueStats(): BatchQueue['stats'] {
    return this.opts.queue.stats;
  }

  /** The queue survives restarts and `seq` is in it (or was delivered from it). */
  committed(seq: number): boolean {
    return this.opts.queue.durable && seq < this.opts.queue.upcomingSeq;
  }

  get durable(): boolean {
    return this.opts.queue.durable;
  }

  /** Stops sending; what is queued stays in the spool for the next start. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake?.();
    await this.pumping;
    this.opts.queue.close();
  }
}

/** The points of a record as lines (without their newline). */
function pointsOf(rec: SpoolRecord): string[] {
  if (!rec.ends) return rec.body.toString('utf8').split('\n').filter((l) => l !== '');
  let start = 0;
  return rec.ends.map((end) => {
    const line = rec.body.toString('utf8', start, end - 1);
    start = end;
    return line;
  });
}

/** The fallback queue when no state directory can be used: bounded, lost at exit. */
export class MemoryQueue implements BatchQueue {
  private items: SpoolRecord[] = [];
  private nextSeq = 1;
  readonly durable = false;
  readonly stats = { records: 0, points: 0, bytes: 0, droppedPoints: 0 };

  constructor(private readonly maxBytes: number) {}

  append(items: { category: string; input: string; points: number; body: Buffer; ends?: number[]; precision?: string }[]): SpoolMeta[] {
    const metas = items.map((it) => {
      const rec = { ...it, seq: this.nextSeq++ };
      this.items.push(rec);
      this.stats.bytes += it.body.length;
      return { seq: rec.seq, category: it.category, input: it.input, points: it.points, precision: it.precision };
    });
    while (this.stats.bytes > this.maxBytes && this.items.length > 1) {
      const old = this.items.shift()!;
      this.stats.bytes -= old.body.length;
      this.stats.droppedPoints += old.points;
    }
    this.refresh();
    return metas;
  }

  peek(): SpoolRecord | undefined {
    return this.items[0];
  }

  get upcomingSeq(): number {
    return this.nextSeq;
  }

  ack(seq: number): void {
    if (this.items[0]?.seq !== seq) return;
    this.stats.bytes -= this.items.shift()!.body.length;
    this.refresh();
  }

  get isEmpty(): boolean {
    return this.items.length === 0;
  }

  private refresh(): void {
    this.stats.records = this.items.length;
    this.stats.points = this.items.reduce((a, r) => a + r.points, 0);
  }

  close(): void {}
}
