// The collects a loader has been asked for and not yet answered, in the
// order it answers them: it serves its commands one at a time, so the data
// frames that arrive belong to the oldest one, and COLLECTED(seq) closes it.
// A collect the daemon stopped waiting for (a timeout) stays here until its
// answer comes, so that answer is known for what it is: late. Matching the
// oldest waiter instead would hand a late COLLECTED to the next collect,
// which would then flush before its own frames arrived.

export interface CollectWaiter {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface Entry {
  seq: bigint;
  /** Undefined once abandoned. */
  waiter?: CollectWaiter;
}

export class CollectQueue {
  private entries: Entry[] = [];

  sent(seq: bigint, waiter: CollectWaiter): void {
    this.entries.push({ seq, waiter });
  }

  /** The daemon gives up waiting for `seq` (and rejects its waiter itself). */
  abandon(seq: bigint): void {
    const e = this.entries.find((x) => x.seq === seq);
    if (e) e.waiter = undefined;
  }

  /** The frames arriving now answer a collect nobody waits for any more. */
  get answeringAbandoned(): boolean {
    const head = this.entries[0];
    return head !== undefined && head.waiter === undefined;
  }

  /**
   * COLLECTED(seq): that collect is complete. Returns its waiter (undefined
   * when it was abandoned or is unknown), and the waiters of older ones,
   * which a loader that answers in order will never answer.
   */
  done(seq: bigint): { waiter?: CollectWaiter; unanswered: CollectWaiter[] } {
    const i = this.entries.findIndex((x) => x.seq === seq);
    if (i < 0) return { unanswered: [] };
    const closed = this.entries.splice(0, i + 1);
    const e = closed.pop()!;
    return { waiter: e.waiter, unanswered: closed.flatMap((x) => (x.waiter ? [x.waiter] : [])) };
  }

  /** The loader is gone: nothing will be answered. Returns the waiters still waiting. */
  clear(): CollectWaiter[] {
    const waiting = this.entries.flatMap((e) => (e.waiter ? [e.waiter] : []));
    this.entries = [];
    return waiting;
  }
}
