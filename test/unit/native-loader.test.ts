// The native loader's pure logic has its own C++ unit tests; this runs them
// so the README's test command covers them.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/paths';

describe('dke-loader native units', () => {
  it.each([
    ['flow generations: a collect reports exactly what is not yet durable', 'test_flow_generations'],
    ['time order: per-CPU DNS rings merged so a query comes before its answer', 'test_time_order'],
    ["bash origins: container ids from cgroup paths, user names from a container's passwd", 'test_bash_origin'],
  ])('%s (%s)', (_what, binary) => {
    const r = spawnSync(path.join(PROJECT_ROOT, 'build', 'native', binary), { encoding: 'utf8' });
    expect(r.error).toBeUndefined();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('all checks passed');
  });
});
