// CollectLog (src/netflow/collect-log.ts): which netflow collect is durable
// across daemon restarts. A pending collect counts only if the spool holds
// the record its points became; collect ids only grow.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CollectLog } from '../../src/netflow/collect-log';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-collect-log-'));
});
afterEach(() => {
  vi.useRealTimers();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A spool that holds records up to `last`. */
const spoolUpTo = (last: number) => (seq: number): boolean => seq <= last;

describe('CollectLog', () => {
  it('starts from 0 without a file, or with one that does not parse', () => {
    expect(new CollectLog(dir).load(spoolUpTo(100))).toBe(0n);
    fs.writeFileSync(path.join(dir, 'netflow-collects'), '{"committed":');
    expect(new CollectLog(dir).load(spoolUpTo(100))).toBe(0n);
  });

  it('a pending collect is durable when the spool holds its last record', () => {
    const a = new CollectLog(dir);
    a.load(spoolUpTo(0));
    const s1 = a.next();
    a.prepare(s1, 10);
    // (SIGKILL after the append)
    const b = new CollectLog(dir);
    expect(b.load(spoolUpTo(10))).toBe(s1);
    expect(b.lastCommitted).toBe(s1);
  });

  it('a pending collect whose points never reached the spool is not durable: the last committed one is', () => {
    const a = new CollectLog(dir);
    a.load(spoolUpTo(0));
    const s1 = a.next();
    a.prepare(s1, 10);
    a.markCommitted(s1);
    const s2 = a.next();
    a.prepare(s2, 11);
    // (SIGKILL before the append: the spool ends at 10)
    expect(new CollectLog(dir).load(spoolUpTo(10))).toBe(s1);
    expect(new CollectLog(dir).load(spoolUpTo(11))).toBe(s2);
  });

  it('markCommitted without a prepare is not on disk: a restart goes back to the last prepared state', () => {
    const a = new CollectLog(dir);
    a.load(spoolUpTo(0));
    const s1 = a.next();
    a.prepare(s1, 5);
    const s2 = a.next();
    a.markCommitted(s2);
    expect(a.lastCommitted).toBe(s2);
    expect(new CollectLog(dir).load(spoolUpTo(4))).toBe(0n);
  });

  it('ids increase within an instance and across instances, even when the clock goes back', () => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T00:00:00Z'));
    const a = new CollectLog(dir);
    a.load(spoolUpTo(0));
    const ids = [a.next(), a.next(), a.next()];
    expect(ids[1]! > ids[0]! && ids[2]! > ids[1]!).toBe(true);
    a.prepare(ids[2]!, 1);

    vi.setSystemTime(new Date('2020-01-01T00:00:00Z')); // the clock stepped back a decade
    const b = new CollectLog(dir);
    b.load(spoolUpTo(0)); // the pending collect is not durable, its id is still used
    const next = b.next();
    expect(next).toBe(ids[2]! + 1n);

    vi.setSystemTime(new Date('2031-01-01T00:00:00Z'));
    expect(b.next()).toBe(BigInt(Date.parse('2031-01-01T00:00:00Z')) * 1000n);
  });

  it('prepare writes atomically and clear removes the log', () => {
    const a = new CollectLog(dir);
    a.load(spoolUpTo(0));
    a.prepare(a.next(), 1);
    expect(fs.readdirSync(dir)).toEqual(['netflow-collects']);
    a.clear();
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(new CollectLog(dir).load(spoolUpTo(1))).toBe(0n);
  });

  it('prepare throws when the state dir is not writable', () => {
    const a = new CollectLog(path.join(dir, 'missing'));
    expect(() => a.prepare(1n, 1)).toThrow(/ENOENT/);
  });
});
