// Alternated rounds: every round measures each probe once with the collector
// running and once without, in ABBA order (with first in odd rounds,
// without first in even ones), so drift in what else the machine is doing
// falls on both sides alike. Scenarios compare the two sides round by round
// and report the median ratio.
import { Collector } from './collector';
import type { BenchContext } from './types';
import { progress, sleep } from './util';

export type CollectorState = 'with' | 'without';

export interface AbProbe<S> {
  name: string;
  setup(ctx: BenchContext): Promise<void>;
  teardown(): Promise<void>;
  /** One measurement; `collector` is set in the 'with' state. */
  measure(ctx: BenchContext, collector: Collector | undefined, round: number): Promise<S>;
}

export interface RoundSamples<S> {
  with: S[];
  without: S[];
}

export interface RoundsOutcome {
  samples: Record<string, RoundSamples<unknown>>;
  collectorExitCodes: (number | null)[];
  collectorProblems: string[];
  loaderRestarts: number;
}

export async function runRounds(ctx: BenchContext, probes: AbProbe<unknown>[]): Promise<RoundsOutcome> {
  const samples: Record<string, RoundSamples<unknown>> = {};
  for (const p of probes) samples[p.name] = { with: [], without: [] };
  const collectorExitCodes: (number | null)[] = [];
  const collectorProblems = new Set<string>();
  let loaderRestarts = 0;
  for (const p of probes) await p.setup(ctx);
  try {
    for (let round = 0; round < ctx.config.rounds; round++) {
      const order: CollectorState[] = round % 2 === 0 ? ['with', 'without'] : ['without', 'with'];
      for (const state of order) {
        progress(`round ${round + 1}/${ctx.config.rounds}, collector ${state === 'with' ? 'running' : 'not running'}`);
        let collector: Collector | undefined;
        if (state === 'with') {
          ctx.receiver.clear();
          collector = await Collector.start({ apiServer: ctx.apiServer, intervalSec: ctx.config.intervalSec, cpuProfDir: ctx.config.cpuProfDir });
          // Loading and attaching is a one-off; let it finish before measuring.
          await sleep(1000);
        }
        try {
          for (const p of probes) samples[p.name]![state].push(await p.measure(ctx, collector, round));
        } finally {
          if (collector) {
            loaderRestarts += collector.restarts();
            collector.problems().forEach((m) => collectorProblems.add(m));
            collectorExitCodes.push(await collector.stop());
          }
        }
      }
    }
  } finally {
    for (const p of probes) await p.teardown();
  }
  return { samples, collectorExitCodes, collectorProblems: [...collectorProblems], loaderRestarts };
}

/** with/without per round (same round paired), then the median of those ratios. */
export function pairedRatios(withVals: readonly number[], withoutVals: readonly number[]): number[] {
  const n = Math.min(withVals.length, withoutVals.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(withVals[i]! / withoutVals[i]!);
  return out;
}
