// The kernel side's cost: run time of each of our BPF programs
// (run_time_ns / run_cnt from `bpftool prog show` with
// kernel.bpf_stats_enabled=1, put back afterwards) under bulk veth traffic
// (iperf3), short-connection churn (tcpgen; both ends on this host, so one
// connection is two tracked sockets), DNS lookups (dnsgen to dnsmasq, both
// ends here too: a lookup is four packets seen) and 1 KiB writes over veth.
// Only our loaders' programs are read; other collectors' are counted and
// reported, as they make every other number noisier. Then the same bulk,
// churn and DNS with only the floor attached (empty programs on the same
// hooks, lib/floor.ts): the part of the cost that is the kernel's price for
// running a program there; and churn, bulk and 1 KiB writes with the data model's floor
// (test/bench/floor/model.bpf.c: socket-local state and per-flow counters,
// nothing else), what any collector built this way pays per connection.
import { foreignCollectorPrograms, progStats, withBpfStats, type ProgStat } from './lib/bpf';
import { Collector } from './lib/collector';
import { startFloor } from './lib/floor';
import { BENCH_DNS, dnsgen, startResolver } from './lib/dns';
import { checkIperf, iperf, startIperfServer } from './lib/iperf';
import { churn, startTcpServer } from './lib/tcpgen';
import { check, info, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { median, progress, round, sleep } from './lib/util';

const IPERF_PORT = 26020;
const CHURN_PORT = 26120;
const NPORTS = 4;

interface PhaseCost {
  phase: string;
  /** Per program: runs and average ns per run in this phase. */
  programs: Record<string, { runs: number; ns: number }>;
  /** All our programs' time in this phase. */
  totalNs: number;
  unit: string;
  units: number;
}

export interface BpfCostData {
  rounds: PhaseCost[][];
  /** Per phase and program, medians over rounds: runs per unit and ns per run. */
  perProgram: Record<string, Record<string, { runsPerUnit: number; nsPerRun: number }>>;
  nsPerConnection: number;
  nsPerMiBBulk: number;
  nsPerMiB1k: number;
  nsPerLookup: number;
  floor: { rounds: PhaseCost[][]; perProgram: BpfCostData['perProgram']; nsPerConnection: number; nsPerMiBBulk: number; nsPerLookup: number };
  model: { rounds: PhaseCost[][]; perProgram: BpfCostData['perProgram']; nsPerConnection: number; nsPerMiBBulk: number; nsPerMiB1k: number };
  foreignCollectorPrograms: number;
  exitCode: number | null;
}

function diff(before: ProgStat[], after: ProgStat[], phase: string, unit: string, units: number): PhaseCost {
  // A program name is unique within our loaders.
  const b = new Map(before.map((s) => [s.name, s]));
  const programs: PhaseCost['programs'] = {};
  let totalNs = 0;
  for (const a of after) {
    const p = b.get(a.name);
    const runs = a.runCnt - (p?.runCnt ?? 0);
    const ns = a.runTimeNs - (p?.runTimeNs ?? 0);
    totalNs += ns;
    programs[a.name] = { runs, ns };
  }
  return { phase, programs, totalNs, unit, units };
}

const PHASES = { bulk: 'bulk veth', churn: 'churn', dns: 'dns', small: 'veth 1 KiB writes' } as const;

export async function runBpfCost(ctx: BenchContext): Promise<ScenarioResult> {
  const { config } = ctx;
  checkIperf();
  const iperfServer = await startIperfServer(ctx.hosts.b, ctx.hosts.ipB, IPERF_PORT);
  const tcpServer = await startTcpServer(ctx.hosts.b, ctx.hosts.ipB, CHURN_PORT, NPORTS);
  const resolver = await startResolver(ctx.hosts.b, ctx.hosts.ipB, BENCH_DNS.port, BENCH_DNS.answer);
  const rounds: PhaseCost[][] = [];
  const floorRounds: PhaseCost[][] = [];
  const modelRounds: PhaseCost[][] = [];
  let foreign = NaN;
  let exitCode: number | null = null;
  try {
    await withBpfStats(async () => {
      // One round: bulk, churn, DNS and (for the collector) 1 KiB writes, each
      // phase the difference of the programs' counters around it.
      const measureRound = async (ids: readonly number[], small: boolean, dns = true): Promise<PhaseCost[]> => {
        const mib = (bps: number): number => (bps * config.probeSeconds) / 8 / (1 << 20);
        const phases: PhaseCost[] = [];
        let s0 = progStats(ids);
        // No --omit: the stats cover every byte iperf3 moved, so count them all.
        const bulk = await iperf(ctx.hosts.a, ctx.hosts.ipB, IPERF_PORT, config.probeSeconds, 0);
        let s1 = progStats(ids);
        phases.push(diff(s0, s1, PHASES.bulk, 'MiB', mib(bulk.bitsPerSecond)));
        s0 = s1;
        const ch = await churn({ ns: ctx.hosts.a, ip: ctx.hosts.ipB, port: CHURN_PORT, nports: NPORTS, seconds: config.churnSeconds, rate: 0 });
        await sleep(500);
        s1 = progStats(ids);
        phases.push(diff(s0, s1, PHASES.churn, 'connection', ch.made));
        if (dns) {
          s0 = s1;
          const d = await dnsgen(ctx.hosts.a, ctx.hosts.ipB, BENCH_DNS.port, config.churnSeconds, BENCH_DNS.inflight, BENCH_DNS.inflight);
          s1 = progStats(ids);
          phases.push(diff(s0, s1, PHASES.dns, 'lookup', d.answered));
        }
        if (small) {
          s0 = s1;
          const w = await iperf(ctx.hosts.a, ctx.hosts.ipB, IPERF_PORT, config.probeSeconds, 0, '1K');
          s1 = progStats(ids);
          phases.push(diff(s0, s1, PHASES.small, 'MiB', mib(w.bitsPerSecond)));
        }
        return phases;
      };
      const collector = await Collector.start({ apiServer: ctx.apiServer, intervalSec: config.intervalSec, cpuProfDir: config.cpuProfDir });
      try {
        await sleep(1000);
        const ids = collector.bpfObjects().progIds;
        foreign = foreignCollectorPrograms(ids);
        for (let r = 0; r < config.statsRounds; r++) {
          progress(`bpf cost: round ${r + 1}/${config.statsRounds}`);
          rounds.push(await measureRound(ids, true));
        }
      } finally {
        exitCode = await collector.stop();
      }
      // The same rounds with only the floor's or the data model's programs attached.
      const alone = async (object: 'floor' | 'model', into: PhaseCost[][], small: boolean, dns: boolean): Promise<void> => {
        const programs = await startFloor(object);
        try {
          await sleep(500);
          for (let r = 0; r < config.statsRounds; r++) {
            progress(`bpf cost: ${object === 'floor' ? 'floor' : 'data model'} round ${r + 1}/${config.statsRounds}`);
            into.push(await measureRound(programs.progIds, small, dns));
          }
        } finally {
          await programs.stop();
        }
      };
      await alone('floor', floorRounds, false, true);
      await alone('model', modelRounds, true, false);
    });
  } finally {
    await resolver.stop();
    await tcpServer.stop();
    await iperfServer.stop();
  }

  const perProgram = medianPerProgram(rounds, Object.values(PHASES));
  const floorPerProgram = medianPerProgram(floorRounds, [PHASES.bulk, PHASES.churn, PHASES.dns]);
  const perUnit = (of: PhaseCost[][], phase: string): number => median(of.map((ph) => ph.find((p) => p.phase === phase)!).map((p) => p.totalNs / p.units));
  const nsPerConnection = perUnit(rounds, PHASES.churn);
  const nsPerMiBBulk = perUnit(rounds, PHASES.bulk);
  const nsPerMiB1k = perUnit(rounds, PHASES.small);
  const nsPerLookup = perUnit(rounds, PHASES.dns);
  const floorPerConnection = perUnit(floorRounds, PHASES.churn);
  const floorPerMiB = perUnit(floorRounds, PHASES.bulk);
  const floorPerLookup = perUnit(floorRounds, PHASES.dns);
  const modelPerProgram = medianPerProgram(modelRounds, [PHASES.bulk, PHASES.churn, PHASES.small]);
  const modelPerConnection = perUnit(modelRounds, PHASES.churn);
  const modelPerMiB = perUnit(modelRounds, PHASES.bulk);
  const modelPerMiB1k = perUnit(modelRounds, PHASES.small);

  const us = (v: number): string => `${(v / 1000).toFixed(2)} µs`;
  const rows: Row[] = [];
  rows.push(check('bpf.perConnection', 'BPF time per short connection, both ends on this host (bpf_stats)', nsPerConnection, '<=', 2500, us, 'all our programs during max-rate churn / connections made; median of rounds'));
  rows.push(check('bpf.perMiB', 'BPF time per MiB of bulk veth traffic', nsPerMiBBulk, '<=', 6000, us, 'iperf3 a -> b, 128 KiB writes'));
  rows.push(info('bpf.perMiB1k', 'BPF time per MiB over veth, 1 KiB writes', us(nsPerMiB1k), undefined, nsPerMiB1k));
  rows.push(info('bpf.floor.perConnection', 'the floor: empty programs on the same hooks, BPF time per short connection', us(floorPerConnection), "the kernel's price for running any program there, no collector", floorPerConnection));
  rows.push(info('bpf.floor.perMiB', 'the floor: empty programs on the same hooks, BPF time per MiB of bulk veth traffic', us(floorPerMiB), undefined, floorPerMiB));
  rows.push(info('bpf.model.perConnection', "the data model's floor: socket-local state and per-flow counters only, BPF time per short connection", us(modelPerConnection), `test/bench/floor/model.bpf.c on the same hooks: state made at connect() and ESTABLISHED, a flow add at every send, receive and release; no rtt, retransmits, listeners, recovery, liveness, UDP or DNS; per MiB of bulk veth traffic ${us(modelPerMiB)}, of 1 KiB writes ${us(modelPerMiB1k)}`, modelPerConnection));
  rows.push(info('bpf.perLookup', 'BPF time per DNS lookup, both ends on this host (bpf_stats)', us(nsPerLookup), `dnsgen a -> dnsmasq b, ${BENCH_DNS.inflight} in flight: four packets and their syscalls; the floor there: ${us(floorPerLookup)}`, nsPerLookup));
  const runs = (v: { runsPerUnit: number; nsPerRun: number } | undefined, per: string, digits: number): string =>
    v ? `${v.runsPerUnit.toFixed(digits)} runs per ${per} x ${Number.isFinite(v.nsPerRun) ? v.nsPerRun.toFixed(0) : '-'} ns` : '-';
  const churnProgs = perProgram[PHASES.churn]!;
  for (const [n, v] of Object.entries(churnProgs)) {
    const b = perProgram[PHASES.bulk]![n];
    const d = perProgram[PHASES.dns]![n];
    const fl = floorPerProgram[PHASES.churn]?.[n.replace(/^dke_/, 'dkf_')];
    const mo = modelPerProgram[PHASES.churn]?.[n.replace(/^dke_/, 'dkm_')];
    if (v.runsPerUnit === 0 && !b?.runsPerUnit && !d?.runsPerUnit) continue; // e.g. the bash loader's readline probe
    rows.push(
      info(
        `bpf.program.${n}`,
        `BPF ${n}: runs per connection x ns per run`,
        `${v.runsPerUnit.toFixed(2)} x ${Number.isFinite(v.nsPerRun) ? v.nsPerRun.toFixed(0) : '-'} ns`,
        `= ${Number.isFinite(v.nsPerRun) ? ((v.runsPerUnit * v.nsPerRun) / 1000).toFixed(2) : '0'} µs per connection; bulk: ${runs(b, 'MiB', 1)}; DNS: ${runs(d, 'lookup', 2)}${fl && Number.isFinite(fl.nsPerRun) ? `; an empty program there: ${fl.nsPerRun.toFixed(0)} ns per run` : ''}${mo && Number.isFinite(mo.nsPerRun) ? `; the data model's: ${((mo.runsPerUnit * mo.nsPerRun) / 1000).toFixed(2)} µs per connection` : ''}`,
        v.runsPerUnit * (Number.isFinite(v.nsPerRun) ? v.nsPerRun : 0),
      ),
    );
  }
  if (foreign > 0) rows.push(info('bpf.foreign', "other collectors' dke_* programs loaded", String(foreign), 'they run on the same hooks and add to every "without" measurement'));
  const data: BpfCostData = { rounds, perProgram, nsPerConnection: round(nsPerConnection, 1), nsPerMiBBulk: round(nsPerMiBBulk, 1), nsPerMiB1k: round(nsPerMiB1k, 1), nsPerLookup: round(nsPerLookup, 1), floor: { rounds: floorRounds, perProgram: floorPerProgram, nsPerConnection: round(floorPerConnection, 1), nsPerMiBBulk: round(floorPerMiB, 1), nsPerLookup: round(floorPerLookup, 1) }, model: { rounds: modelRounds, perProgram: modelPerProgram, nsPerConnection: round(modelPerConnection, 1), nsPerMiBBulk: round(modelPerMiB, 1), nsPerMiB1k: round(modelPerMiB1k, 1) }, foreignCollectorPrograms: foreign, exitCode };
  return { name: 'bpf-cost', rows, data };
}

/** Per phase and program, medians over rounds: runs per unit and ns per run. */
function medianPerProgram(rounds: PhaseCost[][], phases: readonly string[]): BpfCostData['perProgram'] {
  const perProgram: BpfCostData['perProgram'] = {};
  for (const phase of phases) {
    const of = rounds.map((ph) => ph.find((p) => p.phase === phase)!);
    const names = new Set(of.flatMap((p) => Object.keys(p.programs)));
    perProgram[phase] = {};
    for (const n of [...names].sort()) {
      perProgram[phase][n] = {
        runsPerUnit: round(median(of.map((p) => (p.programs[n]?.runs ?? 0) / p.units)), 3),
        nsPerRun: round(median(of.map((p) => (p.programs[n]?.runs ? p.programs[n].ns / p.programs[n].runs : NaN))), 1),
      };
    }
  }
  return perProgram;
}
