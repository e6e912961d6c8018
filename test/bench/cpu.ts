// Scenario 3 — the collector's CPU (daemon + loader child, user+sys from
// /proc/<pid>/stat) idle and at fixed rates of new connections, with a
// rate-limited generator; the rate it really achieved is reported next to
// it. Ring-buffer drops at the highest rate come from the daemon's log and
// the BPF telemetry map.
import { telemetryDelta, type Telemetry } from './lib/bpf';
import { Collector } from './lib/collector';
import { churn, startTcpServer, type ChurnResult } from './lib/tcpgen';
import { check, info, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { progress, round, sleep } from './lib/util';

const PORT = 26110;
const NPORTS = 4;

interface RatePhase {
  requestedRate: number;
  achievedRate: number;
  generator: ChurnResult;
  /** Daemon + loader CPU over the steady part of the run, percent of one core. */
  cpuPercent: number;
  windowSeconds: number;
  /** CPU seconds per 10k connections, idle share taken out. */
  cpuPer10kSeconds: number;
  loggedLost: Record<string, number>;
  telemetry?: Telemetry;
}

export interface CpuData {
  intervalSec: number;
  idlePercent: number;
  phases: RatePhase[];
  loaderRestarts: number;
  exitCode: number | null;
}

async function cpuOver(c: Collector, ms: number): Promise<{ percent: number; seconds: number }> {
  const c0 = c.cpuSeconds();
  const t0 = process.hrtime.bigint();
  await sleep(ms);
  const c1 = c.cpuSeconds();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { percent: ((c1 - c0) / seconds) * 100, seconds };
}

export async function runCpu(ctx: BenchContext): Promise<ScenarioResult> {
  const { config } = ctx;
  const server = await startTcpServer(ctx.hosts.b, ctx.hosts.ipB, PORT, NPORTS);
  const collector = await Collector.start({ apiServer: ctx.apiServer, intervalSec: config.intervalSec, cpuProfDir: config.cpuProfDir });
  const phases: RatePhase[] = [];
  let idlePercent = NaN;
  let exitCode: number | null = null;
  let restarts = 0;
  try {
    // Start-up (module loading, BPF load, JIT) is a one-off, not idle cost.
    await sleep(3000);
    progress(`cpu: idle for ${config.idleSeconds} s`);
    idlePercent = (await cpuOver(collector, config.idleSeconds * 1000)).percent;
    for (const rate of config.rates) {
      progress(`cpu: ${rate} new connections/s for ${config.ratePhaseSeconds} s`);
      const logFrom = collector.logs.length;
      const tel0 = collector.telemetry();
      // The generator runs a second longer on each side of the measured window.
      const gen = churn({ ns: ctx.hosts.a, ip: ctx.hosts.ipB, port: PORT, nports: NPORTS, seconds: config.ratePhaseSeconds + 2, rate, concurrency: 128 });
      await sleep(1000);
      const win = await cpuOver(collector, config.ratePhaseSeconds * 1000);
      const res = await gen;
      // The connections of the last interval are read and reported at the next tick.
      await sleep(2 * config.intervalSec * 1000 + 500);
      const tel1 = collector.telemetry();
      const achieved = res.rate;
      phases.push({
        requestedRate: rate,
        achievedRate: Math.round(achieved),
        generator: res,
        cpuPercent: round(win.percent, 3),
        windowSeconds: round(win.seconds, 3),
        cpuPer10kSeconds: round((((win.percent - idlePercent) / 100) / achieved) * 10_000, 4),
        loggedLost: collector.loggedLost(logFrom),
        telemetry: tel0 && tel1 ? telemetryDelta(tel1, tel0) : undefined,
      });
    }
  } finally {
    restarts = collector.restarts();
    exitCode = await collector.stop();
    await server.stop();
  }

  const rows: Row[] = [info('collector CPU idle', `${idlePercent.toFixed(2)} % of a core`, `--interval ${config.intervalSec}s`)];
  for (const p of phases) {
    const short = p.achievedRate < p.requestedRate * 0.95 ? ` (machine made only ${p.achievedRate}/s of ${p.requestedRate}/s)` : '';
    const note = `achieved ${p.achievedRate}/s${short}; ${(p.cpuPer10kSeconds * 1000).toFixed(0)} ms CPU per 10k connections above idle`;
    const metric = `collector CPU at ${p.requestedRate} conns/s`;
    rows.push(p.requestedRate === 1000 ? check(metric, p.cpuPercent, '<=', 1, (v) => `${v.toFixed(2)} %`, note) : info(metric, `${p.cpuPercent.toFixed(2)} % of a core`, note));
  }
  const top = phases[phases.length - 1];
  if (top) {
    const drops = top.telemetry?.ringbuf_full ?? NaN;
    const logged = top.loggedLost.ringbuf_full ?? 0;
    const rate = top.achievedRate < top.requestedRate * 0.95 ? ` at the ${top.achievedRate}/s the machine made` : '';
    const row = check(`ring-buffer drops at ${top.requestedRate} conns/s`, Math.max(drops, logged), '<=', 0, (v) => String(Math.round(v)), `telemetry ringbuf_full ${drops}, logged ${logged}; tcp_map_full ${top.telemetry?.tcp_map_full ?? 'n/a'}${rate}`);
    row.goal = '0';
    rows.push(row);
  }
  const data: CpuData = { intervalSec: config.intervalSec, idlePercent: round(idlePercent, 3), phases, loaderRestarts: restarts, exitCode };
  return { name: 'cpu', rows, data };
}
