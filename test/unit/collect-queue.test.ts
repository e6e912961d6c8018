import { describe, expect, it } from 'vitest';
import { CollectQueue, type CollectWaiter } from '../../src/loader/collect-queue';

function waiter(log: string[], name: string): CollectWaiter {
  return { resolve: () => log.push(`${name} resolved`), reject: () => log.push(`${name} rejected`), timer: undefined as unknown as NodeJS.Timeout };
}

describe('CollectQueue', () => {
  it('answers each COLLECTED to the collect of its seq, in the loader order', () => {
    const log: string[] = [];
    const q = new CollectQueue();
    q.sent(1n, waiter(log, 'c1'));
    q.sent(2n, waiter(log, 'c2'));
    expect(q.answeringAbandoned).toBe(false);
    q.done(1n).waiter?.resolve();
    q.done(2n).waiter?.resolve();
    expect(log).toEqual(['c1 resolved', 'c2 resolved']);
    expect(q.answeringAbandoned).toBe(false);
  });

  it('knows the frames of a collect it gave up on as late, and does not give its COLLECTED to the next one', () => {
    const log: string[] = [];
    const q = new CollectQueue();
    const c1 = waiter(log, 'c1');
    q.sent(1n, c1);
    q.abandon(1n);
    c1.reject(new Error('timeout')); // as the supervisor's timer does
    q.sent(2n, waiter(log, 'c2'));
    // Collect 1's frames, then its COLLECTED, arrive after the timeout.
    expect(q.answeringAbandoned).toBe(true);
    const late = q.done(1n);
    expect(late.waiter).toBeUndefined();
    expect(late.unanswered).toEqual([]);
    // Collect 2's frames are its own; only its COLLECTED resolves it.
    expect(q.answeringAbandoned).toBe(false);
    expect(log).toEqual(['c1 rejected']);
    q.done(2n).waiter?.resolve();
    expect(log).toEqual(['c1 rejected', 'c2 resolved']);
  });

  it('hands back the waiters of collects a COLLECTED went past, and of all when the loader is gone', () => {
    const log: string[] = [];
    const q = new CollectQueue();
    q.sent(1n, waiter(log, 'c1'));
    q.sent(2n, waiter(log, 'c2'));
    q.sent(3n, waiter(log, 'c3'));
    q.sent(4n, waiter(log, 'c4'));
    const r = q.done(2n);
    for (const w of r.unanswered) w.reject(new Error('skipped'));
    r.waiter?.resolve();
    expect(log).toEqual(['c1 rejected', 'c2 resolved']);
    q.abandon(3n);
    expect(q.done(99n)).toEqual({ unanswered: [] });
    for (const w of q.clear()) w.reject(new Error('exited'));
    expect(log).toEqual(['c1 rejected', 'c2 resolved', 'c4 rejected']);
    expect(q.answeringAbandoned).toBe(false);
  });
});
