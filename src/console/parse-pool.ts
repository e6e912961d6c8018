// Line-protocol parsing off the event loop: a few worker threads run the
// project's parser (parse-worker.ts), so several write requests are parsed at
// once while the main thread answers HTTP and appends to the store. Without the
// compiled worker (unit tests run the TypeScript sources) it parses inline.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { parseLines } from '../lineproto/parse';
import { SeriesIds, compactWrite, type CompactWrite } from './compact';

/** Source numbers of series numberings: unique per worker (or inline parser) in this process. */
let nextSource = 1;

export interface ParseJob {
  id: number;
  category: string;
  precision: string;
  body: string;
  nowMs: number;
}

export type ParseReply = { id: number; ok: true; write: CompactWrite; ends: number[] } | { id: number; ok: false; message: string };

export interface Parsed {
  write: CompactWrite;
  /** Offset just past each point's line (for forwarding). */
  ends: number[];
}

/** The body is not valid line protocol; `message` is the parser's (line and column). */
export class ParseFailure extends Error {
  readonly code = 'CONSOLE_BAD_LINE_PROTOCOL';
}

interface Slot {
  worker: Worker;
  busy: number;
}

export class ParsePool {
  private slots: Slot[] = [];
  private readonly waiting = new Map<number, { resolve: (p: Parsed) => void; reject: (e: Error) => void; slot: Slot }>();
  private nextId = 1;
  private closed = false;
  private readonly script = path.join(__dirname, 'parse-worker.js');
  private readonly inlineIds = new SeriesIds(nextSource++);

  constructor(readonly size = Math.max(1, Math.min(4, os.availableParallelism())) ) {
    if (!fs.existsSync(this.script)) return;
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  get workers(): number {
    return this.slots.length;
  }

  private spawn(): Slot {
    // A restarted worker numbers series afresh, under a new source number.
    const slot: Slot = { worker: new Worker(this.script, { workerData: { source: nextSource++ } }), busy: 0 };
    slot.worker.on('message', (r: ParseReply) => {
      const w = this.waiting.get(r.id);
      if (!w) return;
      this.waiting.delete(r.id);
      slot.busy--;
      if (r.ok) w.resolve({ write: r.write, ends: r.ends });
      else w.reject(new ParseFailure(r.message));
    });
    slot.worker.on('error', (err) => this.lost(slot, err));
    slot.worker.on('exit', (code) => this.lost(slot, new Error(`parse worker exited with code ${code}`)));
    slot.worker.unref();
    return slot;
  }

  /** A worker died: fail its jobs and start another in its place. */
  private lost(slot: Slot, err: Error): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    for (const [id, w] of this.waiting) {
      if (w.slot !== slot) continue;
      this.waiting.delete(id);
      w.reject(err);
    }
    if (this.closed) this.slots.splice(i, 1);
    else this.slots[i] = this.spawn();
  }

  parse(category: string, precision: string, body: string, nowMs: number): Promise<Parsed> {
    if (this.slots.length === 0 || this.closed) {
      try {
        const ends: number[] = [];
        const points = parseLines(body, ends);
        return Promise.resolve({ write: compactWrite(category, precision, points, nowMs, this.inlineIds), ends });
      } catch (err) {
        return Promise.reject(new ParseFailure((err as Error).message));
      }
    }
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    slot.busy++;
    return new Promise<Parsed>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, slot });
      const job: ParseJob = { id, category, precision, body, nowMs };
      slot.worker.postMessage(job);
    });
  }

  /** Stops the workers (jobs in flight are failed). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots = [];
  }
}
