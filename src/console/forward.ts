// --forward: every accepted write body goes on to a real DataKit unchanged (same
// category, input and precision), with the collector's own guarantees: appended
// to a disk spool before the console answers 200, then delivered oldest first
// with retries, backoff and 400-splitting (../upload/delivery.ts).

import path from 'node:path';
import type { Logger } from 'pino';
import { Metrics } from '../daemon/metrics';
import { Delivery } from '../upload/delivery';
import { Spool } from '../upload/spool';
import { Uploader } from '../upload/uploader';

export interface ForwardOptions {
  /** DataKit's address, e.g. http://127.0.0.1:9529 */
  url: string;
  /** The spool lives in <dataDir>/forward-spool. */
  dataDir: string;
  log: Logger;
  spoolMaxBytes?: number;
  backoffInitialMs?: number;
}

export interface ForwardItem {
  category: string;
  input: string;
  precision: string;
  /** The decoded body as received. */
  body: string;
  /** Offset (UTF-16 units) just past each point's line, from the parser. */
  ends: number[];
}

export class Forwarder {
  private readonly spool: Spool;
  private readonly delivery: Delivery;
  private readonly uploader: Uploader;
  readonly metrics = new Metrics();

  constructor(readonly opts: ForwardOptions) {
    this.uploader = new Uploader({ baseUrl: opts.url, logger: opts.log });
    this.spool = new Spool(path.join(opts.dataDir, 'forward-spool'), opts.spoolMaxBytes ?? 256 << 20, opts.log);
    this.delivery = new Delivery({
      uploader: this.uploader,
      queue: this.spool,
      log: opts.log,
      metrics: this.metrics,
      gzip: true,
      backoffInitialMs: opts.backoffInitialMs,
      maxBatchPoints: Number.MAX_SAFE_INTEGER,
    });
  }

  /** Reads what a previous run left in the spool and starts delivering it. */
  open(): void {
    this.spool.open();
    this.delivery.kick();
  }

  /** Durably queues bodies (one fsync for all of them); throws if the spool cannot take them. */
  enqueue(items: readonly ForwardItem[]): void {
    if (items.length === 0) return;
    this.spool.append(items.map((it) => forwardRecord(it)));
    this.metrics.add('points_spooled', items.reduce((a, it) => a + it.ends.length, 0));
    this.delivery.kick();
  }

  get stats(): { spooledPoints: number; spooledBytes: number; droppedPoints: number } {
    const s = this.spool.stats;
    return { spooledPoints: s.points, spooledBytes: s.bytes, droppedPoints: s.droppedPoints };
  }

  drain(timeoutMs: number): Promise<boolean> {
    return this.delivery.drain(timeoutMs);
  }

  /** Stops sending; what is not delivered stays in the spool. Idempotent. */
  async close(): Promise<void> {
    await this.delivery.close();
    await this.uploader.close();
  }

  destroy(): void {
    this.uploader.destroy();
    void this.delivery.close();
  }
}

/** The spool record of one body: byte offsets of its points, a final newline so the last point can be split off. */
export function forwardRecord(it: ForwardItem): { category: string; input: string; precision: string; points: number; body: Buffer; ends: number[] } {
  const text = it.body.endsWith('\n') ? it.body : `${it.body}\n`;
  const ends: number[] = [];
  let bytes = 0;
  let from = 0;
  for (const e of it.ends) {
    const to = Math.min(Math.max(e, from), text.length);
    bytes += Buffer.byteLength(text.slice(from, to));
    ends.push(bytes);
    from = to;
  }
  // Anything after the last point (comments, blank lines) belongs to it.
  if (ends.length > 0) ends[ends.length - 1] = Buffer.byteLength(text);
  return { category: it.category, input: it.input, precision: it.precision, points: it.ends.length, body: Buffer.from(text), ends };
}
