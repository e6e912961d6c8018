// Scenario 2 — connection churn: short TCP connections (connect, send 64
// bytes, close) from netns a to b as fast as the machine allows, with the
// collector running vs not. With the collector it also checks that every
// connection was counted: tcp_established at the receiver (client and server
// side, filtered by our server address and ports) against what the generator
// and the server made; and it reports kernel-side drops (the daemon's log
// and the BPF telemetry map).
import type { Collector } from './lib/collector';
import { telemetryDelta, type Telemetry } from './lib/bpf';
import { countFlows, type FlowCounts } from './lib/flows';
import { pairedRatios, type AbProbe, type RoundSamples } from './lib/rounds';
import { churn, startTcpServer, type ChurnResult, type TcpServer } from './lib/tcpgen';
import { check, info, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { median, round, sleep, waitUntil } from './lib/util';

const CHURN_PORT = 26100;
const CHURN_PORTS = 4;

export interface ChurnSample extends ChurnResult {
  /** Connections the server accepted during the run. */
  accepted: number;
  /** With the collector: */
  counted?: FlowCounts;
  /** Seconds from the end of the run until everything was counted (undefined: never). */
  countedAfterSeconds?: number;
  collectorCpuSeconds?: number;
  loggedLost?: Record<string, number>;
  telemetry?: Telemetry;
}

/** Waits until the receiver has every connection (both sides), then one more interval for anything extra. */
export async function awaitCounted(ctx: BenchContext, serverIp: string, port: number, nports: number, made: number, accepted: number): Promise<{ counts: FlowCounts; after?: number }> {
  const t0 = Date.now();
  const intervalMs = ctx.config.intervalSec * 1000;
  const done = await waitUntil(() => {
    const c = countFlows(ctx.receiver, serverIp, port, nports);
    return c.outgoingEstablished >= made && c.incomingEstablished >= accepted ? c : undefined;
  }, Math.max(10_000, 6 * intervalMs));
  const after = done ? (Date.now() - t0) / 1000 : undefined;
  // Over-counting shows only if we keep listening a little longer.
  await sleep(intervalMs + 500);
  return { counts: countFlows(ctx.receiver, serverIp, port, nports), after };
}

export function churnProbe(): AbProbe<ChurnSample> {
  let server: TcpServer | undefined;
  return {
    name: 'churn',
    async setup(ctx) {
      server = await startTcpServer(ctx.hosts.b, ctx.hosts.ipB, CHURN_PORT, CHURN_PORTS);
    },
    async teardown() {
      await server?.stop();
      server = undefined;
    },
    async measure(ctx: BenchContext, collector: Collector | undefined): Promise<ChurnSample> {
      const before = await server!.counts();
      const cpu0 = collector?.cpuSeconds();
      const logFrom = collector?.logs.length ?? 0;
      const tel0 = collector?.telemetry();
      const res = await churn({ ns: ctx.hosts.a, ip: ctx.hosts.ipB, port: CHURN_PORT, nports: CHURN_PORTS, seconds: ctx.config.churnSeconds, rate: 0 });
      await sleep(200); // the server's last reads
      const accepted = (await server!.counts()).accepted - before.accepted;
      const sample: ChurnSample = { ...res, accepted };
      if (collector) {
        const { counts, after } = await awaitCounted(ctx, ctx.hosts.ipB, CHURN_PORT, CHURN_PORTS, res.made, accepted);
        sample.counted = counts;
        sample.countedAfterSeconds = after;
        sample.collectorCpuSeconds = collector.cpuSeconds() - cpu0!;
        sample.loggedLost = collector.loggedLost(logFrom);
        const tel1 = collector.telemetry();
        if (tel0 && tel1) sample.telemetry = telemetryDelta(tel1, tel0);
      }
      return sample;
    },
  };
}

export function summarizeChurn(s: RoundSamples<ChurnSample>): ScenarioResult {
  const rows: Row[] = [];
  const w = s.with.map((x) => x.rate);
  const wo = s.without.map((x) => x.rate);
  const ratios = pairedRatios(w, wo);
  const ratio = median(ratios);
  const spread = ratios.length > 1 ? `; rounds ${Math.min(...ratios).toFixed(3)}..${Math.max(...ratios).toFixed(3)}` : '';
  rows.push(
    check('churn ratio (short connections/s)', ratio, '>=', 0.97, (v) => v.toFixed(3), `median ${Math.round(median(w))}/s with, ${Math.round(median(wo))}/s without${spread}`),
  );

  const made = s.with.reduce((a, x) => a + x.made, 0);
  const accepted = s.with.reduce((a, x) => a + x.accepted, 0);
  const out = s.with.reduce((a, x) => a + (x.counted?.outgoingEstablished ?? 0), 0);
  const inc = s.with.reduce((a, x) => a + (x.counted?.incomingEstablished ?? 0), 0);
  const outClosed = s.with.reduce((a, x) => a + (x.counted?.outgoingClosed ?? 0), 0);
  const exact = s.with.every((x) => x.counted?.outgoingEstablished === x.made && x.counted?.incomingEstablished === x.accepted);
  const slowest = Math.max(...s.with.map((x) => x.countedAfterSeconds ?? Infinity));
  rows.push({
    metric: 'every connection counted (tcp_established)',
    value: `client ${out}/${made}, server ${inc}/${accepted}`,
    goal: 'exact',
    status: exact ? 'PASS' : 'FAIL',
    note: `tcp_closed (client) ${outClosed}; all counted ${Number.isFinite(slowest) ? `within ${slowest.toFixed(1)} s of the run's end` : 'NOT within the wait'}`,
  });

  const lost: Record<string, number> = {};
  const tel: Record<string, number> = {};
  for (const x of s.with) {
    for (const [k, v] of Object.entries(x.loggedLost ?? {})) lost[k] = (lost[k] ?? 0) + v;
    for (const [k, v] of Object.entries(x.telemetry ?? {})) tel[k] = (tel[k] ?? 0) + v;
  }
  const ringDrops = tel.ringbuf_full ?? NaN;
  rows.push(
    info(
      'kernel-side drops during churn',
      `ringbuf_full ${tel.ringbuf_full ?? 'n/a'}, tcp_map_full ${tel.tcp_map_full ?? 'n/a'}`,
      `daemon logged lost: ${Object.keys(lost).length ? JSON.stringify(lost) : 'none'}; close events submitted ${tel.tcp_closed ?? 'n/a'}${ringDrops > 0 ? ' — DROPS' : ''}`,
    ),
  );

  const per10k = median(s.with.map((x) => ((x.collectorCpuSeconds ?? NaN) / x.made) * 10_000));
  rows.push(
    info(
      'collector CPU per 10k connections (max-rate churn)',
      `${(per10k * 1000).toFixed(0)} ms`,
      'daemon + loader user+sys from /proc over the run and until counted + 1 interval; median of rounds',
    ),
  );
  const failed = s.with.concat(s.without).reduce((a, x) => a + x.failed, 0);
  if (failed > 0) rows.push(info('generator connect failures', String(failed), s.with.concat(s.without).find((x) => x.firstError)?.firstError));
  return {
    name: 'churn',
    rows,
    data: { with: s.with, without: s.without, ratios: ratios.map((r) => round(r, 4)), medianRatio: round(ratio, 4), cpuPer10kSeconds: round(per10k, 4), lost, telemetry: tel },
  };
}
