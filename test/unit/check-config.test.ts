// check-config over a set of broken ebpf.conf files, each naming the lines it
// must produce (test/fixtures/check-config/*.conf, `# expect:` lines), and
// over the shipped sample. The daemon's start-up validation is the same code:
// its one error is the checker's first.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkConfigFile, formatProblem } from '../../src/config/check';
import { checkEbpfConf, KNOWN_KEYS, readEbpfConf } from '../../src/config/ebpfconf';
import { closest, editDistance } from '../../src/config/suggest';

const FIXTURES = path.join(__dirname, '../fixtures/check-config');
const SAMPLE = path.join(__dirname, '../../conf.d/host/ebpf.conf');
const files = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.conf'));

function expectations(file: string): string[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('# expect: '))
    .map((l) => l.slice('# expect: '.length));
}

describe('check-config on broken configs', () => {
  it('has fixtures', () => {
    expect(files.length).toBeGreaterThanOrEqual(10);
  });

  it.each(files)('%s', (name) => {
    const file = path.join(FIXTURES, name);
    const want = expectations(file);
    expect(want.length).toBeGreaterThan(0);
    const report = checkConfigFile(file);
    const got = report.lines.slice(0, -1).map((l) => (l.startsWith(file) ? l.slice(file.length) : l));
    // Fixture lines without a position start at ': '.
    expect(got).toEqual(want.map((w) => (w.startsWith(':') ? w : `: ${w}`)));
    const failing = report.problems.some((p) => p.severity !== 'note');
    expect(report.exitCode).toBe(failing ? 2 : 0);
    for (const p of report.problems) {
      if (p.severity === 'note') continue;
      // Every problem says where, what was expected and what to do.
      expect(p.line, formatProblem(file, p)).toBeGreaterThan(0);
      expect(p.column, formatProblem(file, p)).toBeGreaterThan(0);
      if (!['syntax-error.conf', 'no-table.conf', 'two-tables.conf'].includes(name)) {
        expect(p.key, formatProblem(file, p)).toBeTruthy();
        expect(p.expected, formatProblem(file, p)).toBeTruthy();
        expect(p.suggestion, formatProblem(file, p)).toBeTruthy();
      }
    }
  });

  it('the daemon stops on exactly the first error the checker reports', () => {
    for (const name of files) {
      const file = path.join(FIXTURES, name);
      const first = checkEbpfConf(file).problems.find((p) => p.severity === 'error');
      if (!first) {
        expect(() => readEbpfConf(file), name).not.toThrow();
        continue;
      }
      expect(() => readEbpfConf(file), name).toThrow(first.error!.message);
    }
  });

  it('reports every wrong key of one file, not just the first', () => {
    const report = checkConfigFile(path.join(FIXTURES, 'wrong-types.conf'));
    expect(report.problems.filter((p) => p.severity === 'error').map((p) => p.key)).toEqual([
      'daemon',
      'enabled_plugins',
      'ipv6_disabled',
      'ephemeral_port',
      'interval',
      'args',
    ]);
  });
});

describe('check-config on the shipped sample', () => {
  it('finds nothing wrong (exit code 0)', () => {
    const report = checkConfigFile(SAMPLE);
    expect(report.problems).toEqual([]);
    expect(report.exitCode).toBe(0);
    expect(report.lines).toEqual([`${SAMPLE}: no problems`]);
  });

  it('says so when the file cannot be read', () => {
    const report = checkConfigFile('/nonexistent/ebpf.conf');
    expect(report.exitCode).toBe(2);
    expect(report.lines[0]).toMatch(/^\/nonexistent\/ebpf\.conf: error: cannot read config file .*ENOENT/);
  });
});

describe('suggestions', () => {
  it('know every key the option table reads, and point a typo of each at it', () => {
    expect(KNOWN_KEYS).toEqual(expect.arrayContaining(['daemon', 'args', 'envs', 'interval', 'enabled_plugins', 'max_flows', 'orphan_timeout']));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dk-ebpf-keys-'));
    try {
      for (const key of KNOWN_KEYS) {
        const typo = `${key}${key.at(-1)}`;
        const file = path.join(dir, `${key}.conf`);
        fs.writeFileSync(file, `[[inputs.ebpf]]\n  ${typo} = 1\n`);
        expect(checkConfigFile(file).problems, key).toMatchObject([{ severity: 'warning', key: typo, suggestion: `did you mean "${key}"?` }]);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('measures typos as edits', () => {
    expect(editDistance('interval', 'intervall')).toBe(1);
    expect(editDistance('intreval', 'interval')).toBe(1); // a transposition
    expect(editDistance('', 'abc')).toBe(3);
  });

  it('suggests only close words, "-" and "_" alike', () => {
    expect(closest('ebpf-nett', ['ebpf-net', 'ebpf-bash'])).toBe('ebpf-net');
    expect(closest('ipv6-disabled', ['ipv6_disabled', 'interval'])).toBe('ipv6_disabled');
    expect(closest('colour', ['cmd', 'name', 'daemon'])).toBeUndefined();
    expect(closest('ab', ['cd'])).toBeUndefined();
  });
});
