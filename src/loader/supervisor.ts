// Runs one privileged loader child (per plugin) and keeps it running. The
// daemon's state lives on this side, so a child that dies (a crash, an OOM
// kill, someone's kill -9) costs at most what the kernel counted since the
// last read: we log why, restart it with capped exponential backoff, and bump
// `generation` so the aggregators know the kernel maps started over.
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { CollectorError, type ErrorCode } from '../errors';
import { LOADER_CHILD_JS } from '../paths';
import type { ChildMessage, HookSetReport, LoaderSpec, ParentMessage } from './protocol';
import { asBuffer } from './protocol';

export interface LoaderReady {
  kernel: string;
  hookSet: HookSetReport;
  /** The plugin's own facts (e.g. NetLoaderInfo). */
  info: unknown;
  generation: number;
  pid: number;
}

export interface SupervisorEvents {
  ready: [LoaderReady];
  event: [string, Buffer, number];
  exit: [{ code: number | null; signal: NodeJS.Signals | null; generation: number }];
}

const REQUEST_TIMEOUT_MS = 10_000;
const BACKOFF_INITIAL_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** A child that stayed up this long resets the backoff. */
const STABLE_MS = 60_000;

interface Pending {
  resolve: (data: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

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
  private nextId = 1;
  private pending = new Map<number, Pending>();
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
    private readonly childScript: string = LOADER_CHILD_JS,
  ) {
    super();
  }

  /** Starts the child; resolves when its programs are attached. A fatal start is a CollectorError. */
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
    const child = fork(this.childScript, [JSON.stringify(this.spec)], {
      serialization: 'advanced',
      // The loader holds no state: a small young generation keeps its RSS
      // low, map dumps live outside the JS heap anyway.
      execArgv: ['--max-semi-space-size=2'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child = child;
    this.startedAt = Date.now();
    child.on('message', (msg: ChildMessage) => this.onMessage(msg, generation, child));
    child.on('exit', (code, signal) => this.onExit(code, signal, generation));
    child.on('error', (err) => this.log.error({ err, plugin: this.spec.plugin }, 'eBPF loader process error'));
  }

  private onMessage(msg: ChildMessage, generation: number, child: ChildProcess): void {
    switch (msg.type) {
      case 'ready':
        this.ready = true;
        this.lastFatal = undefined;
        this.emit('ready', { kernel: msg.kernel, hookSet: msg.hookSet, info: msg.info, generation, pid: child.pid ?? 0 });
        break;
      case 'fatal':
        this.lastFatal = new CollectorError(msg.code as ErrorCode, msg.message);
        this.log.error({ code: msg.code, plugin: this.spec.plugin }, msg.message);
        break;
      case 'event':
        this.emit('event', msg.stream, asBuffer(msg.records), generation);
        break;
      case 'reply':
      case 'error': {
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.type === 'error') p.reject(new Error(msg.message));
        else p.resolve(msg.data);
      }
    }
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null, generation: number): void {
    this.ready = false;
    this.child = undefined;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new CollectorError('LOADER_EXITED', `the ${this.spec.plugin} eBPF loader exited`));
      this.pending.delete(id);
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
      `eBPF loader exited (${signal ? `signal ${signal}` : `code ${code}`}); restarting in ${delay} ms, collected data is kept`,
    );
    this.restartTimer = setTimeout(() => {
      if (!LoaderSupervisor.restartsHeld) this.spawn(false);
    }, delay);
  }

  get childPid(): number | undefined {
    return this.child?.pid;
  }

  /** Sends `op` to the child's plugin; resolves with its answer. */
  request<T>(op: string, args?: unknown): Promise<T> {
    const child = this.child;
    if (!child || !this.ready) {
      return Promise.reject(new CollectorError('LOADER_EXITED', `the ${this.spec.plugin} eBPF loader is not running`));
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the ${this.spec.plugin} eBPF loader did not answer ${op} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve: resolve as (d: unknown) => void, reject, timer });
      child.send({ type: 'request', id, op, args } satisfies ParentMessage);
    });
  }

  /**
   * Detaches the programs (and with `unpin`, removes pinned state) and waits
   * (bounded) for the child to exit. Idempotent.
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
      try {
        child.send({ type: 'stop', unpin } satisfies ParentMessage);
      } catch {
        child.kill('SIGKILL');
      }
    });
  }

  /** Kills the child at once. Idempotent. */
  destroy(): void {
    this.closing = true;
    clearTimeout(this.restartTimer);
    this.child?.kill('SIGKILL');
  }
}
