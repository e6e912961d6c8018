// Runs commands inside Debian 12's own 6.1 kernel under QEMU (scripts/kernel-vm):
// the guest's / is this machine's / (read-only) under a throwaway tmpfs overlay, so
// the built collector, node and our test helpers run there unchanged, and what they
// write stays in the guest but for $KERNEL_VM_OUT. One call = one boot (~5-15 s
// under TCG, depending on the load).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
export const KERNEL_VM = path.join(ROOT, 'scripts/kernel-vm');

export interface GuestOptions {
  /** Whole run, boot included (default 300 s). */
  timeoutMs?: number;
  /** Until the guest's init is up (default 90 s). */
  bootTimeoutMs?: number;
  /** Working directory inside the guest (default: the repository). */
  cwd?: string;
  env?: Record<string, string>;
  /** Files handed to the command: $KERNEL_VM_IN/<name> in the guest (the host's /tmp is not visible there). */
  inputs?: Record<string, string | Buffer>;
}

export interface GuestResult {
  code: number;
  stdout: string;
  stderr: string;
  /** What the command wrote under $KERNEL_VM_OUT, by path relative to it. */
  files: Record<string, string>;
  /** uname -r of the guest. */
  kernel: string;
  elapsedMs: number;
}

/** The guest did not boot, timed out or crashed: message has the reason and the serial console's tail. */
export class GuestError extends Error {
  override name = 'GuestError';
  constructor(
    message: string,
    readonly resultsDir: string,
  ) {
    super(message);
  }
}

function readTree(dir: string, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) Object.assign(out, readTree(path.join(dir, e.name), rel));
    else if (e.isFile()) out[rel] = fs.readFileSync(path.join(dir, e.name), 'utf8');
  }
  return out;
}

/** Boots the 6.1 guest, runs `command` (argv) there as root, returns what it said and wrote. */
export async function runInGuest(command: string[], opts: GuestOptions = {}): Promise<GuestResult> {
  if (command.length === 0) throw new Error('runInGuest: empty command');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-guest-'));
  if (opts.inputs) {
    fs.mkdirSync(path.join(dir, 'in'));
    for (const [name, data] of Object.entries(opts.inputs)) {
      const p = path.join(dir, 'in', name);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, data);
    }
  }
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const args = [
    KERNEL_VM, 'run',
    '--results', dir,
    '--timeout', String(Math.ceil(timeoutMs / 1000)),
    '--boot-timeout', String(Math.ceil((opts.bootTimeoutMs ?? 90_000) / 1000)),
    '--cwd', opts.cwd ?? ROOT,
  ];
  for (const [k, v] of Object.entries(opts.env ?? {})) args.push('-e', `${k}=${v}`);
  args.push('--', ...command);

  const started = Date.now();
  const proc = spawn('bash', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  proc.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  // The script enforces the timeout itself; this one only catches the script hanging.
  const guard = setTimeout(() => proc.kill('SIGTERM'), timeoutMs + 60_000); // its trap stops QEMU
  const status = await new Promise<number | null>((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (code) => resolve(code));
  }).finally(() => clearTimeout(guard));

  const codeFile = path.join(dir, 'exit-code');
  if (!fs.existsSync(codeFile)) {
    const failed = stderr.split('\n').find((l) => l.startsWith('kernel-vm: FAILED')) ?? `scripts/kernel-vm exited with ${status} and no result`;
    throw new GuestError(`${failed}\n${stderr.split('\n').slice(-40).join('\n')}`, dir);
  }
  const result: GuestResult = {
    code: Number(fs.readFileSync(codeFile, 'utf8').trim()),
    stdout: fs.readFileSync(path.join(dir, 'stdout'), 'utf8'),
    stderr: fs.readFileSync(path.join(dir, 'stderr'), 'utf8'),
    files: readTree(path.join(dir, 'out')),
    kernel: fs.readFileSync(path.join(dir, 'booted'), 'utf8').trim(),
    elapsedMs: Date.now() - started,
  };
  fs.rmSync(dir, { recursive: true, force: true });
  return result;
}

export interface GuestCheck {
  /** Letters, digits, '-' and '_': names the check's files. */
  name: string;
  /** bash script; runs from the repository with $CHECK_OUT, an empty directory for its own files. */
  script: string;
  /** Inside the guest (default 120 s); a check past it ends with code 124. */
  timeoutSec?: number;
}

export interface CheckResult {
  code: number;
  stdout: string;
  stderr: string;
  /** What the check wrote under $CHECK_OUT. */
  files: Record<string, string>;
  /** How long it ran, in the guest's clock (TCG: only a guide). */
  ms: number;
}

export interface GuestChecks {
  kernel: string;
  elapsedMs: number;
  /** Output of the guest's own runner (not of a check): empty when all went well. */
  runnerStderr: string;
  results: Record<string, CheckResult>;
}

/**
 * One boot running several independent checks one after another; each check's
 * exit code and output come back separately, so a file of tests shares one boot.
 */
export async function runChecksInGuest(checks: GuestCheck[], opts: GuestOptions = {}): Promise<GuestChecks> {
  const names = new Set<string>();
  for (const c of checks) {
    if (!/^[A-Za-z0-9_-]+$/.test(c.name) || names.has(c.name)) throw new Error(`runChecksInGuest: bad or repeated check name '${c.name}'`);
    names.add(c.name);
  }
  const inputs: Record<string, string | Buffer> = { ...opts.inputs };
  const runner = ['set -u'];
  for (const c of checks) {
    inputs[`checks/${c.name}.sh`] = c.script;
    const o = `"$KERNEL_VM_OUT/${c.name}"`;
    runner.push(
      `mkdir -p ${o}/files`,
      's=$(date +%s%N)',
      `CHECK_OUT=${o}/files timeout -k 5 ${c.timeoutSec ?? 120} bash "$KERNEL_VM_IN/checks/${c.name}.sh" </dev/null >${o}/stdout 2>${o}/stderr`,
      `echo $? >${o}/code`,
      `echo $(( ($(date +%s%N) - s) / 1000000 )) >${o}/ms`,
    );
  }
  const r = await runInGuest(['bash', '-c', runner.join('\n')], { ...opts, inputs });
  const results: Record<string, CheckResult> = {};
  for (const c of checks) {
    const get = (f: string): string | undefined => r.files[`${c.name}/${f}`];
    const code = get('code');
    if (code === undefined) throw new GuestError(`check ${c.name} did not run in the guest (runner exit ${r.code}): ${r.stderr}`, '');
    const files: Record<string, string> = {};
    for (const [k, v] of Object.entries(r.files)) if (k.startsWith(`${c.name}/files/`)) files[k.slice(c.name.length + 7)] = v;
    results[c.name] = { code: Number(code.trim()), stdout: get('stdout') ?? '', stderr: get('stderr') ?? '', files, ms: Number(get('ms') ?? 0) };
  }
  return { kernel: r.kernel, elapsedMs: r.elapsedMs, runnerStderr: r.stderr, results };
}
