// Child processes that talk in JSON lines, and the one place that makes sure
// none of them outlives the benchmark (each is killed by its own pid).
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import readline from 'node:readline';

const live = new Set<ChildProcess>();

export type JsonLine = Record<string, unknown>;

export interface JsonProc {
  proc: ChildProcess;
  pid: number;
  /** The next JSON line on stdout (non-JSON lines are skipped). */
  next(timeoutMs?: number): Promise<JsonLine>;
  /** Resolves with the exit code once the process is gone. */
  exited: Promise<number | null>;
  /** Stderr lines so far (for error messages). */
  stderr: string[];
  kill(signal?: NodeJS.Signals): void;
}

export function spawnJson(cmd: string, args: string[], opts: SpawnOptions = {}): JsonProc {
  const proc = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  const queue: JsonLine[] = [];
  const waiters: ((l: JsonLine | undefined) => void)[] = [];
  const stderr: string[] = [];
  let ended = false;
  readline.createInterface({ input: proc.stdout! }).on('line', (l) => {
    let obj: JsonLine;
    try {
      obj = JSON.parse(l) as JsonLine;
    } catch {
      return;
    }
    const w = waiters.shift();
    if (w) w(obj);
    else queue.push(obj);
  });
  readline.createInterface({ input: proc.stderr! }).on('line', (l) => {
    if (stderr.length < 200) stderr.push(l);
  });
  const exited = new Promise<number | null>((resolve) => {
    proc.once('error', (err) => {
      stderr.push(String(err));
      resolve(null);
    });
    proc.once('exit', (code) => resolve(code));
  }).then((code) => {
    live.delete(proc);
    ended = true;
    // Let stdout drain before telling waiters there is nothing more.
    setTimeout(() => {
      for (const w of waiters.splice(0)) w(undefined);
    }, 50);
    return code;
  });
  const name = `${cmd} ${args.slice(0, 6).join(' ')}`;
  return {
    proc,
    pid: proc.pid ?? -1,
    exited,
    stderr,
    kill: (signal = 'SIGTERM') => {
      if (!ended) proc.kill(signal);
    },
    next(timeoutMs = 30_000) {
      const q = queue.shift();
      if (q) return Promise.resolve(q);
      if (ended) return Promise.reject(new Error(`${name}: exited without more output; stderr: ${stderr.join(' | ')}`));
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          const i = waiters.indexOf(done);
          if (i >= 0) waiters.splice(i, 1);
          reject(new Error(`${name}: no output within ${timeoutMs} ms; stderr: ${stderr.join(' | ')}`));
        }, timeoutMs);
        function done(l: JsonLine | undefined): void {
          clearTimeout(t);
          if (l) resolve(l);
          else reject(new Error(`${name}: exited without output; stderr: ${stderr.join(' | ')}`));
        }
        waiters.push(done);
      });
    },
  };
}

/** A generator's server (gen/tcpgen.c, gen/udpgen.c): one ready line, its counts so far on SIGUSR1, the last ones on SIGTERM. */
export interface CountingServer<Counts> {
  pid: number;
  /** Cumulative counts so far. */
  counts(): Promise<Counts>;
  stop(): Promise<Counts>;
}

/** Starts such a server (`what` names it in errors) once it says it is ready. */
export async function startCountingServer<Counts>(what: string, cmd: string, args: string[]): Promise<CountingServer<Counts>> {
  const p: JsonProc = spawnJson(cmd, args);
  const ready = await p.next(10_000);
  if (ready.error) throw new Error(`${what}: ${String(ready.error)}`);
  return {
    pid: p.pid,
    async counts() {
      p.kill('SIGUSR1');
      return (await p.next(5000)) as unknown as Counts;
    },
    async stop() {
      p.kill('SIGTERM');
      const last = (await p.next(10_000)) as unknown as Counts;
      await p.exited;
      return last;
    },
  };
}

/** Runs a command that prints one JSON result line and exits. */
export async function runJson(cmd: string, args: string[], timeoutMs: number): Promise<JsonLine> {
  const p = spawnJson(cmd, args);
  try {
    const line = await p.next(timeoutMs);
    await p.exited;
    if (typeof line.error === 'string') throw new Error(`${cmd} ${args.join(' ')}: ${line.error}`);
    return line;
  } finally {
    p.kill('SIGKILL');
  }
}

/** Runs a command to completion and returns its stdout (registered for cleanup like the others). */
export function runText(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) => {
    const done = (code: number | null): void => {
      clearTimeout(timer);
      live.delete(proc);
      resolve({ code, stdout, stderr });
    };
    proc.once('error', (err) => {
      stderr += String(err);
      done(null);
    });
    proc.once('close', (code) => done(code));
  });
}

/** Ends every process this benchmark started and that is still running. */
export function killAllChildren(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const p of live) {
    try {
      p.kill(signal);
    } catch {
      /* already gone */
    }
  }
}
