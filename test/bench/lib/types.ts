// What the runner hands every scenario, and what each gives back.
import type { Receiver } from '../../../src/receiver/receiver';
import type { BenchHosts } from './hosts';

export interface BenchConfig {
  quick: boolean;
  /** Alternated with/without rounds of the throughput, churn, nginx and dns probes. */
  rounds: number;
  /** iperf3 seconds per measurement, after omitSeconds of warm-up. */
  probeSeconds: number;
  omitSeconds: number;
  /** Seconds of each churn, ab and DNS measurement in the rounds. */
  churnSeconds: number;
  /** --interval of the collector in the rounds and the BPF-cost run (per-interval work at its most frequent). */
  intervalSec: number;
  /** --interval of the CPU scenario, and its measuring windows (whole intervals). */
  cpuIntervalSec: number;
  cpuWindowSeconds: number;
  /** Fixed connection rates of the CPU scenario: the first is judged on CPU share, the last on CPU per 10k and drops. */
  rates: number[];
  /** Live connections at which memory is read, ascending; the last one is judged. */
  memorySteps: number[];
  memoryIntervalSec: number;
  /** Sustained churn: rate, seconds, intervals; the first countSeconds go to ports of their own and are counted. */
  sustainedRate: number;
  sustainedSeconds: number;
  sustainedIntervals: number[];
  countSeconds: number;
  /** UDP burst: one-datagram sockets, over seconds, at --interval udpIntervalSec. */
  udpSockets: number;
  udpSeconds: number;
  udpIntervalSec: number;
  /** Exactness runs: --interval -> seconds of traffic. */
  exactRuns: { intervalSec: number; seconds: number }[];
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

export type Status = 'met' | 'missed' | 'info';

export interface Row {
  /** Stable name of the row across runs: the previous result is found by it. */
  key: string;
  metric: string;
  value: string;
  /** The value as a number, when it has one (for the JSON and comparisons). */
  num?: number;
  goal?: string;
  status: Status;
  /** How far from the goal, or what else the reader needs. */
  note?: string;
  /** Filled by the runner: this row's value in the previous result file. */
  previous?: string;
}

export interface ScenarioResult {
  name: string;
  rows: Row[];
  /** Everything measured, for the JSON file. */
  data: unknown;
  seconds?: number;
}

/** `value` against a goal `limit`: how far off, in the goal's own terms. */
export function check(key: string, metric: string, value: number, op: '>=' | '<=', limit: number, fmt: (v: number) => string, note?: string): Row {
  const ok = Number.isFinite(value) && (op === '>=' ? value >= limit : value <= limit);
  let off = '';
  if (!ok && Number.isFinite(value)) {
    off = op === '>=' ? `short by ${fmt(limit - value)}` : `over by ${fmt(value - limit)}`;
  }
  return {
    key,
    metric,
    value: Number.isFinite(value) ? fmt(value) : 'n/a',
    num: Number.isFinite(value) ? value : undefined,
    goal: `${op} ${fmt(limit)}`,
    status: ok ? 'met' : 'missed',
    note: [off, note].filter(Boolean).join('; ') || undefined,
  };
}

/** A row judged by a condition rather than a number (exact counts, flat memory). */
export function judged(key: string, metric: string, ok: boolean, value: string, goal: string, note?: string, num?: number): Row {
  return { key, metric, value, num, goal, status: ok ? 'met' : 'missed', note };
}

export function info(key: string, metric: string, value: string, note?: string, num?: number): Row {
  return { key, metric, value, num, status: 'info', note };
}
