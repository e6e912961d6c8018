// Runs the privileged loader child and keeps it running. The daemon's state
// lives on this side, so a child that dies (a crash, an OOM kill, someone's
// kill -9) costs at most the counters of the interval in flight: we log why,
// restart it with capped exponential backoff, and bump `generation` so the
// aggregator knows the kernel maps started over.
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { CollectorError, type ErrorCode } from '../errors';
import { LOADER_CHILD_JS } from '../paths';
import { decodeTcpConns, decodeTcpConnMap, decodeSockOwnerMap, decodeUdpFlowMap } from './layout';
import type { SockOwnerRecord, TcpConnRecord, UdpFlowRecord } from './layout';
import type { ChildMessage, HookSetReport, LoaderOptions, ParentMessage } from './protocol';
import { asBuffer } from './protocol';

export interface LoaderReady {
  kernel: string;
  hookSet: HookSetReport;
  listeningPorts: number[];
  generation: number;
  pid: number;
}

export interface Snapshot {
  generation: number;
  tcp: TcpConnRecord[];
  udp: UdpFlowRecord[];
  owners: SockOwnerRecord[];
  telemetry: number[];
}

export interface SupervisorEvents {
  ready: [LoaderReady];
  closed: [TcpConnRecord[], number];
  exit: [{ code: number | null; signal: NodeJS.Signals | null; generation: number }];
}

const REQUEST_TIMEOUT_MS = 10_000;
const BACKOFF_INITIAL_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** A child that stayed up this long resets the backoff. */
const STABLE_MS = 60_000;

interface Pending {
  resolve: (msg: ChildMessage) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class LoaderSupervisor extends EventEmitter<SupervisorEvents> {
  private child?: ChildProcess;
  private ready = false;
  private closing = false;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private backoffMs = BACKOFF_INITIAL_MS;
  private restartTimer?: NodeJS.Timeout;
  private startedAt = 0;
  generation = 0;
  restarts = 0;

  constructor(
    private readonly options: LoaderOptions,
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
        reject(this.lastFatal ?? new CollectorError('LOADER_EXITED', 'the eBPF loader exited during start-up'));
      };
      this.once('ready', onReady);
      this.once('exit', onExit);
      this.spawn(true);
    });
  }

  private lastFatal?: CollectorError;
  private firstStart = true;

  private spawn(first: boolean): void {
    this.firstStart = first;
    this.generation += 1;
    const generation = this.generation;
    const child = fork(this.childScript, [JSON.stringify(this.options)], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child = child;
    this.startedAt = Date.now();
    child.on('message', (msg: ChildMessage) => this.onMessage(msg, generation, child));
    child.on('exit', (code, signal) => this.onExit(code, signal, generation));
    child.on('error', (err) => this.log.error({ err }, 'eBPF loader process error'));
  }

  private onMessage(msg: ChildMessage, generation: number, child: ChildProcess): void {
    switch (msg.type) {
      case 'ready':
        this.ready = true;
        this.lastFatal = undefined;
        this.emit('ready', {
          kernel: msg.kernel,
          hookSet: msg.hookSet,
          listeningPorts: msg.listeningPorts,
          generation,
          pid: child.pid ?? 0,
        });
        break;
      case 'fatal':
        this.lastFatal = new CollectorError(msg.code as ErrorCode, msg.message);
        this.log.error({ code: msg.code }, msg.message);
        break;
      case 'closed':
        try {
          this.emit('closed', decodeTcpConns(asBuffer(msg.records)), generation);
        } catch (err) {
          this.log.error({ err }, 'dropping an undecodable batch of close events');
        }
        break;
      case 'snapshot':
      case 'deleted':
      case 'error': {
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.type === 'error') p.reject(new Error(msg.message));
        else p.resolve(msg);
      }
    }
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null, generation: number): void {
    this.ready = false;
    this.child = undefined;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new CollectorError('LOADER_EXITED', 'the eBPF loader exited'));
      this.pending.delete(id);
    }
    this.emit('exit', { code, signal, generation });
    if (this.closing) return;
    // A loader that cannot start at all (no root, old kernel) will not get
    // better by retrying: start() reports it and the daemon exits.
    if (this.firstStart && this.lastFatal) return;
    if (Date.now() - this.startedAt > STABLE_MS) this.backoffMs = BACKOFF_INITIAL_MS;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.restarts += 1;
    this.log.error(
      { code, signal, restartInMs: delay, restarts: this.restarts },
      `eBPF loader exited (${signal ? `signal ${signal}` : `code ${code}`}); restarting in ${delay} ms, collected flows are kept`,
    );
    this.restartTimer = setTimeout(() => this.spawn(false), delay);
  }

  get childPid(): number | undefined {
    return this.child?.pid;
  }

  private request(msg: ParentMessage & { id: number }): Promise<ChildMessage> {
    const child = this.child;
    if (!child || !this.ready) return Promise.reject(new CollectorError('LOADER_EXITED', 'the eBPF loader is not running'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(msg.id);
        reject(new Error(`eBPF loader did not answer ${msg.type} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(msg.id, { resolve, reject, timer });
      child.send(msg);
    });
  }

  async snapshot(): Promise<Snapshot> {
    const generation = this.generation;
    const msg = await this.request({ type: 'snapshot', id: this.nextId++ });
    if (msg.type !== 'snapshot') throw new Error(`unexpected loader answer ${msg.type}`);
    return {
      generation,
      tcp: decodeTcpConnMap(asBuffer(msg.tcp)),
      udp: decodeUdpFlowMap(asBuffer(msg.udp)),
      owners: decodeSockOwnerMap(asBuffer(msg.owners)),
      telemetry: msg.telemetry,
    };
  }

  /** Removes UDP flows from the kernel map; returns their final counters. */
  async deleteUdp(keys: Buffer[]): Promise<UdpFlowRecord[]> {
    if (keys.length === 0) return [];
    const msg = await this.request({ type: 'deleteUdp', id: this.nextId++, keys: Buffer.concat(keys) });
    if (msg.type !== 'deleted') throw new Error(`unexpected loader answer ${msg.type}`);
    return decodeUdpFlowMap(asBuffer(msg.udp));
  }

  /** Detaches the programs and waits (bounded) for the child to exit. Idempotent. */
  async close(timeoutMs = 3000): Promise<void> {
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
        child.send({ type: 'stop' } satisfies ParentMessage);
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
