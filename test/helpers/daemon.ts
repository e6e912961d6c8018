// Runs the real collector (compiled CLI, real eBPF) the way DataKit would,
// and collects its JSON log lines.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const CLI = path.resolve(__dirname, '../../dist/src/cli/main.js');

export interface RunningDaemon {
  proc: ChildProcess;
  logs: Record<string, unknown>[];
  stderr: string[];
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Runs the CLI. `unprivileged` drops every capability (setpriv, empty
 * bounding set) while staying uid 0, so the checkout stays readable wherever
 * CI cloned it. `wrap` prefixes the command line (e.g. memcg.ts's inCgroup,
 * to start it in a cgroup of its own as a service manager does).
 */
export function spawnCli(
  args: string[],
  unprivileged = false,
  wrap?: (command: string[]) => string[],
): { proc: ChildProcess; logs: Record<string, unknown>[]; stderr: string[] } {
  // The checkout may sit where an unprivileged user cannot read it (CI clones
  // into root's home), so the daemon keeps root here; test/e2e/install.test.ts
  // and operate.test.ts run the real privilege drop from an installed copy.
  const keepRoot = args.includes('--user') || args[0] === 'check-config' ? [] : ['--user', 'root'];
  const argv = [CLI, ...args, ...keepRoot];
  const command = unprivileged ? ['setpriv', '--bounding-set', '-all', '--inh-caps', '-all', process.execPath, ...argv] : [process.execPath, ...argv];
  const [cmd, ...cmdArgs] = wrap ? wrap(command) : command;
  const proc = spawn(cmd, cmdArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  readline.createInterface({ input: proc.stdout! }).on('line', (l) => {
    try {
      logs.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      logs.push({ msg: l });
    }
  });
  readline.createInterface({ input: proc.stderr! }).on('line', (l) => stderr.push(l));
  return { proc, logs, stderr };
}

/** A fresh state directory per daemon, so no test inherits another's spool. */
export function tempStateDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'dke-state-'));
}

const pinRoots: string[] = [];
/** A pin root nobody else uses; removeTempPinRoots() (test/setup.ts, after each file) removes it. */
export function tempPinRoot(): string {
  const dir = `/sys/fs/bpf/dke-test-${process.pid}-${pinRoots.length + 1}`;
  pinRoots.push(dir);
  return dir;
}

/**
 * Removes this process's pin roots. A daemon a test SIGKILLed leaves its
 * programs pinned and attached (that is the point of pinning); removing the
 * pins detaches them.
 */
export function removeTempPinRoots(): void {
  for (const dir of pinRoots.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

export async function startDaemon(apiServer: string, extra: string[] = [], wrap?: (command: string[]) => string[]): Promise<RunningDaemon> {
  const stateArgs = extra.includes('--state-dir') ? [] : ['--state-dir', tempStateDir()];
  // Its own pin root: daemons of concurrent test files must not share kernel counters.
  const pinArgs = extra.includes('--pin-root') ? [] : ['--pin-root', tempPinRoot()];
  const { proc, logs, stderr } = spawnCli([
    'run',
    ...stateArgs,
    ...pinArgs,
    '--datakit-apiserver',
    apiServer,
    '--interval',
    '1s',
    '--log',
    'stdout',
    '--log-level',
    'debug',
    ...extra,
  ], false, wrap);
  const started = await waitFor(() => logs.find((l) => String(l.msg).startsWith('datakit-ebpf started')), 30_000, () =>
    proc.exitCode !== null ? `daemon exited ${proc.exitCode}: ${stderr.join(' | ')}` : undefined,
  );
  if (!started) throw new Error(`daemon did not start: ${stderr.join(' | ')}`);
  return {
    proc,
    logs,
    stderr,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => resolve(code));
        proc.kill('SIGTERM');
      }),
  };
}

/** Polls `probe` until it returns a value (not undefined/false) or the time is up. */
export async function waitFor<T>(probe: () => T | undefined | false, timeoutMs: number, fail?: () => string | undefined): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    const f = fail?.();
    if (f) throw new Error(f);
    if (Date.now() > end) return undefined;
    await new Promise((r) => setTimeout(r, 200));
  }
}
