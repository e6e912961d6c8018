// Scenario 5 — kernel-side cost: the average run time of each of our BPF
// programs (run_time_ns / run_cnt from `bpftool prog show` with
// kernel.bpf_stats_enabled=1, put back afterwards) under bulk traffic, churn
// and small writes. Only our loader's programs are read; other collectors'
// are counted and reported, as they make every other number noisier.
import { foreignCollectorPrograms, progStats, withBpfStats, type ProgStat } from './lib/bpf';
import { Collector } from './lib/collector';
import { checkIperf, iperf, startIperfServer } from './lib/iperf';
import { churn, startTcpServer } from './lib/tcpgen';
import { check, info, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { median, progress, round, sleep } from './lib/util';

const IPERF_PORT = 26020;
const LOOPBACK_PORT = 26021;
const CHURN_PORT = 26120;
const NPORTS = 4;

interface PhaseCost {
  phase: string;
  /** Per program: runs and average ns per run in this phase. */
  programs: Record<string, { runs: number; avgNs: number }>;
  /** All our programs' time in this phase / the phase's unit of work. */
  totalNs: number;
  unit: string;
  units: number;
}

export interface BpfCostData {
  rounds: PhaseCost[][];
  /** Per program, median over rounds of its average over all phases. */
  medianAvgNs: Record<string, number>;
  nsPerConnection: number;
  nsPerMiBBulk: number;
  foreignCollectorPrograms: number;
  exitCode: number | null;
}

function byName(stats: ProgStat[]): Map<string, ProgStat> {
  // A program name is unique within one loader (netflow + dns objects).
  return new Map(stats.map((s) => [s.name, s]));
}

function diff(before: ProgStat[], after: ProgStat[], phase: string, unit: string, units: number): PhaseCost {
  const b = byName(before);
  const programs: PhaseCost['programs'] = {};
  let totalNs = 0;
  for (const a of after) {
    const p = b.get(a.name);
    const runs = a.runCnt - (p?.runCnt ?? 0);
    const ns = a.runTimeNs - (p?.runTimeNs ?? 0);
    totalNs += ns;
    programs[a.name] = { runs, avgNs: runs > 0 ? ns / runs : NaN };
  }
  return { phase, programs, totalNs, unit, units };
}

export async function runBpfCost(ctx: BenchContext): Promise<ScenarioResult> {
  const { config } = ctx;
  checkIperf();
  const iperfServer = await startIperfServer(ctx.hosts.b, ctx.hosts.ipB, IPERF_PORT);
  const loopServer = await startIperfServer(ctx.hosts.a, '127.0.0.1', LOOPBACK_PORT);
  const tcpServer = await startTcpServer(ctx.hosts.b, ctx.hosts.ipB, CHURN_PORT, NPORTS);
  const rounds: PhaseCost[][] = [];
  let foreign = NaN;
  let exitCode: number | null = null;
  try {
    await withBpfStats(async () => {
      const collector = await Collector.start({ apiServer: ctx.apiServer, intervalSec: config.intervalSec, cpuProfDir: config.cpuProfDir });
      try {
        await sleep(1000);
        const ids = collector.bpfObjects().progIds;
        foreign = foreignCollectorPrograms(ids);
        for (let r = 0; r < config.statsRounds; r++) {
          progress(`bpf cost: round ${r + 1}/${config.statsRounds}`);
          const phases: PhaseCost[] = [];
          let s0 = progStats(ids);
          const bulk = await iperf(ctx.hosts.a, ctx.hosts.ipB, IPERF_PORT, config.probeSeconds, 0);
          let s1 = progStats(ids);
          const mib = (bulk.bitsPerSecond * config.probeSeconds) / 8 / (1 << 20);
          phases.push(diff(s0, s1, 'bulk veth', 'MiB', mib));
          s0 = s1;
          const ch = await churn({ ns: ctx.hosts.a, ip: ctx.hosts.ipB, port: CHURN_PORT, nports: NPORTS, seconds: config.churnSeconds, rate: 0 });
          await sleep(500);
          s1 = progStats(ids);
          phases.push(diff(s0, s1, 'churn', 'connection', ch.made));
          s0 = s1;
          const small = await iperf(ctx.hosts.a, '127.0.0.1', LOOPBACK_PORT, config.probeSeconds, 0, '1K');
          s1 = progStats(ids);
          phases.push(diff(s0, s1, 'loopback 1 KiB writes', 'MiB', (small.bitsPerSecond * config.probeSeconds) / 8 / (1 << 20)));
          rounds.push(phases);
        }
      } finally {
        exitCode = await collector.stop();
      }
    });
  } finally {
    await tcpServer.stop();
    await loopServer.stop();
    await iperfServer.stop();
  }

  // Per program and round: its average over every phase of the round.
  const perProgram = new Map<string, number[]>();
  for (const phases of rounds) {
    const acc = new Map<string, { runs: number; ns: number }>();
    for (const ph of phases) {
      for (const [name, v] of Object.entries(ph.programs)) {
        const a = acc.get(name) ?? { runs: 0, ns: 0 };
        a.runs += v.runs;
        a.ns += v.runs > 0 ? v.avgNs * v.runs : 0;
        acc.set(name, a);
      }
    }
    for (const [name, a] of acc) {
      if (a.runs === 0) continue;
      const list = perProgram.get(name) ?? [];
      list.push(a.ns / a.runs);
      perProgram.set(name, list);
    }
  }
  const medianAvgNs: Record<string, number> = {};
  for (const [name, list] of [...perProgram].sort()) medianAvgNs[name] = round(median(list), 1);
  const nsPerConnection = median(rounds.map((ph) => ph.find((p) => p.phase === 'churn')!).map((p) => p.totalNs / p.units));
  const nsPerMiBBulk = median(rounds.map((ph) => ph.find((p) => p.phase === 'bulk veth')!).map((p) => p.totalNs / p.units));

  const rows: Row[] = [];
  const avgs = Object.values(medianAvgNs);
  const over = Object.entries(medianAvgNs).filter(([, v]) => v > 300).sort((a, b) => b[1] - a[1]);
  const all = Object.entries(medianAvgNs).map(([n, v]) => `${n.replace(/^dke_/, '')} ${v.toFixed(0)}`).join(', ');
  rows.push(check('BPF run time, median over our programs', median(avgs), '<=', 300, (v) => `${v.toFixed(0)} ns`, `per program, ns (average per run, median of rounds): ${all}`));
  rows.push(
    info(
      'BPF programs over 300 ns per run',
      over.length ? over.map(([n, v]) => `${n} ${v.toFixed(0)} ns`).join(', ') : 'none',
      'averaged over bulk, churn and 1 KiB-write phases',
    ),
  );
  rows.push(info('BPF time per short connection (all our programs)', `${(nsPerConnection / 1000).toFixed(2)} µs`));
  rows.push(info('BPF time per MiB of bulk veth traffic', `${(nsPerMiBBulk / 1000).toFixed(2)} µs`));
  if (foreign > 0) rows.push(info('other collectors\' dke_* programs loaded', String(foreign), 'they run on the same hooks and add to every "without" measurement'));
  const data: BpfCostData = { rounds, medianAvgNs, nsPerConnection: round(nsPerConnection, 1), nsPerMiBBulk: round(nsPerMiBBulk, 1), foreignCollectorPrograms: foreign, exitCode };
  return { name: 'bpf-cost', rows, data };
}
