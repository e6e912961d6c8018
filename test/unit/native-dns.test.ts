// The native DNS module's own tests (native/dns/test_dns.cc: parser, TCP
// reassembly, pairing, aggregation, names, and fuzz loops over random and
// mutated packets), run from here so scripts/test fails when they fail: once
// as built for dke-loader (build/native), once under AddressSanitizer and
// UBSan (build/native-asan), where the fuzz loops also prove there is no read
// out of bounds, no undefined behaviour and no leak. scripts/build makes both.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/paths';

function runTestBinary(buildDir: string): string {
  const bin = path.join(PROJECT_ROOT, 'build', buildDir, 'test_dns');
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run \`bash scripts/build\` first (it builds the native DNS tests)`);
  const r = spawnSync(bin, [], {
    encoding: 'utf8',
    timeout: 120_000,
    env: {
      ...process.env,
      ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0:exitcode=86',
      UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
    },
  });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.error) throw new Error(`${bin} could not run: ${r.error.message}\n${output}`);
  expect(r.status, `${bin} exited with ${r.status ?? r.signal}:\n${output}`).toBe(0);
  return output;
}

describe('native DNS module (native/dns)', () => {
  it('passes its unit and fuzz tests as built for the loader', () => {
    expect(runTestBinary('native')).toMatch(/\d+ test\(s\), 0 failed check\(s\)/);
  });

  it('passes them under AddressSanitizer and UBSan, leak check included', () => {
    expect(runTestBinary('native-asan')).toMatch(/\d+ test\(s\), 0 failed check\(s\)/);
  });
});
