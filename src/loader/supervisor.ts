// Runs one privileged loader process (per plugin) and keeps it running. It
// speaks frames (native/frame.h): commands on its stdin, frames back on its
// fd 3. The daemon's state lives on this side, and counting goes on in the
// kernel (pinned maps and links) while a loader is down, so a loader that dies
// (a crash, an OOM kill, someone's kill -9) costs nothing: we log why, restart
// it with capped exponential backoff and bump `generation`.
//
// Loaders run in their own process group and ignore SIGINT/SIGTERM/SIGHUP:
// a signal meant for the daemon's group (Ctrl-C, systemd's KillMode,
// kill -- -PGID) must not take the loader away before the daemon's last
// collect. They stop on DKE_CMD_STOP, or when their stdin closes (the daemon
// is gone).
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import { CollectorError, type ErrorCode } from '../errors';
import { CollectQueue } from './collect-queue';
import { encodeCollectCmd, encodeFrame, encodeStopCmd, FrameReader, readBigField, type Frame } from './frames';
import {
  DKE_CMD_COLLECT,
  DKE_CMD_COMMIT,
  DKE_CMD_RESUME,
  DKE_CMD_STOP,
  DKE_FRAME_COLLECTED,
  DKE_FRAME_FATAL,
  DKE_FRAME_LOG,
  DKE_FRAME_READY,
  dke_collect_cmd,
} from './layout.generated';

/** What to run: an executable and its arguments (the plugin name is for logs). */
export interface LoaderSpec {
  plugin: string;
  file: string;
  args: string[];
}

/** The hook set a loader settled on, for the start-up log line. */
export interface HookSetReport {
  name: string;
  attached: { program: string; section: string; ok: boolean; error?: string; reused?: boolean }[];
  /** Optional hooks that are missing, with what the user loses. */
  degraded: string[];
}

export interface LoaderReady {
  kernel: string;
  hookSet: HookSetReport;
  /** The plugin's own facts (e.g. the net loader's pin dir). */
  info: unknown;
  generation: number;
  pid: number;
}

export interface SupervisorEvents {
  ready: [LoaderReady];
  /**
   * A data frame (not READY/FATAL/LOG/COLLECTED), in the order the loader
   * sent it, with the loader's generation and whether it answers a collect
   * the daemon stopped waiting for (late).
   */
  frame: [Frame, number, boolean];
  exit: [{ code: number | null; signal: NodeJS.Signals | null; generation: number }];
}

const COLLECT_TIMEOUT_MS = 10_000;
const BACKOFF_INITIAL_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** A loader that stayed up this long resets the backoff. */
const STABLE_MS = 60_000;

export class LoaderSupervisor extends EventEmitter<SupervisorEvents> {
  /** Set once the daemon stops: a loader that exits from then on is not restarted. */
  private static restartsHeld = false;

  /** The daemon is stopping (src/daemon/daemon.ts): no loader is restarted any more. */
  static holdRestarts(): void {
    LoaderSupervisor.restartsHeld = true;
  }

  private child?: ChildProcess;
  private ready = false;
  private closing = false;
  private collects = new CollectQueue();
  private backoffMs = BACKOFF_INITIAL_MS;
  private restartTimer?: NodeJS.Timeout;
  private startedAt = 0;
  private lastFatal?: CollectorError;
  private firstStart = true;
  generation = 0;
  restarts = 0;

  constructor(
    private readonly spec: LoaderSpec,
    private readonly log: Logger,
  ) {
    super();
  }

  /** Starts the loader; resolves when its programs are attached. A fatal start is a CollectorError. */
  start(): Promise<LoaderReady> {
    return new Promise((resolve, reject) => {
      const onReady = (r: LoaderReady): void => {
        this.off('exit', onExit);
        resolve(r);
      };
      const onExit = (): void => {
        this.off('ready', onReady);
        reject(this.lastFatal ?? new CollectorError('LOADER_EXITED', `the ${this.spec.plugin} eBPF loader exited during start-up`));
      };
      this.once('ready', onReady);
      this.once('exit', onExit);
      this.spawn(true);
    });
  }

  private spawn(first: boolean): void {
    this.firstStart = first;
    this.generation += 1;
    const generation = this.generation;
    let child: ChildProcess;
    try {
      child = spawn(this.spec.file, this.spec.args, { stdio: ['pipe', 'inherit', 'inherit', 'pipe'], detached: true });
    } catch (err) {
      this.lastFatal = new CollectorError('LOADER_EXITED', `cannot start the ${this.spec.plugin} eBPF loader ${this.spec.file}: ${(err as Error).message}`);
      queueMicrotask(() => this.onExit(null, null, generation));
      return;
    }
    this.child = child;
    this.startedAt = Date.now();
    const reader = new FrameReader();
    const frames = child.stdio[3] as Readable;
    frames.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, (f) => this.onFrame(f, generation, child));
      } catch (err) {
        this.log.error({ plugin: this.spec.plugin }, (err as Error).message);
        child.kill('SIGKILL');
      }
    });
    frames.on('error', () => undefined);
    (child.stdin as Writable).on('error', () => undefined); // EPIPE: the exit handler reports it
    let exited = false;
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (exited) return;
      exited = true;
      this.onExit(code, signal, generation);
    };
    child.on('exit', onExit);
    child.on('error', (err) => {
      this.lastFatal ??= new CollectorError('LOADER_EXITED', `cannot start the ${this.spec.plugin} eBPF loader ${this.spec.file}: ${err.message}`);
      // A spawn that failed (no such file) never exits.
      if (child.pid === undefined) onExit(null, null);
    });
  }

  private onFrame(f: Frame, generation: number, child: ChildProcess): void {
    switch (f.type) {
      case DKE_FRAME_READY: {
        const r = JSON.parse(f.payload.toString('utf8')) as Omit<LoaderReady, 'generation' | 'pid'>;
        this.ready = true;
        this.lastFatal = undefined;
        this.emit('ready', { ...r, generation, pid: child.pid ?? 0 });
        break;
      }
      case DKE_FRAME_FATAL: {
        const m = JSON.parse(f.payload.toString('utf8')) as { code: string; message: string };
        this.lastFatal = new CollectorError(m.code as ErrorCode, m.message);
        this.log.error({ code: m.code, plugin: this.spec.plugin }, m.message);
        break;
      }
      case DKE_FRAME_LOG: {
        const { level, msg, ...fields } = JSON.parse(f.payload.toString('utf8')) as { level: string; msg: string };
        const at = level === 'error' ? 'error' : level === 'warn' ? 'warn' : level === 'debug' ? 'debug' : 'info';
        this.log[at]({ plugin: this.spec.plugin, ...fields }, msg);
        break;
      }
      case DKE_FRAME_COLLECTED: {
        const { waiter, unanswered } = this.collects.done(readBigField(f.payload, 0, dke_collect_cmd.fields.seq));
        for (const w of unanswered) {
          clearTimeout(w.timer);
          w.reject(new Error(`the ${this.spec.plugin} eBPF loader skipped a collect`));
        }
        if (waiter) {
          clearTimeout(waiter.timer);
          waiter.resolve();
        }
        break;
      }
      default:
        this.emit('frame', f, generation, this.collects.answeringAbandoned);
    }
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null, generation: number): void {
    if (generation !== this.generation) return;
    this.ready = false;
    this.child = undefined;
    for (const p of this.collects.clear()) {
      clearTimeout(p.timer);
      p.reject(new CollectorError('LOADER_EXITED', `the ${this.spec.plugin} eBPF loader exited`));
    }
    this.emit('exit', { code, signal, generation });
    if (this.closing || LoaderSupervisor.restartsHeld) return;
    // A loader that cannot start at all (no root, old kernel) will not get
    // better by retrying: start() reports it and the daemon decides.
    if (this.firstStart && this.lastFatal) return;
    if (Date.now() - this.startedAt > STABLE_MS) this.backoffMs = BACKOFF_INITIAL_MS;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.restarts += 1;
    this.log.error(
      { code, signal, plugin: this.spec.plugin, restartInMs: delay, restarts: this.restarts },
      `eBPF loader exited (${signal ? `signal ${signal}` : `code ${code}`}); restarting in ${delay} ms, the kernel keeps counting meanwhile`,
    );
    this.restartTimer = setTimeout(() => {
      if (!LoaderSupervisor.restartsHeld) this.spawn(false);
    }, delay);
  }

  get childPid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.ready && this.child !== undefined;
  }

  private send(type: number, payload?: Buffer): boolean {
    const stdin = this.child?.stdin;
    if (!stdin || !this.ready) return false;
    stdin.write(encodeFrame(type, payload));
    return true;
  }

  /**
   * Asks the loader for what changed (`what`: DKE_COLLECT_* bits); its data
   * frames arrive as 'frame' events before this resolves.
   */
  collect(seq: bigint, what: number): Promise<void> {
    if (!this.send(DKE_CMD_COLLECT, encodeCollectCmd(seq, what))) {
      return Promise.reject(new CollectorError('LOADER_EXITED', `the ${this.spec.plugin} eBPF loader is not running`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // Its answer may still come: the queue keeps its place so that it is known as late.
        this.collects.abandon(seq);
        reject(new Error(`the ${this.spec.plugin} eBPF loader did not answer a collect within ${COLLECT_TIMEOUT_MS} ms`));
      }, COLLECT_TIMEOUT_MS);
      this.collects.sent(seq, { resolve, reject, timer });
    });
  }

  /** The points of collect `seq` are durable: the loader may let go of the generations it read up to it. */
  commit(seq: bigint): void {
    this.send(DKE_CMD_COMMIT, encodeCollectCmd(seq, 0));
  }

  /** At start: the last collect whose points the daemon durably holds (0n: none). */
  resume(seq: bigint): void {
    this.send(DKE_CMD_RESUME, encodeCollectCmd(seq, 0));
  }

  /**
   * Detaches the programs (with `unpin`, also removes the pins, so nothing
   * keeps counting without us) and waits (bounded) for the loader to exit.
   * Idempotent.
   */
  async close(timeoutMs = 3000, unpin = true): Promise<void> {
    this.closing = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve();
      }, timeoutMs);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      if (!this.send(DKE_CMD_STOP, encodeStopCmd(unpin))) child.kill('SIGKILL');
    });
  }

  /** Kills the loader at once (its pins stay for the next start). Idempotent. */
  destroy(): void {
    this.closing = true;
    clearTimeout(this.restartTimer);
    this.child?.kill('SIGKILL');
  }
}
