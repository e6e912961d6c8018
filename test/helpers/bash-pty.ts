// A real interactive bash on a pseudo-terminal (util-linux `script` owns the
// pty and copies our writes into it), typed into line by line, so readline()
// runs exactly as for a person at a terminal. The shell gets a clean
// environment: no rc files, no inputrc, no history file, so nothing on the
// machine changes and nothing from the machine changes what it reads.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';

export interface InteractiveBash {
  /** Pid of the bash process (from its prompt). */
  pid: number;
  /** Everything the terminal showed so far. */
  output(): string;
  /** Types `line` and Enter, and waits for the next prompt (or the exit, for `exit`). */
  type(line: string): Promise<void>;
  /** Kills what is left (after a failed test). */
  kill(): void;
  proc: ChildProcess;
}

export interface BashOptions {
  /** Run as this user (runuser); default: as ourselves. */
  user?: string;
  /** The shell binary; default /bin/bash. */
  bash?: string;
  /** Run in the mount namespace of this process (as in a container). */
  mountNsOf?: number;
  /**
   * Runs the shell through this command, which execs the rest of its
   * arguments (e.g. `unshare --mount --root <dir>`), after the clean
   * environment is set.
   */
  via?: string[];
}

/** Quotes for /bin/sh. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const PROMPT = /(?:^|\n)\[dke:(\d+)\]> /g;

export async function startInteractiveBash(opts: BashOptions = {}, timeoutMs = 10_000): Promise<InteractiveBash> {
  const home = opts.user ? execFileSync('getent', ['passwd', opts.user], { encoding: 'utf8' }).split(':')[5]! : '/root';
  const env = [
    `HOME=${home}`,
    'TERM=dumb',
    'LANG=C.UTF-8', // readline reads UTF-8 input as characters only in a UTF-8 locale
    'PATH=/usr/sbin:/usr/bin:/sbin:/bin',
    'HISTFILE=/dev/null',
    'INPUTRC=/dev/null',
    'PS1=[dke:$$]> ', // bash expands $$ in the prompt: its own pid
  ];
  const shell = [...(opts.via ?? []), opts.bash ?? '/bin/bash', '--norc', '--noprofile', '-i'];
  const inner = ['env', '-i', ...env, ...shell];
  const asUser = opts.user ? ['runuser', '-u', opts.user, '--', ...inner] : inner;
  const argv = opts.mountNsOf ? ['nsenter', '-t', String(opts.mountNsOf), '-m', '--', ...asUser] : asUser;
  // script runs its command through $SHELL -c: make that sh, not a second bash.
  const proc = spawn('script', ['-qfec', argv.map(shq).join(' '), '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', SHELL: '/bin/sh', TERM: 'dumb' },
  });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const prompts = (): number => [...out.matchAll(PROMPT)].length;

  const waitUntil = async (cond: () => boolean, what: string): Promise<void> => {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`interactive bash: no ${what} within ${timeoutMs} ms; terminal so far: ${JSON.stringify(out.slice(-500))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const exited = (): boolean => proc.exitCode !== null || proc.signalCode !== null;

  await waitUntil(() => prompts() >= 1 || exited(), 'first prompt');
  const m = /\[dke:(\d+)\]> /.exec(out);
  if (!m) throw new Error(`interactive bash did not start: ${JSON.stringify(out)}`);
  return {
    pid: Number(m[1]),
    proc,
    output: () => out,
    async type(line: string) {
      const before = prompts();
      proc.stdin!.write(`${line}\r`);
      if (line === 'exit') await waitUntil(exited, 'exit');
      else await waitUntil(() => prompts() > before, `prompt after typing ${JSON.stringify(line.slice(0, 60))}`);
    },
    kill() {
      if (!exited()) proc.kill('SIGKILL');
    },
  };
}
