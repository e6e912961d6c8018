// The ebpf-bash plugin: a dke-loader with the readline uretprobe, and the
// buffer of lines it feeds. Lines go to DataKit every interval, or as soon as
// FLUSH_LINES are waiting, whichever comes first.
import type { Logger } from 'pino';
import { BASH_INPUT, bashPoint, toEntries, type BashEntry } from '../bash/log';
import { decodeBashLines } from '../bash/record';
import { Redactor } from '../bash/redact';
import { UserNames } from '../bash/users';
import { forEachRecord, readField, readString, type Frame } from '../loader/frames';
import { DKE_FRAME_BASH_LINES, DKE_FRAME_TELEMETRY, dke_telemetry_rec } from '../loader/layout.generated';
import { LoaderSupervisor, type LoaderReady } from '../loader/supervisor';
import { LOADER_BIN } from '../paths';
import type { CollectorPlugin, PluginContext } from './types';

/** The bash binaries probed when --bash-path is not given. */
export const DEFAULT_BASH_PATHS = ['/bin/bash', '/usr/bin/bash'];

interface BashLoaderInfo {
  /** The binaries whose readline() is probed. */
  binaries: string[];
  /** How the uretprobe is attached. */
  mode: string;
}

/** Upstream's batch size. */
export const FLUSH_LINES = 128;

export class BashPlugin implements CollectorPlugin {
  readonly name = 'ebpf-bash' as const;
  private readonly loader: LoaderSupervisor;
  private readonly log: Logger;
  private readonly users = new UserNames();
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
      else if (f.type === DKE_FRAME_TELEMETRY) this.reportTelemetry(f, generation);
    });
    this.loader.on('ready', (r) => {
      if (r.generation <= 1) return;
      this.ctx.metrics.add('loader_restarts', 1, { plugin: this.name });
      this.log.info({ loaderPid: r.pid, generation: r.generation }, 'eBPF loader restarted');
    });
  }

  async start(): Promise<LoaderReady> {
    const ready = await this.loader.start();
    const redact = [...this.ctx.config.bashRedact, ...this.ctx.config.bashRedactRegex.map((r) => `regex ${r}`)];
    const info = ready.info as BashLoaderInfo;
    this.log.info(
      { binaries: info.binaries, attach: info.mode, redact },
      `auditing interactive bash commands; redaction ${redact.length > 0 ? `on (${redact.join(', ')})` : 'off'}`,
    );
    return ready;
  }

  get loaderPid(): number | undefined {
    return this.loader.childPid;
  }

  private enqueue(frame: Frame): void {
    this.ingesting = this.ingesting.then(async () => {
      try {
        const entries = await toEntries(decodeBashLines(frame), this.users, this.redactor);
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
    const F = dke_telemetry_rec.fields;
    // A new loader has fresh kernel counters.
    const before = this.lastTelemetry.generation === generation ? this.lastTelemetry.values : new Map<string, number>();
    const now = new Map<string, number>();
    forEachRecord(f, dke_telemetry_rec, (r) => now.set(readString(f.payload, r, F.name), readField(f.payload, r, F.value)));
    this.lastTelemetry = { generation, values: now };
    const lost = {
      ringbuf_full: (now.get('bash_ringbuf_full') ?? 0) - (before.get('bash_ringbuf_full') ?? 0),
      read_failed: (now.get('bash_read_failed') ?? 0) - (before.get('bash_read_failed') ?? 0),
    };
    for (const [what, d] of Object.entries(lost)) if (d > 0) this.ctx.metrics.add('kernel_dropped', d, { plugin: this.name, what });
    if (lost.ringbuf_full > 0 || lost.read_failed > 0) this.log.warn({ lost }, 'the kernel side dropped bash lines this interval');
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
