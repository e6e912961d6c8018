// Which netflow collect is durable, across daemon restarts. The loader keeps
// each generation of kernel counters a collect read (pinned) until it hears
// that collect is durable; the daemon must tell it, after a SIGKILL, which
// collects' points actually reached the spool.
// Commit protocol for collect S whose points become spool records up to Q:
//   1. write {committed: C, pending: S, pendingSpoolSeq: Q}   (fsync)
//   2. append the points to the spool                          <- commit point
//   3. tell the loader S is durable (DKE_CMD_COMMIT)
// At start, S is durable iff the spool holds Q. One small file per interval,
// whatever the number of flows or connections.
import fs from 'node:fs';
import path from 'node:path';

interface Persisted {
  committed: string;
  pending: string;
  pendingSpoolSeq: number;
}

export class CollectLog {
  private readonly file: string;
  private committed = 0n;
  private last = 0n;

  constructor(dir: string) {
    this.file = path.join(dir, 'netflow-collects');
  }

  /** The last durable collect at start-up; `spoolHas(q)` tells whether the spool holds record q. */
  load(spoolHas: (seq: number) => boolean): bigint {
    try {
      const p = JSON.parse(fs.readFileSync(this.file, 'utf8')) as Persisted;
      const pending = BigInt(p.pending);
      this.committed = pending && spoolHas(p.pendingSpoolSeq) ? pending : BigInt(p.committed);
      this.last = pending > this.committed ? pending : this.committed;
    } catch {
      this.committed = 0n;
    }
    return this.committed;
  }

  /** A new collect id: increasing across restarts, even when the file is lost (wall clock based). */
  next(): bigint {
    const now = BigInt(Date.now()) * 1000n;
    this.last = now > this.last ? now : this.last + 1n;
    return this.last;
  }

  /** Step 1: throws when the state dir is not writable (the caller then does not append). */
  prepare(seq: bigint, spoolSeq: number): void {
    const body: Persisted = { committed: String(this.committed), pending: String(seq), pendingSpoolSeq: spoolSeq };
    const tmp = `${this.file}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o640);
    try {
      fs.writeSync(fd, JSON.stringify(body));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file);
  }

  /** Step 3 done. */
  markCommitted(seq: bigint): void {
    this.committed = seq;
  }

  get lastCommitted(): bigint {
    return this.committed;
  }

  /** A clean stop unpins the maps: the log describes nothing any more. */
  clear(): void {
    fs.rmSync(this.file, { force: true });
    fs.rmSync(`${this.file}.tmp`, { force: true });
  }
}
