// Runs the real collector (compiled CLI, real eBPF) as DataKit would, against
// the benchmark's receiver, and measures it from the outside: CPU and RSS of
// every collector process (the Node daemon and the native dke-loader it
// spawns per plugin) from /proc, its BPF objects from the loaders' file
// descriptors, and what it logged about kernel-side drops.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inCgroup, memcgRoot } from '../../helpers/memcg';
import { bpfObjectsOf, mapInfo, readTelemetry, recursionMisses, type BpfObjects, type Telemetry } from './bpf';
import { childrenOf, procStat, rssBytes } from './proc';
import { spawnJson, type JsonProc } from './spawn';
import { repoRoot, sleep, waitUntil } from './util';

export interface CollectorOptions {
  /** host:port of the receiver */
  apiServer: string;
  intervalSec: number;
  /** --enabled; default both plugins, so every collector process is measured. */
  plugins?: string[];
  extraArgs?: string[];
  /** Write V8 CPU profiles of the daemon here (node --cpu-prof; the loaders are native). */
  cpuProfDir?: string;
}

/** Which collector process: 'daemon', 'net loader', 'bash loader'. */
export type Role = string;

type LogLine = Record<string, unknown>;

let instances = 0;
/** Collectors not yet stopped, for killAll() on an interrupted run. */
const live = new Set<Collector>();

/** A process's role from its command line: dke-loader <plugin> ... */
function roleOf(pid: number): Role {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (argv[0]?.endsWith('dke-loader')) return `${argv[1] ?? '?'} loader`;
    return path.basename(argv[0] ?? '?');
  } catch {
    return 'gone';
  }
}

export class Collector {
  readonly logs: LogLine[] = [];
  private readonly proc: JsonProc;
  private readonly stateDir: string;
  private readonly pinRoot: string;
  private readonly cgroup: string | undefined;
  private stopped = false;
  private paused = false;
  /** pid -> role of every loader seen, so a restarted one is still named. */
  private readonly roles = new Map<number, Role>();

  private constructor(opts: CollectorOptions) {
    const root = repoRoot();
    const cli = path.join(root, 'dist/src/cli/main.js');
    if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: run bash scripts/build`);
    this.stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkb-state-'));
    // A pin root of our own: pinned links of another collector keep counting,
    // and a shared one would mix our counters with theirs.
    this.pinRoot = `/sys/fs/bpf/dkb-bench-${process.pid}-${++instances}`;
    const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
    // A memory cgroup of its own, apart from the workload's, as DataKit's or
    // systemd's service has: what the kernel charges to a cgroup, and when,
    // depends on it.
    const memcg = memcgRoot();
    this.cgroup = memcg ? `${memcg.dir}/dkb-collector-${process.pid}-${instances}` : undefined;
    if (this.cgroup) fs.mkdirSync(this.cgroup, { recursive: true });
    const command = [
      process.execPath,
      ...nodeArgs,
      cli,
      'run',
      '--state-dir', this.stateDir,
      '--pin-root', this.pinRoot,
      '--user', 'root',
      '--datakit-apiserver', opts.apiServer,
      '--interval', `${opts.intervalSec}s`,
      '--enabled', (opts.plugins ?? ['ebpf-net', 'ebpf-bash']).join(','),
      '--log', 'stdout',
      '--log-level', 'info',
      ...(opts.extraArgs ?? []),
    ];
    const [cmd, ...args] = this.cgroup ? inCgroup(this.cgroup, command) : command;
    this.proc = spawnJson(cmd, args);
    live.add(this);
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
    c.loaderPids();
    return c;
  }

  /**
   * SIGKILL every collector process still running (daemons and their
   * loaders, which are in process groups of their own and may be stopped),
   * then remove their memory cgroups: for an interrupted run. Their pins go
   * with the runner's cleanup.
   */
  static killAll(): void {
    for (const c of live) {
      for (const p of [...c.loaderPids(), c.pid]) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (const c of live) {
      // The killed processes leave the cgroup within moments.
      for (let tries = 0; c.cgroup && fs.existsSync(c.cgroup) && tries < 50; tries++) {
        try {
          fs.rmdirSync(c.cgroup);
        } catch {
          Atomics.wait(pause, 0, 0, 100);
        }
      }
    }
    live.clear();
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** The live dke-loader children (one per plugin). */
  loaderPids(): number[] {
    const kids = childrenOf(this.pid);
    for (const k of kids) if (!this.roles.has(k)) this.roles.set(k, roleOf(k));
    return kids;
  }

  /** pid of the loader of `plugin` ('net', 'bash'), if it runs. */
  loaderPid(plugin: string): number | undefined {
    return this.loaderPids().find((k) => this.roles.get(k) === `${plugin} loader`);
  }

  /**
   * CPU seconds so far per process: 'daemon', 'net loader', 'bash loader',
   * and 'exited loaders' (restarted ones the daemon has reaped), plus 'total'.
   */
  cpuByProcess(): Record<Role, number> {
    const st = procStat(this.pid);
    if (!st) return { total: NaN };
    const out: Record<Role, number> = { daemon: st.cpuSeconds };
    if (st.childrenCpuSeconds > 0) out['exited loaders'] = st.childrenCpuSeconds;
    for (const k of this.loaderPids()) {
      const ks = procStat(k);
      if (!ks) continue;
      const role = this.roles.get(k) ?? 'loader';
      out[role] = (out[role] ?? 0) + ks.cpuSeconds + ks.childrenCpuSeconds;
    }
    out.total = Object.values(out).reduce((a, b) => a + b, 0);
    return out;
  }

  /** All collector processes together, seconds of CPU so far. */
  cpuSeconds(): number {
    return this.cpuByProcess().total!;
  }

  /** RSS per process ('daemon', 'net loader', 'bash loader') and 'total', bytes. */
  rssByProcess(): Record<Role, number> {
    const out: Record<Role, number> = { daemon: rssBytes(this.pid) };
    for (const k of this.loaderPids()) {
      const role = this.roles.get(k) ?? 'loader';
      out[role] = (out[role] ?? 0) + rssBytes(k);
    }
    out.total = Object.values(out).reduce((a, b) => a + b, 0);
    return out;
  }

  /** BPF programs and maps held by the loaders (all plugins, or one). */
  bpfObjects(plugin?: string): BpfObjects {
    const progIds = new Set<number>();
    const mapIds = new Set<number>();
    const pids = plugin ? [this.loaderPid(plugin)].filter((p): p is number => p !== undefined) : this.loaderPids();
    for (const pid of pids) {
      const o = bpfObjectsOf(pid);
      o.progIds.forEach((i) => progIds.add(i));
      o.mapIds.forEach((i) => mapIds.add(i));
    }
    return { progIds: [...progIds], mapIds: [...mapIds] };
  }

  /** The net loader's telemetry array (what the kernel side lost, skipped or counted), by name. */
  telemetry(): Telemetry | undefined {
    const tel = mapInfo(this.bpfObjects('net').mapIds).find((m) => m.name === 'telemetry');
    return tel ? readTelemetry(tel.id) : undefined;
  }

  /** Runs of our programs the kernel skipped (recursion), by program; see lib/bpf.ts recursionMisses. */
  recursionMisses(): Record<string, number> {
    return recursionMisses(this.bpfObjects().progIds);
  }

  /** recursionMisses() read just before stop() sent SIGTERM (the programs go with the collector). */
  missesAtStop: Record<string, number> = {};

  /** Sums of the `lost` counts the daemon logged ('the kernel side dropped ...'), from log line `from` on. */
  loggedLost(from = 0): Record<string, number> {
    const sum: Record<string, number> = {};
    for (const l of this.logs.slice(from)) {
      if (!String(l.msg).startsWith('the kernel side dropped')) continue;
      for (const [k, v] of Object.entries((l.lost as Record<string, number>) ?? {})) sum[k] = (sum[k] ?? 0) + Number(v);
    }
    return sum;
  }

  /** Loader restarts (each one loses the loader's in-flight work). */
  restarts(): number {
    return this.logs.filter((l) => l.msg === 'eBPF loader restarted').length;
  }

  /** Warnings and errors it logged, for the report (less the ones a bench configuration always gives). */
  problems(): string[] {
    return this.logs
      .filter((l) => Number(l.level) >= 40)
      .map((l) => String(l.msg))
      .filter((m) => !m.startsWith('running the daemon as root') && !/^--interval \d+s sends/.test(m));
  }

  /**
   * SIGSTOP the daemon and every loader: the BPF programs stay attached and
   * keep counting, nothing in user space runs (the kernel side's cost alone).
   */
  pause(): void {
    if (this.paused || this.stopped) return;
    for (const p of [this.pid, ...this.loaderPids()]) process.kill(p, 'SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    for (const p of [this.pid, ...this.loaderPids()]) {
      try {
        process.kill(p, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
    this.paused = false;
  }

  /** SIGTERM (a clean stop flushes the current interval and unpins), SIGKILL if it hangs; removes its state. Idempotent. */
  async stop(): Promise<number | null> {
    if (this.stopped) return this.proc.proc.exitCode;
    this.resume();
    try {
      this.missesAtStop = this.recursionMisses();
    } catch {
      /* bpftool failed: leave it empty */
    }
    this.stopped = true;
    live.delete(this);
    const loaders = this.loaderPids();
    this.proc.kill('SIGTERM');
    const code = await Promise.race([this.proc.exited, sleep(30_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') {
      for (const k of loaders) {
        try {
          process.kill(k, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      this.proc.kill('SIGKILL');
      await this.proc.exited;
    }
    fs.rmSync(this.pinRoot, { recursive: true, force: true });
    fs.rmSync(this.stateDir, { recursive: true, force: true });
    // A loader killed above may take a moment to leave the cgroup.
    for (let tries = 0; this.cgroup && fs.existsSync(this.cgroup); tries++) {
      try {
        fs.rmdirSync(this.cgroup);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || tries >= 50) throw e;
        await sleep(100);
      }
    }
    return code === 'timeout' ? null : code;
  }
}

const MB = 1024 * 1024;

/** "daemon 40.1, net loader 20.3, bash loader 5.2 MB" */
export function rssText(r: Record<Role, number>): string {
  return `${Object.entries(r)
    .filter(([k]) => k !== 'total')
    .map(([k, v]) => `${k} ${(v / MB).toFixed(1)}`)
    .join(', ')} MB`;
}

/** CPU shares per process over a window: "daemon 0.40, net loader 0.20 %". */
export function cpuShareText(before: Record<Role, number>, after: Record<Role, number>, seconds: number): string {
  return `${Object.keys(after)
    .filter((k) => k !== 'total')
    .map((k) => `${k} ${((((after[k] ?? 0) - (before[k] ?? 0)) / seconds) * 100).toFixed(2)}`)
    .join(', ')} %`;
}
