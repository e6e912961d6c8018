// What the runner hands every scenario, and what each gives back.
import type { Receiver } from '../../../src/receiver/receiver';
import type { BenchHosts } from './hosts';

export interface BenchConfig {
  quick: boolean;
  /** Alternated with/without rounds of the throughput and churn scenarios. */
  rounds: number;
  /** iperf3 seconds per measurement, after omitSeconds of warm-up. */
  probeSeconds: number;
  omitSeconds: number;
  churnSeconds: number;
  /** --interval of the collector in the rounds, the CPU and the BPF-cost runs (the counting check needs it short). */
  intervalSec: number;
  /** Fixed connection rates of the CPU scenario. */
  rates: number[];
  ratePhaseSeconds: number;
  idleSeconds: number;
  /** Live connections at which memory is read, ascending. */
  memorySteps: number[];
  memoryIntervalSec: number;
  statsRounds: number;
  encoderSeconds: number;
  cpuProfDir?: string;
}

export interface BenchContext {
  config: BenchConfig;
  hosts: BenchHosts;
  receiver: Receiver;
  /** host:port the collector uploads to */
  apiServer: string;
}

export type Status = 'PASS' | 'FAIL' | 'INFO';

export interface Row {
  metric: string;
  value: string;
  goal?: string;
  status: Status;
  /** How far from the goal, or what else the reader needs. */
  note?: string;
}

export interface ScenarioResult {
  name: string;
  rows: Row[];
  /** Everything measured, for the JSON file. */
  data: unknown;
  seconds?: number;
}

/** `value` against a goal `limit`: how far off, in the goal's own terms. */
export function check(metric: string, value: number, op: '>=' | '<=', limit: number, fmt: (v: number) => string, note?: string): Row {
  const ok = Number.isFinite(value) && (op === '>=' ? value >= limit : value <= limit);
  let off = '';
  if (!ok && Number.isFinite(value)) {
    off = op === '>=' ? `short by ${fmt(limit - value)}` : `over by ${fmt(value - limit)}`;
  }
  return {
    metric,
    value: Number.isFinite(value) ? fmt(value) : 'n/a',
    goal: `${op} ${fmt(limit)}`,
    status: ok ? 'PASS' : 'FAIL',
    note: [off, note].filter(Boolean).join('; ') || undefined,
  };
}

export function info(metric: string, value: string, note?: string): Row {
  return { metric, value, status: 'INFO', note };
}
