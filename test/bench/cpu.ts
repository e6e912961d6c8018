// The collector's CPU (every process: the daemon and its dke-loader per
// plugin; user+sys from /proc/<pid>/stat) idle and at fixed rates of new
// connections from a paced generator, each measured over whole flush
// intervals; the rate the machine really made is reported next to it. At the
// highest rate it also reads the kernel side's losses (ring buffer full, map
// full, ...) from the telemetry map and the daemon's log.
import { losses, missesText, telemetryDelta, type Telemetry } from './lib/bpf';
import { Collector, cpuShareText, type Role } from './lib/collector';
import { churn, startTcpServer, type ChurnResult } from './lib/tcpgen';
import { check, info, judged, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { progress, round, sleep } from './lib/util';

const PORT = 26110;
const NPORTS = 4;

interface Window {
  seconds: number;
  /** All collector processes, percent of one core. */
  percent: number;
  /** Per process, e.g. "daemon 0.30, net loader 0.12, bash loader 0.00 %". */
  perProcess: string;
}

interface RatePhase extends Window {
  requestedRate: number;
  achievedRate: number;
  generator: ChurnResult;
  /** CPU ms per 10k connections, idle share taken out. */
  msPer10k: number;
  loggedLost: Record<string, number>;
  telemetry?: Telemetry;
}

export interface CpuData {
  intervalSec: number;
  idle?: Window;
  phases: RatePhase[];
  loaderRestarts: number;
  /** Runs of our programs the kernel skipped over the whole run (recursion_misses). */
  recursionMisses: Record<string, number>;
  exitCode: number | null;
}

async function cpuOver(c: Collector, ms: number): Promise<Window> {
  const c0 = c.cpuByProcess();
  const t0 = process.hrtime.bigint();
  await sleep(ms);
  const c1 = c.cpuByProcess();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds: round(seconds, 3), percent: round(((c1.total! - c0.total!) / seconds) * 100, 3), perProcess: cpuShareText(c0 as Record<Role, number>, c1, seconds) };
}

export async function runCpu(ctx: BenchContext): Promise<ScenarioResult> {
  const { config } = ctx;
  const server = await startTcpServer(ctx.hosts.b, ctx.hosts.ipB, PORT, NPORTS);
  const collector = await Collector.start({ apiServer: ctx.apiServer, intervalSec: config.cpuIntervalSec, cpuProfDir: config.cpuProfDir }).catch(async (err: unknown) => {
    await server.stop();
    throw err;
  });
  const phases: RatePhase[] = [];
  let idle: Window | undefined;
  let exitCode: number | null = null;
  let restarts = 0;
  const windowMs = config.cpuWindowSeconds * 1000;
  try {
    // Start-up (module loading, BPF load) and the first use of each code path
    // (the first flows and points: V8 compiles them then) are one-offs, not
    // the cost of a rate: warm up with a little traffic and let an interval
    // report it before measuring anything.
    await sleep(1000);
    progress('cpu: warming up the collector (2 s at 1000 connections/s, then one interval)');
    await churn({ ns: ctx.hosts.a, ip: ctx.hosts.ipB, port: PORT, nports: NPORTS, seconds: 2, rate: 1000, concurrency: 128 });
    await sleep(config.cpuIntervalSec * 1000 + 1000);
    progress(`cpu: idle for ${config.cpuWindowSeconds} s`);
    idle = await cpuOver(collector, windowMs);
    for (const rate of config.rates) {
      progress(`cpu: ${rate} new connections/s for ${config.cpuWindowSeconds} s`);
      const logFrom = collector.logs.length;
      const tel0 = collector.telemetry();
      // The generator runs a second longer on each side of the measured window.
      const gen = churn({ ns: ctx.hosts.a, ip: ctx.hosts.ipB, port: PORT, nports: NPORTS, seconds: config.cpuWindowSeconds + 2, rate, concurrency: 128 });
      await sleep(1000);
      const win = await cpuOver(collector, windowMs);
      const res = await gen;
      // What the last interval saw is read at the next tick.
      await sleep(config.cpuIntervalSec * 1000 + 500);
      const tel1 = collector.telemetry();
      phases.push({
        ...win,
        requestedRate: rate,
        achievedRate: Math.round(res.rate),
        generator: res,
        msPer10k: round(((((win.percent - idle.percent) / 100) * win.seconds) / (res.rate * win.seconds)) * 10_000 * 1000, 2),
        loggedLost: collector.loggedLost(logFrom),
        telemetry: tel0 && tel1 ? telemetryDelta(tel1, tel0) : undefined,
      });
    }
  } finally {
    restarts = collector.restarts();
    exitCode = await collector.stop();
    await server.stop();
  }

  const iv = `--interval ${config.cpuIntervalSec}s, ${config.cpuWindowSeconds} s windows`;
  const rows: Row[] = [];
  if (idle) rows.push(info('cpu.idle', 'collector CPU, idle', `${idle.percent.toFixed(2)} % of a core`, `${iv}; ${idle.perProcess}`, idle.percent));
  const short = (p: RatePhase): string => (p.achievedRate < p.requestedRate * 0.95 ? ` (machine made only ${p.achievedRate}/s)` : '');
  const first = phases[0];
  const top = phases.length > 1 ? phases[phases.length - 1] : undefined;
  if (first) {
    rows.push(check('cpu.rate1', `collector CPU at ${first.requestedRate.toLocaleString('en')} new connections/s (idle included)`, first.percent, '<=', 1, (v) => `${v.toFixed(2)} %`, `achieved ${first.achievedRate}/s${short(first)}; ${first.perProcess}; ${iv}`));
  }
  if (top) {
    rows.push(
      check('cpu.per10k', `collector CPU per 10k connections above idle, at ${top.requestedRate / 1000}k conns/s`, top.msPer10k, '<=', 30, (v) => `${v.toFixed(1)} ms`, `achieved ${top.achievedRate}/s${short(top)}; ${top.percent.toFixed(2)} % of a core (${top.perProcess}); ${iv}`),
    );
    const lost = losses(top.telemetry);
    const ring = top.telemetry?.dns_ringbuf_full ?? NaN;
    const logged = top.loggedLost;
    const ok = ring === 0 && Object.keys(lost).length === 0 && Object.keys(logged).length === 0;
    rows.push(
      judged(
        'cpu.drops',
        `ring-buffer drops at ${top.requestedRate / 1000}k conns/s`,
        ok,
        Number.isFinite(ring) ? String(ring) : 'n/a',
        '0, and no other kernel-side loss',
        `telemetry dns_ringbuf_full ${Number.isFinite(ring) ? ring : 'n/a'}; other losses ${Object.keys(lost).length ? JSON.stringify(lost) : 'none'}; daemon logged ${Object.keys(logged).length ? JSON.stringify(logged) : 'none'}; BPF runs the kernel skipped over the whole run (recursion_misses) ${missesText(collector.missesAtStop)}${short(top)}`,
        ring,
      ),
    );
  }
  for (const p of phases.slice(1, -1)) rows.push(info(`cpu.rate.${p.requestedRate}`, `collector CPU at ${p.requestedRate} conns/s`, `${p.percent.toFixed(2)} %`, `${p.msPer10k.toFixed(1)} ms per 10k above idle`, p.percent));
  const data: CpuData = { intervalSec: config.cpuIntervalSec, idle, phases, loaderRestarts: restarts, recursionMisses: collector.missesAtStop, exitCode };
  return { name: 'cpu', rows, data };
}
