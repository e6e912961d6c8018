// Alternated rounds: every round measures each probe once with the collector
// running and once without, in ABBA order (with first in odd rounds,
// without first in even ones), so drift in what else the machine is doing
// falls on both sides alike. A probe may also measure with the collector
// SIGSTOPped (programs attached, user space frozen: the kernel side alone);
// that comes last in the collector's session, so catching up afterwards
// cannot touch the 'with' measurements. A probe may also measure with only
// the floor attached (empty programs on our hooks, lib/floor.ts), and then
// with the data model's floor (lib/floor.ts), right after its 'without'
// measurement. A probe may warm the collector up first: one
// unmeasured run of its traffic right after the collector starts, then an
// interval, because V8 compiles the daemon's paths for a kind of traffic the
// first time it sees it (for DNS ~0.3 s of CPU in the first seconds, then
// ~0.3 µs a lookup): a one-off of each start, not what the traffic costs.
// The cpu scenario does the same. Scenarios compare the sides round by round
// and report the median ratio.
import { Collector } from './collector';
import { startFloor } from './floor';
import { check, info, type BenchContext, type Row } from './types';
import { median, progress, sleep } from './util';

export type CollectorState = 'with' | 'without' | 'paused' | 'floor' | 'model' | 'warmup';

export interface AbProbe<S> {
  name: string;
  setup(ctx: BenchContext): Promise<void>;
  teardown(): Promise<void>;
  /** One measurement; `collector` is set in the 'with' and 'paused' states. */
  measure(ctx: BenchContext, collector: Collector | undefined, round: number, state: CollectorState): Promise<S>;
  /** Whether to measure also with the collector SIGSTOPped. */
  paused?: boolean;
  /** Whether to measure also with the floor programs alone attached. */
  floor?: boolean;
  /** Whether to measure also with the data model's programs alone attached (TCP probes: it has no UDP or DNS). */
  model?: boolean;
  /**
   * Whether to run once, unmeasured ('warmup'), before the collector's
   * measurements; that run's sample joins the session's samples given to
   * afterStop (its traffic is in what the receiver got), after the others.
   */
  warmUp?: boolean;
  /**
   * After the collector's session ended with SIGTERM (which flushes the last
   * interval): what the receiver got for this probe's traffic, against the
   * session's samples ('with' and, if any, 'paused').
   */
  afterStop?(ctx: BenchContext, samples: S[]): Promise<void>;
}

export interface RoundSamples<S> {
  with: S[];
  without: S[];
  paused: S[];
  floor: S[];
  model: S[];
}

export interface RoundsOutcome {
  samples: Record<string, RoundSamples<unknown>>;
  collectorExitCodes: (number | null)[];
  collectorProblems: string[];
  loaderRestarts: number;
}

export async function runRounds(ctx: BenchContext, probes: AbProbe<unknown>[]): Promise<RoundsOutcome> {
  const samples: Record<string, RoundSamples<unknown>> = {};
  for (const p of probes) samples[p.name] = { with: [], without: [], paused: [], floor: [], model: [] };
  const collectorExitCodes: (number | null)[] = [];
  const collectorProblems = new Set<string>();
  let loaderRestarts = 0;
  for (const p of probes) await p.setup(ctx);
  try {
    for (let round = 0; round < ctx.config.rounds; round++) {
      const order: ('with' | 'without')[] = round % 2 === 0 ? ['with', 'without'] : ['without', 'with'];
      for (const state of order) {
        progress(`round ${round + 1}/${ctx.config.rounds}, collector ${state === 'with' ? 'running' : 'not running'}`);
        if (state === 'without') {
          for (const p of probes) samples[p.name]!.without.push(await p.measure(ctx, undefined, round, 'without'));
          for (const state of ['floor', 'model'] as const) {
            const alone = probes.filter((p) => p[state]);
            if (!alone.length) continue;
            progress(`round ${round + 1}/${ctx.config.rounds}, ${state === 'floor' ? 'floor programs' : "the data model's programs"} alone`);
            const programs = await startFloor(state);
            try {
              for (const p of alone) samples[p.name]![state].push(await p.measure(ctx, undefined, round, state));
            } finally {
              await programs.stop();
            }
          }
          continue;
        }
        ctx.receiver.clear();
        const collector = await Collector.start({ apiServer: ctx.apiServer, intervalSec: ctx.config.intervalSec, cpuProfDir: ctx.config.cpuProfDir });
        const session = new Map<string, unknown[]>(probes.map((p) => [p.name, []]));
        try {
          // Loading and attaching is a one-off; let it finish before measuring.
          await sleep(1000);
          const warmed: [string, unknown][] = [];
          const warming = probes.filter((p) => p.warmUp);
          if (warming.length) {
            progress(`round ${round + 1}/${ctx.config.rounds}, collector warming up (${warming.map((p) => p.name).join(', ')}, then an interval)`);
            for (const p of warming) warmed.push([p.name, await p.measure(ctx, collector, round, 'warmup')]);
            await sleep(ctx.config.intervalSec * 1000 + 200);
          }
          for (const p of probes) {
            const s = await p.measure(ctx, collector, round, 'with');
            samples[p.name]!.with.push(s);
            session.get(p.name)!.push(s);
          }
          const stoppable = probes.filter((p) => p.paused);
          if (stoppable.length) {
            progress(`round ${round + 1}/${ctx.config.rounds}, collector stopped (SIGSTOP), programs attached`);
            collector.pause();
            try {
              for (const p of stoppable) {
                const s = await p.measure(ctx, collector, round, 'paused');
                samples[p.name]!.paused.push(s);
                session.get(p.name)!.push(s);
              }
            } finally {
              collector.resume();
            }
          }
          for (const [name, sample] of warmed) session.get(name)!.push(sample);
          // Every close of the session has reached the kernel before the last flush.
          await ctx.hosts.settleTcp();
        } finally {
          loaderRestarts += collector.restarts();
          collector.problems().forEach((m) => collectorProblems.add(m));
          collectorExitCodes.push(await collector.stop());
        }
        // The receiver may still be parsing the last request the daemon sent before exiting.
        await sleep(300);
        for (const p of probes) await p.afterStop?.(ctx, session.get(p.name)!);
      }
    }
  } finally {
    for (const p of probes) await p.teardown();
  }
  return { samples, collectorExitCodes, collectorProblems: [...collectorProblems], loaderRestarts };
}

/** with/without per round (same round paired). */
export function pairedRatios(withVals: readonly number[], withoutVals: readonly number[]): number[] {
  const n = Math.min(withVals.length, withoutVals.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(withVals[i]! / withoutVals[i]!);
  return out;
}

/** "; rounds 0.951..0.990" when there is more than one. */
export function spreadText(ratios: readonly number[]): string {
  return ratios.length > 1 ? `; rounds ${Math.min(...ratios).toFixed(3)}..${Math.max(...ratios).toFixed(3)}` : '';
}

/** A probe's with/without row: the median of the paired ratios against `goal`, both medians and the rounds' spread beside it. */
export function ratioRow(key: string, metric: string, goal: number, withVals: readonly number[], without: readonly number[], unit: string): { row: Row; ratios: number[]; ratio: number } {
  const ratios = pairedRatios(withVals, without);
  const ratio = median(ratios);
  const how = `median ${Math.round(median(withVals))}${unit} with, ${Math.round(median(without))}${unit} without${spreadText(ratios)}`;
  return { row: check(key, metric, ratio, '>=', goal, (v) => v.toFixed(3), how), ratios, ratio };
}

/**
 * The floor's row for a probe that measured with it (floor/without per
 * round), or no row when it did not; the ratios go to the result's data.
 */
export function floorRow(key: string, floor: readonly number[], without: readonly number[], unit: string, note = ''): { rows: Row[]; ratios: number[] } {
  return ratioInfo(key, 'the floor: empty programs on the same hooks, no collector', floor, without, unit, note);
}

/** The data model's floor (test/bench/floor/model.bpf.c) the same way: what any collector built as ours is pays. */
export function modelRow(key: string, model: readonly number[], without: readonly number[], unit: string): { rows: Row[]; ratios: number[] } {
  return ratioInfo(key, "the data model's floor: socket-local state and per-flow counters only, no collector", model, without, unit, '');
}

function ratioInfo(key: string, metric: string, vals: readonly number[], without: readonly number[], unit: string, note: string): { rows: Row[]; ratios: number[] } {
  const ratios = pairedRatios(vals, without);
  if (!vals.length) return { rows: [], ratios };
  const how = `${note}median ${Math.round(median(vals))}${unit}, ${Math.round(median(without))}${unit} without${spreadText(ratios)}`;
  return { rows: [info(key, metric, median(ratios).toFixed(3), how, median(ratios))], ratios };
}
