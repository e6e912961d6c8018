// Runs the real collector (compiled CLI, real eBPF) as DataKit would, against
// the benchmark's receiver, and measures it from the outside: CPU and RSS of
// the daemon and its loader child(ren) from /proc, its BPF objects from the
// loader's file descriptors, and what it logged about kernel-side drops.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bpfObjectsOf, mapInfo, readTelemetry, type BpfObjects, type Telemetry } from './bpf';
import { childrenOf, rssBytes, treeCpuSeconds } from './proc';
import { spawnJson, type JsonProc } from './spawn';
import { repoRoot, sleep, waitUntil } from './util';

export interface CollectorOptions {
  /** host:port of the receiver */
  apiServer: string;
  intervalSec: number;
  extraArgs?: string[];
  /** Write V8 CPU profiles of the daemon and its loaders here (node --cpu-prof). */
  cpuProfDir?: string;
}

type LogLine = Record<string, unknown>;

let instances = 0;

export class Collector {
  readonly logs: LogLine[] = [];
  private readonly proc: JsonProc;
  private readonly stateDir: string;
  private readonly pinRoot: string;
  private stopped = false;
  loaderPids: number[] = [];

  private constructor(opts: CollectorOptions) {
    const root = repoRoot();
    const cli = path.join(root, 'dist/src/cli/main.js');
    if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: run bash scripts/build`);
    this.stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkb-state-'));
    // A pin root of our own: pinned links of another collector keep counting,
    // and a shared one would mix our counters with theirs.
    this.pinRoot = `/sys/fs/bpf/dkb-bench-${process.pid}-${++instances}`;
    const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
    this.proc = spawnJson(process.execPath, [
      ...nodeArgs,
      cli,
      'run',
      '--state-dir', this.stateDir,
      '--pin-root', this.pinRoot,
      '--user', 'root',
      '--datakit-apiserver', opts.apiServer,
      '--interval', `${opts.intervalSec}s`,
      '--log', 'stdout',
      '--log-level', 'info',
      ...(opts.extraArgs ?? []),
    ]);
  }

  static async start(opts: CollectorOptions): Promise<Collector> {
    const c = new Collector(opts);
    // Collect every log line (spawnJson hands them out one by one).
    void (async () => {
      for (;;) {
        try {
          c.logs.push(await c.proc.next(24 * 3600_000));
        } catch {
          return;
        }
      }
    })();
    const started = await waitUntil(
      () => c.logs.find((l) => String(l.msg).startsWith('datakit-ebpf started')) ?? (c.proc.proc.exitCode !== null ? null : undefined),
      30_000,
    );
    if (!started) {
      await c.stop();
      throw new Error(`the collector did not start: ${c.proc.stderr.join(' | ')} ${JSON.stringify(c.logs.slice(-3))}`);
    }
    const pids = started.loaderPids as Record<string, number> | undefined;
    c.loaderPids = pids ? Object.values(pids) : [Number(started.loaderPid)];
    return c;
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Daemon and loader(s) together, seconds of CPU so far (exited children included). */
  cpuSeconds(): number {
    return treeCpuSeconds(this.pid);
  }

  /** RSS of the daemon and of its live loader children. */
  rss(): { daemon: number; loaders: number; total: number } {
    const daemon = rssBytes(this.pid);
    const loaders = childrenOf(this.pid).reduce((acc, k) => acc + rssBytes(k), 0);
    return { daemon, loaders, total: daemon + loaders };
  }

  /** BPF programs and maps held by the loader children. */
  bpfObjects(): BpfObjects {
    const progIds = new Set<number>();
    const mapIds = new Set<number>();
    for (const pid of childrenOf(this.pid)) {
      const o = bpfObjectsOf(pid);
      o.progIds.forEach((i) => progIds.add(i));
      o.mapIds.forEach((i) => mapIds.add(i));
    }
    return { progIds: [...progIds], mapIds: [...mapIds] };
  }

  /** The netflow telemetry map's counters (drops the kernel side counted). */
  telemetry(): Telemetry | undefined {
    const tel = mapInfo(this.bpfObjects().mapIds).find((m) => m.name === 'telemetry');
    return tel ? readTelemetry(tel.id) : undefined;
  }

  /** Sums of the `lost` counts the daemon logged ('the kernel side dropped records this interval'), from log line `from` on. */
  loggedLost(from = 0): Record<string, number> {
    const sum: Record<string, number> = {};
    for (const l of this.logs.slice(from)) {
      if (l.msg !== 'the kernel side dropped records this interval') continue;
      for (const [k, v] of Object.entries((l.lost as Record<string, number>) ?? {})) sum[k] = (sum[k] ?? 0) + Number(v);
    }
    return sum;
  }

  /** Loader restarts (each one loses the loader's in-flight work). */
  restarts(): number {
    return this.logs.filter((l) => l.msg === 'eBPF loader restarted').length;
  }

  /** Warnings and errors it logged, for the report (less the one --user root always gives). */
  problems(): string[] {
    return this.logs.filter((l) => Number(l.level) >= 40 && !String(l.msg).startsWith('running the daemon as root')).map((l) => String(l.msg));
  }

  /** SIGTERM (a clean stop flushes and unpins), SIGKILL if it hangs; removes its state. Idempotent. */
  async stop(): Promise<number | null> {
    if (this.stopped) return this.proc.proc.exitCode;
    this.stopped = true;
    this.proc.kill('SIGTERM');
    const code = await Promise.race([this.proc.exited, sleep(15_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') {
      for (const k of childrenOf(this.pid)) process.kill(k, 'SIGKILL');
      this.proc.kill('SIGKILL');
      await this.proc.exited;
    }
    fs.rmSync(this.pinRoot, { recursive: true, force: true });
    fs.rmSync(this.stateDir, { recursive: true, force: true });
    return code === 'timeout' ? null : code;
  }
}
