// The ebpf-bash plugin: one loader child with the readline uretprobe, and the
// buffer of lines it feeds. Lines go to DataKit every interval, or as soon as
// FLUSH_LINES are waiting, whichever comes first.
import type { Logger } from 'pino';
import { BASH_INPUT, bashPoint, toEntries, type BashEntry } from '../bash/log';
import { BASH_TELEMETRY, decodeBashLines } from '../bash/record';
import { Redactor } from '../bash/redact';
import { UserNames } from '../bash/users';
import { BASH_STREAM_LINES, type BashLoaderInfo, type BashLoaderOptions } from '../loader/plugins/bash';
import { LoaderSupervisor, type LoaderReady } from '../loader/supervisor';
import type { CollectorPlugin, PluginContext } from './types';

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
  private lastTelemetry: { generation: number; values: number[] } = { generation: 0, values: [] };

  constructor(private readonly ctx: PluginContext) {
    const { config } = ctx;
    this.log = ctx.log.child({ plugin: this.name });
    this.redactor = new Redactor(config.bashRedact, config.bashRedactRegex);
    const options: BashLoaderOptions = { paths: config.bashPaths };
    this.loader = new LoaderSupervisor({ plugin: 'bash', options: { ...options } }, this.log);
    this.loader.on('event', (stream, records) => {
      if (stream === BASH_STREAM_LINES) this.enqueue(records);
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

  private enqueue(records: Buffer): void {
    this.ingesting = this.ingesting.then(async () => {
      try {
        const entries = await toEntries(decodeBashLines(records), this.users, this.redactor);
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
    await this.reportTelemetry();
    await this.ingesting;
    await this.send();
  }

  private async reportTelemetry(): Promise<void> {
    const generation = this.loader.generation;
    let values: number[];
    try {
      values = await this.loader.request<number[]>('telemetry');
    } catch {
      return; // the loader is restarting; its supervisor already said so
    }
    const before = this.lastTelemetry.generation === generation ? this.lastTelemetry.values : [];
    this.lastTelemetry = { generation, values };
    const lost = {
      ringbuf_full: (values[BASH_TELEMETRY.ringbufFull] ?? 0) - (before[BASH_TELEMETRY.ringbufFull] ?? 0),
      read_failed: (values[BASH_TELEMETRY.readFailed] ?? 0) - (before[BASH_TELEMETRY.readFailed] ?? 0),
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
