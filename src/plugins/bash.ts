// The ebpf-bash plugin: a dke-loader with the readline uretprobe, and the
// buffer of lines it feeds. Lines go to DataKit every interval, or as soon as
// FLUSH_LINES are waiting, whichever comes first.
import type { Logger } from 'pino';
import { BASH_INPUT, bashPoint, toEntries, type BashEntry } from '../bash/log';
import { BashOrigins, decodeBashOrigins } from '../bash/origins';
import { decodeBashLines } from '../bash/record';
import { Redactor } from '../bash/redact';
import { UserNames } from '../bash/users';
import { readTelemetry, type Frame } from '../loader/frames';
import { DKE_FRAME_BASH_LINES, DKE_FRAME_BASH_ORIGINS, DKE_FRAME_TELEMETRY } from '../loader/layout.generated';
import { LoaderSupervisor, type LoaderReady } from '../loader/supervisor';
import { LOADER_BIN } from '../paths';
import type { CollectorPlugin, PluginContext } from './types';

/** The bash binaries probed when --bash-path is not given. */
export const DEFAULT_BASH_PATHS = ['/bin/bash', '/usr/bin/bash'];

interface BashLoaderInfo {
  /** The binaries whose readline() is probed for good. */
  binaries: string[];
  /** How the uretprobe is attached. */
  mode: string;
  /** Whether bash binaries run in other mount namespaces are found and probed. */
  containers: boolean;
}

/** Kernel-side telemetry counters of lost bash data, by the `what` they are reported as. */
const KERNEL_LOSSES = {
  ringbuf_full: 'bash_ringbuf_full',
  read_failed: 'bash_read_failed',
  procs_full: 'bash_procs_full',
  pids_full: 'bash_pids_full',
} as const;

/** Upstream's batch size. */
export const FLUSH_LINES = 128;

export class BashPlugin implements CollectorPlugin {
  readonly name = 'ebpf-bash' as const;
  private readonly loader: LoaderSupervisor;
  private readonly log: Logger;
  private readonly users = new UserNames();
  private readonly origins = new BashOrigins();
  private readonly redactor: Redactor;
  private buffer: BashEntry[] = [];
  /** Batches are resolved (user names) one after another, so lines keep their order. */
  private ingesting: Promise<void> = Promise.resolve();
  private readonly sending = new Set<Promise<unknown>>();
  private lastTelemetry = { generation: 0, values: new Map<string, number>() };

  constructor(private readonly ctx: PluginContext) {
    const { config } = ctx;
    this.log = ctx.log.child({ plugin: this.name });
    this.redactor = new Redactor(config.bashRedact, config.bashRedactRegex);
    const paths = config.bashPaths.length > 0 ? config.bashPaths : DEFAULT_BASH_PATHS;
    const args = ['bash', '--paths', paths.join(','), '--explicit', config.bashPaths.length > 0 ? '1' : '0'];
    this.loader = new LoaderSupervisor({ plugin: 'bash', file: LOADER_BIN, args }, this.log);
    this.loader.on('frame', (f, generation) => {
      if (f.type === DKE_FRAME_BASH_LINES) this.enqueue(f);
      else if (f.type === DKE_FRAME_BASH_ORIGINS) this.applyOrigins(f);
      else if (f.type === DKE_FRAME_TELEMETRY) this.reportTelemetry(f, generation);
    });
    this.loader.on('ready', (r) => {
      if (r.generation <= 1) return;
      this.ingesting = this.ingesting.then(() => this.origins.clear());
      this.ctx.metrics.add('loader_restarts', 1, { plugin: this.name });
      this.log.info({ loaderPid: r.pid, generation: r.generation }, 'eBPF loader restarted');
    });
  }

  async start(): Promise<LoaderReady> {
    const ready = await this.loader.start();
    const redact = [...this.ctx.config.bashRedact, ...this.ctx.config.bashRedactRegex.map((r) => `regex ${r}`)];
    const info = ready.info as BashLoaderInfo;
    this.log.info(
      { binaries: info.binaries, attach: info.mode, containers: info.containers, redact },
      `auditing interactive bash commands; redaction ${redact.length > 0 ? `on (${redact.join(', ')})` : 'off'}`,
    );
    return ready;
  }

  get loaderPid(): number | undefined {
    return this.loader.childPid;
  }

  /** In line with the lines: an origin applies to the lines after it. */
  private applyOrigins(frame: Frame): void {
    this.ingesting = this.ingesting.then(() => {
      try {
        this.origins.apply(decodeBashOrigins(frame));
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'dropping an undecodable batch of bash shell origins');
      }
    });
  }

  private enqueue(frame: Frame): void {
    this.ingesting = this.ingesting.then(async () => {
      try {
        const entries = await toEntries(decodeBashLines(frame), this.users, this.redactor, this.origins);
        this.buffer.push(...entries);
      } catch (err) {
        // Never the command text: it may hold a secret the redaction is for.
        this.log.error({ err: (err as Error).message }, 'dropping an undecodable batch of bash lines');
        return;
      }
      if (this.buffer.length >= FLUSH_LINES) this.send();
    });
  }

  /** Queues what is buffered for delivery. Never rejects. */
  private send(): Promise<unknown> {
    if (this.buffer.length === 0) return Promise.resolve();
    const entries = this.buffer;
    this.buffer = [];
    const points = entries.map((e) => bashPoint(e, this.ctx.commonTags));
    const p = this.ctx.uploader.write('logging', BASH_INPUT, points).then(
      (res) => this.log.debug({ ...res }, 'bash lines queued'),
      // The spool failed (disk full, I/O error): say so, never with the lines' text.
      (err: unknown) => this.log.error({ err: (err as Error).message }, `could not queue ${points.length} bash line(s): ${(err as Error).message}`),
    );
    this.sending.add(p);
    void p.finally(() => this.sending.delete(p));
    return p;
  }

  async tick(): Promise<void> {
    try {
      await this.loader.collect(0n, 0); // telemetry, and the lines read so far
    } catch {
      // the loader is restarting; its supervisor already said so
    }
    await this.ingesting;
    await this.send();
  }

  private reportTelemetry(f: Frame, generation: number): void {
    // A new loader has fresh kernel counters.
    const before = this.lastTelemetry.generation === generation ? this.lastTelemetry.values : new Map<string, number>();
    const now = readTelemetry(f);
    this.lastTelemetry = { generation, values: now };
    const lost: Record<string, number> = {};
    for (const [what, name] of Object.entries(KERNEL_LOSSES)) {
      const d = (now.get(name) ?? 0) - (before.get(name) ?? 0);
      if (d <= 0) continue;
      lost[what] = d;
      this.ctx.metrics.add('kernel_dropped', d, { plugin: this.name, what });
    }
    // procs_full and pids_full lose shells of containers (not probed), the others lines.
    if (Object.keys(lost).length > 0) this.log.warn({ lost }, 'the kernel side dropped bash lines or shell starts this interval');
  }

  async close(): Promise<void> {
    await this.loader.close();
    await this.ingesting;
    await this.send();
    await Promise.allSettled([...this.sending]);
  }

  destroy(): void {
    this.loader.destroy();
  }
}
