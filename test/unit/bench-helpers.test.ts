// The pure parts of the benchmark (test/bench): reading /proc stat lines,
// medians of paired rounds and goal verdicts. A mistake here would print a
// confident wrong number, so they are checked like any other code.
import { describe, expect, it } from 'vitest';
import { parseStat } from '../bench/lib/proc';
import { pairedRatios } from '../bench/lib/rounds';
import { check } from '../bench/lib/types';
import { median } from '../bench/lib/util';
import { netflowPoints } from '../bench/encoder';
import { encodePoints } from '../../src/lineproto/encode';

describe('parseStat', () => {
  it('counts fields from the last parenthesis, so a comm with spaces and ")" does not shift them', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    const line = '4242 (node (x) y) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 11 0 99 0 0';
    const st = parseStat(line, 100);
    expect(st.pid).toBe(4242);
    expect(st.ppid).toBe(17);
    expect(st.cpuSeconds).toBeCloseTo(3.0);
    expect(st.childrenCpuSeconds).toBeCloseTo(0.5);
  });
});

describe('median and paired ratios', () => {
  it('takes the middle of odd and the mean of the middle two of even samples, ignoring NaN', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([NaN, 2])).toBe(2);
    expect(median([])).toBeNaN();
  });

  it('pairs with/without by round, never across rounds', () => {
    expect(pairedRatios([90, 200], [100, 400])).toEqual([0.9, 0.5]);
    expect(pairedRatios([1, 2, 3], [1])).toEqual([1]);
  });
});

describe('goal verdicts', () => {
  it('says by how much a goal is missed', () => {
    const r = check('churn', 'churn ratio', 0.9, '>=', 0.97, (v) => v.toFixed(2));
    expect(r.status).toBe('missed');
    expect(r.note).toContain('short by 0.07');
    const m = check('rss', 'rss', 150, '<=', 120, (v) => `${v} MB`);
    expect(m.note).toContain('over by 30 MB');
  });

  it('passes at the limit and fails on a missing measurement', () => {
    expect(check('x', 'x', 0.99, '>=', 0.99, String).status).toBe('met');
    expect(check('x', 'x', NaN, '<=', 1, String)).toMatchObject({ status: 'missed', value: 'n/a' });
  });
});

describe('encoder benchmark points', () => {
  it('are netflow-shaped points the real encoder accepts', () => {
    const pts = netflowPoints(50);
    const text = encodePoints(pts);
    expect(text.split('\n').filter(Boolean)).toHaveLength(50);
    expect(Object.keys(pts[0]!.tags)).toContain('server_port');
    expect(text.startsWith('netflow,')).toBe(true);
  });
});
