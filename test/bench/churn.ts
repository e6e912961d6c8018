// Connection churn: short TCP connections (connect, send 64 bytes, close)
// from test host a to b as fast as the machine allows (gen/tcpgen.c, 64 in
// flight, 4 server ports), with the collector running, not running, and
// SIGSTOPped with its programs attached (the kernel side's cost alone). A
// probe of the alternated rounds (lib/rounds.ts). After each collector
// session it checks that every connection of the session (running and
// stopped) was counted: tcp_established/tcp_closed at the receiver, client
// and server side, against what the generator made and the server accepted.
import { losses, missesText, telemetryDelta, type Telemetry } from './lib/bpf';
import type { Collector } from './lib/collector';
import { sumFlows, type FlowSums } from './lib/flows';
import { initText, startEventWitness, type EventWitness } from './lib/ftrace';
import { floorRow, modelRow, pairedRatios, ratioRow, spreadText, type AbProbe, type CollectorState, type RoundSamples } from './lib/rounds';
import { churn, startTcpServer, type ChurnResult, type TcpServer } from './lib/tcpgen';
import { info, judged, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { median, round, sleep } from './lib/util';

const CHURN_PORT = 26100;
const CHURN_PORTS = 4;

export interface ChurnSample extends ChurnResult {
  state: CollectorState;
  /** Connections the server accepted / closed during the run. */
  accepted: number;
  serverClosed: number;
  /** With the collector running: its CPU over the run. */
  collectorCpuSeconds?: number;
  telemetry?: Telemetry;
  /** Set on the session's first sample once the collector stopped: what the receiver got for the whole session. */
  session?: {
    made: number;
    accepted: number;
    serverClosed: number;
    counted: FlowSums;
    loggedLost: Record<string, number>;
    recursionMisses: Record<string, number>;
    /** The server's events handled on top of pid 1's threads during the session (lib/ftrace.ts); null when not traced. */
    onInitThreads: Record<string, number> | null;
    unmatched?: unknown[];
  };
}

/**
 * `alone`: only with and without (the rounds at DataKit's default interval,
 * where a warm-up would wait a whole interval and the kernel side's own
 * measurements are those of the 1 s rounds).
 */
export function churnProbe(name = 'churn', alone = false): AbProbe<ChurnSample> {
  let server: TcpServer | undefined;
  let sessionCollector: Collector | undefined;
  /** The session's witness; undefined until its first measurement with the collector. */
  let witness: EventWitness | null | undefined;
  return {
    name,
    warmUp: !alone,
    paused: !alone,
    floor: !alone,
    model: !alone,
    async setup(ctx) {
      server = await startTcpServer(ctx.hosts.b, ctx.hosts.ipB, CHURN_PORT, CHURN_PORTS);
    },
    async teardown() {
      await server?.stop();
      server = undefined;
    },
    async measure(ctx: BenchContext, collector: Collector | undefined, _round: number, state: CollectorState): Promise<ChurnSample> {
      sessionCollector = collector;
      if (collector && witness === undefined) witness = startEventWitness(`dke-bench-${name}`, CHURN_PORT, CHURN_PORT + CHURN_PORTS - 1);
      const before = await server!.counts();
      const running = state === 'with' ? collector : undefined;
      const cpu0 = running?.cpuSeconds();
      const tel0 = collector?.telemetry();
      const res = await churn({ ns: ctx.hosts.a, ip: ctx.hosts.ipB, port: CHURN_PORT, nports: CHURN_PORTS, seconds: ctx.config.churnSeconds, rate: 0 });
      // The server's last reads and closes: on a loaded machine it can be
      // seconds behind the generator's last connection.
      let after = await server!.counts();
      for (const until = Date.now() + 10_000; after.closed - before.closed < after.accepted - before.accepted && Date.now() < until; ) {
        await sleep(100);
        after = await server!.counts();
      }
      const sample: ChurnSample = { ...res, state, accepted: after.accepted - before.accepted, serverClosed: after.closed - before.closed };
      if (running) sample.collectorCpuSeconds = running.cpuSeconds() - cpu0!;
      const tel1 = collector?.telemetry();
      if (tel0 && tel1) sample.telemetry = telemetryDelta(tel1, tel0);
      return sample;
    },
    async afterStop(ctx, samples) {
      const onInitThreads = witness ? witness.stop() : null;
      witness = undefined;
      const first = samples[0];
      if (!first) return;
      first.session = {
        made: samples.reduce((a, x) => a + x.made, 0),
        accepted: samples.reduce((a, x) => a + x.accepted, 0),
        serverClosed: samples.reduce((a, x) => a + x.serverClosed, 0),
        counted: sumFlows(ctx.receiver, 'tcp', ctx.hosts.ipB, CHURN_PORT, CHURN_PORTS),
        loggedLost: sessionCollector?.loggedLost() ?? {},
        recursionMisses: sessionCollector?.missesAtStop ?? {},
        onInitThreads,
      };
      if (!countedExactly(first.session)) {
        // For the diagnosis: TCP points with our server address that did not match the churn ports' filter.
        first.session.unmatched = ctx.receiver
          .points('netflow')
          .filter((p) => p.tags.transport === 'tcp' && (p.tags.server_ip === ctx.hosts.ipB || p.tags.dst_ip === ctx.hosts.ipB || p.tags.src_ip === ctx.hosts.ipB))
          .filter((p) => !(Number(p.tags.server_port) >= CHURN_PORT && Number(p.tags.server_port) < CHURN_PORT + CHURN_PORTS))
          // The generator's own first: other scenarios' points (nginx, iperf3) would fill the list.
          .sort((x, y) => Number(y.tags.process_name === 'tcpgen') - Number(x.tags.process_name === 'tcpgen'))
          .slice(0, 50)
          .map((p) => ({ tags: p.tags, fields: p.fields }));
      }
    },
  };
}

/** Counted minus truth for the session's opens and closes, both sides. */
function countGaps(x: NonNullable<ChurnSample['session']>): [string, number][] {
  const c = x.counted;
  return [
    ['client opens', c.client.tcp_established - x.made],
    ['client closes', c.client.tcp_closed - x.made],
    ['server opens', c.server.tcp_established - x.accepted],
    ['server closes', c.server.tcp_closed - x.serverClosed],
  ];
}

/** Whether the receiver got every open and close of the session, both sides. */
function countedExactly(x: NonNullable<ChurnSample['session']>): boolean {
  return countGaps(x).every(([, gap]) => gap === 0);
}

export function summarizeChurn(s: RoundSamples<ChurnSample>, intervalSec: number, name = 'churn'): ScenarioResult {
  const rows: Row[] = [];
  const w = s.with.map((x) => x.rate);
  const wo = s.without.map((x) => x.rate);
  const { row, ratios, ratio } = ratioRow(`${name}.ratio`, `short-connection churn, with / without (tcpgen, --interval ${intervalSec}s)`, 0.95, w, wo, '/s');
  rows.push(row);
  const p = s.paused.map((x) => x.rate);
  const pratios = pairedRatios(p, wo);
  if (p.length) {
    rows.push(
      info(`${name}.paused`, 'the same with the daemon and loaders stopped (SIGSTOP), programs still attached', median(pratios).toFixed(3), `kernel side alone: median ${Math.round(median(p))}/s stopped, ${Math.round(median(wo))}/s without${spreadText(pratios)}`, median(pratios)),
    );
  }

  const floor = floorRow(`${name}.floor`, s.floor.map((x) => x.rate), wo, '/s', 'what the kernel charges for running any program there: ');
  rows.push(...floor.rows);
  const model = modelRow(`${name}.model`, s.model.map((x) => x.rate), wo, '/s');
  rows.push(...model.rows);

  const sessions = s.with.map((x) => x.session).filter((x) => x !== undefined);
  const exact = sessions.length > 0 && sessions.every(countedExactly);
  const sum = (f: (x: (typeof sessions)[number]) => number): number => sessions.reduce((a, x) => a + f(x), 0);
  const misses: Record<string, number> = {};
  for (const x of sessions) for (const [k, v] of Object.entries(x.recursionMisses)) misses[k] = (misses[k] ?? 0) + v;
  const onInit: Record<string, number> = {};
  for (const x of sessions) for (const [k, v] of Object.entries(x.onInitThreads ?? {})) onInit[k] = (onInit[k] ?? 0) + v;
  const traced = sessions.length > 0 && sessions.every((x) => x.onInitThreads);
  // Which sessions missed, beside the server's retransmits in each: the
  // misses seen so far all fell in sessions whose server retransmitted.
  const retransmitted = sessions.filter((x) => x.counted.server.retransmits > 0).length;
  const missedText = exact
    ? ''
    : `; sessions that missed: ${sessions
        .map((x, i) => {
          const gaps = countGaps(x).filter(([, gap]) => gap !== 0);
          return gaps.length ? `#${i + 1} (${gaps.map(([what, gap]) => `${what} ${gap}`).join(', ')}; server retransmits ${x.counted.server.retransmits})` : '';
        })
        .filter(Boolean)
        .join(', ')}; sessions whose server retransmitted: ${retransmitted} of ${sessions.length}`;
  rows.push(
    judged(
      `${name}.counted`,
      `connections counted in the churn rounds (--interval ${intervalSec}s${s.paused.length ? ', through SIGSTOP' : ''})`,
      exact,
      `client opens ${sum((x) => x.counted.client.tcp_established)}/${sum((x) => x.made)}, closes ${sum((x) => x.counted.client.tcp_closed)}/${sum((x) => x.made)}; server opens ${sum((x) => x.counted.server.tcp_established)}/${sum((x) => x.accepted)}, closes ${sum((x) => x.counted.server.tcp_closed)}/${sum((x) => x.serverClosed)}`,
      'every one',
      `tcp_established/tcp_closed at the receiver vs connections made, accepted and closed; counted after a SIGTERM flush; BPF runs the kernel skipped (recursion_misses) ${missesText(misses)}; ${initText(traced ? onInit : null, "the server's events")}${missedText}`,
    ),
  );

  const tel: Record<string, number> = {};
  for (const x of [...s.with, ...s.paused]) for (const [k, v] of Object.entries(x.telemetry ?? {})) tel[k] = (tel[k] ?? 0) + v;
  const logged: Record<string, number> = {};
  for (const x of sessions) for (const [k, v] of Object.entries(x.loggedLost)) logged[k] = (logged[k] ?? 0) + v;
  const lost = losses(tel);
  rows.push(info(`${name}.kernelLosses`, 'kernel-side losses during churn rounds', Object.keys(lost).length ? JSON.stringify(lost) : 'none', `telemetry map; daemon logged: ${Object.keys(logged).length ? JSON.stringify(logged) : 'none'}`));

  const per10k = median(s.with.map((x) => ((x.collectorCpuSeconds ?? NaN) / x.made) * 10_000));
  rows.push(info(`${name}.cpuPer10k`, `collector CPU per 10k connections, max-rate churn (--interval ${intervalSec}s, idle included)`, `${(per10k * 1000).toFixed(0)} ms`, 'all collector processes, user+sys from /proc over the run; median of rounds', per10k * 1000));
  const failed = [...s.with, ...s.without, ...s.paused].reduce((a, x) => a + x.failed, 0);
  if (failed > 0) rows.push(info(`${name}.failures`, 'generator connect failures (churn rounds)', String(failed), [...s.with, ...s.without, ...s.paused].find((x) => x.firstError)?.firstError));
  return {
    name,
    rows,
    data: { recursionMisses: misses, with: s.with, without: s.without, paused: s.paused, floor: s.floor, floorRatios: floor.ratios.map((r) => round(r, 4)), model: s.model, modelRatios: model.ratios.map((r) => round(r, 4)), ratios: ratios.map((r) => round(r, 4)), medianRatio: round(ratio, 4), pausedRatios: pratios.map((r) => round(r, 4)), cpuPer10kSeconds: round(per10k, 4), telemetry: tel, loggedLost: logged },
  };
}
