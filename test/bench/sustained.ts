// Sustained churn: short connections from test host a to b at a fixed rate
// (17k/s, as issue 10) for minutes, once at --interval 10s and once at 60s
// (DataKit's default). It samples the RSS of every collector process each
// second, reports the peak and whether it grows from interval to interval
// (the middle third of the run against the last third), and the collector's
// CPU per 10k connections. The first countSeconds of each run go to server
// ports of their own; after the run the collector is stopped with SIGTERM
// (which flushes) and those connections are checked one by one at the
// receiver: tcp_established and tcp_closed, client and server side, against
// what the generator made and the server accepted and closed.
import { losses, missesText, telemetryDelta, type Telemetry } from './lib/bpf';
import { Collector, rssText, type Role } from './lib/collector';
import { sumFlows, type FlowSums } from './lib/flows';
import { initText, startEventWitness } from './lib/ftrace';
import { churn, startTcpServer, type ChurnResult, type ServerCounts } from './lib/tcpgen';
import { info, judged, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { progress, round, sleep } from './lib/util';

const COUNT_PORT = 26130; // the counted first part
const REST_PORT = 26134; // the rest of the run
const NPORTS = 4;
const MB = 1024 * 1024;

interface RssSample {
  t: number;
  rss: Record<Role, number>;
}

interface Part {
  seconds: number;
  generator: ChurnResult;
  server: ServerCounts;
  counted: FlowSums;
}

export interface SustainedRun {
  intervalSec: number;
  seconds: number;
  rate: number;
  samples: RssSample[];
  peakBytes: number;
  peakAt: Record<Role, number>;
  /** Max RSS per interval (index = interval number from the start). */
  peaksPerInterval: number[];
  /** Max of the last third minus max of the middle third of the run, bytes. */
  growthBytes: number;
  flat: boolean;
  cpuSeconds: Record<Role, number>;
  counted: Part;
  /** The counted part's server-side events handled on top of pid 1's threads (lib/ftrace.ts), null when not traced. */
  onInitThreads: Record<string, number> | null;
  rest?: Part;
  telemetry?: Telemetry;
  loggedLost: Record<string, number>;
  /** Runs of our programs the kernel skipped (recursion_misses), read at the stop. */
  recursionMisses: Record<string, number>;
  restarts: number;
  exitCode: number | null;
}

/** Flat: the last third's peak no more than 5 MB (or 5 %) above the middle third's. */
function growth(samples: RssSample[], seconds: number): { growthBytes: number; flat: boolean; peak: RssSample } {
  const max = (xs: RssSample[]): number => xs.reduce((m, s) => Math.max(m, s.rss.total!), 0);
  const middle = samples.filter((s) => s.t >= seconds / 3 && s.t < (2 * seconds) / 3);
  const last = samples.filter((s) => s.t >= (2 * seconds) / 3);
  const peak = samples.reduce((b, s) => (s.rss.total! > b.rss.total! ? s : b), samples[0]!);
  const g = max(last) - max(middle);
  return { growthBytes: g, flat: g <= Math.max(5 * MB, 0.05 * peak.rss.total!), peak };
}

async function runOne(ctx: BenchContext, intervalSec: number): Promise<SustainedRun> {
  const { config } = ctx;
  const seconds = config.sustainedSeconds;
  const rate = config.sustainedRate;
  const countSeconds = Math.min(config.countSeconds, seconds);
  const countServer = await startTcpServer(ctx.hosts.b, ctx.hosts.ipB, COUNT_PORT, NPORTS);
  const restServer = await startTcpServer(ctx.hosts.b, ctx.hosts.ipB, REST_PORT, NPORTS);
  const collector = await Collector.start({ apiServer: ctx.apiServer, intervalSec, cpuProfDir: config.cpuProfDir }).catch(async (err: unknown) => {
    await countServer.stop();
    await restServer.stop();
    throw err;
  });
  const samples: RssSample[] = [];
  let exitCode: number | null = null;
  let onInitThreads: Record<string, number> | null = null;
  try {
    await sleep(1000);
    ctx.receiver.clear();
    const cpu0 = collector.cpuByProcess();
    const tel0 = collector.telemetry();
    const t0 = Date.now();
    let running = true;
    const sampler = (async () => {
      while (running) {
        samples.push({ t: (Date.now() - t0) / 1000, rss: collector.rssByProcess() });
        await sleep(1000);
      }
    })();
    progress(`sustained churn: ${rate}/s for ${seconds} s at --interval ${intervalSec}s (the first ${countSeconds} s counted)`);
    const gen = { ns: ctx.hosts.a, ip: ctx.hosts.ipB, nports: NPORTS, rate, concurrency: 128 };
    const witness = startEventWitness(`dke-bench-sustained-${intervalSec}`, COUNT_PORT, COUNT_PORT + NPORTS - 1);
    let first: ChurnResult;
    try {
      first = await churn({ ...gen, port: COUNT_PORT, seconds: countSeconds });
      await sleep(1000); // the counted part's last closes
    } finally {
      onInitThreads = witness ? witness.stop() : null;
    }
    const rest = seconds > countSeconds ? await churn({ ...gen, port: REST_PORT, seconds: seconds - countSeconds }) : undefined;
    running = false;
    await sampler;
    const cpu1 = collector.cpuByProcess();
    const tel1 = collector.telemetry();
    const restarts = collector.restarts();
    await ctx.hosts.settleTcp(); // every close has happened before the last flush
    const countCounts = await countServer.counts();
    const restCounts = await restServer.counts();
    progress('sustained churn: stopping the collector (SIGTERM flushes the last interval)');
    exitCode = await collector.stop();
    await sleep(300);
    const g = growth(samples, seconds);
    const peaksPerInterval: number[] = [];
    for (const s of samples) {
      const i = Math.floor(s.t / intervalSec);
      peaksPerInterval[i] = Math.max(peaksPerInterval[i] ?? 0, s.rss.total!);
    }
    return {
      intervalSec,
      seconds,
      rate,
      samples,
      peakBytes: g.peak.rss.total!,
      peakAt: g.peak.rss,
      peaksPerInterval,
      growthBytes: g.growthBytes,
      flat: g.flat,
      cpuSeconds: Object.fromEntries(Object.keys(cpu1).map((k) => [k, round(cpu1[k]! - (cpu0[k] ?? 0), 3)])),
      counted: { seconds: countSeconds, generator: first, server: countCounts, counted: sumFlows(ctx.receiver, 'tcp', ctx.hosts.ipB, COUNT_PORT, NPORTS) },
      onInitThreads,
      rest: rest && { seconds: seconds - countSeconds, generator: rest, server: restCounts, counted: sumFlows(ctx.receiver, 'tcp', ctx.hosts.ipB, REST_PORT, NPORTS) },
      telemetry: tel0 && tel1 ? telemetryDelta(tel1, tel0) : undefined,
      loggedLost: collector.loggedLost(),
      recursionMisses: collector.missesAtStop,
      restarts,
      exitCode,
    };
  } finally {
    await collector.stop();
    await countServer.stop();
    await restServer.stop();
  }
}

function exactPart(p: Part): boolean {
  const c = p.counted;
  return c.client.tcp_established === p.generator.made && c.server.tcp_established === p.server.accepted && c.client.tcp_closed === p.generator.made && c.server.tcp_closed === p.server.closed;
}

function partText(p: Part): string {
  const n = (x: number): string => x.toLocaleString('en');
  const c = p.counted;
  return `client opens ${n(c.client.tcp_established)}/${n(p.generator.made)}, closes ${n(c.client.tcp_closed)}/${n(p.generator.made)}; server opens ${n(c.server.tcp_established)}/${n(p.server.accepted)}, closes ${n(c.server.tcp_closed)}/${n(p.server.closed)}`;
}

export async function runSustained(ctx: BenchContext): Promise<ScenarioResult> {
  const runs: SustainedRun[] = [];
  for (const iv of ctx.config.sustainedIntervals) runs.push(await runOne(ctx, iv));
  const rows: Row[] = [];
  const mb = (b: number): string => `${(b / MB).toFixed(1)} MB`;
  for (const r of runs) {
    const made = r.counted.generator.made + (r.rest?.generator.made ?? 0);
    const genSeconds = r.counted.generator.seconds + (r.rest?.generator.seconds ?? 0);
    const achieved = Math.round(made / genSeconds);
    const rateNote = achieved < r.rate * 0.95 ? ` (machine made only ${achieved}/s)` : '';
    const label = `${(r.rate / 1000).toFixed(0)}k short connections/s for ${r.seconds} s`;
    const peaks = r.peaksPerInterval.map((b) => (b / MB).toFixed(0)).join(' ');
    rows.push(
      judged(
        `sustained.rss.${r.intervalSec}s`,
        `RSS under sustained churn (${label}, --interval ${r.intervalSec}s)`,
        r.peakBytes <= 150 * MB && r.flat,
        `peak ${mb(r.peakBytes)}, ${r.flat ? 'flat' : 'GROWING'} (${r.growthBytes >= 0 ? '+' : ''}${mb(r.growthBytes)})`,
        '<= 150 MB, flat',
        `at the peak: ${rssText(r.peakAt)}; peak per interval (MB): ${peaks}; achieved ${achieved}/s${rateNote}${r.seconds < 3 * r.intervalSec ? `; only ${Math.floor(r.seconds / r.intervalSec)} interval(s) in the run: growth cannot show` : ''}`,
        r.peakBytes / MB,
      ),
    );
    const per10k = (r.cpuSeconds.total! / made) * 10_000 * 1000;
    const per = Object.entries(r.cpuSeconds)
      .filter(([k]) => k !== 'total')
      .map(([k, v]) => `${k} ${((v / made) * 10_000 * 1000).toFixed(1)}`)
      .join(', ');
    rows.push(info(`sustained.cpuPer10k.${r.intervalSec}s`, `collector CPU per 10k connections, sustained churn (--interval ${r.intervalSec}s, idle included)`, `${per10k.toFixed(1)} ms`, `${per} ms; ${((r.cpuSeconds.total! / r.seconds) * 100).toFixed(1)} % of a core over the run`, per10k));
    const lost = losses(r.telemetry);
    const restNote = r.rest ? `; the remaining ${r.rest.seconds} s: ${partText(r.rest)}${exactPart(r.rest) ? ' (exact)' : ' (NOT exact)'}` : '';
    const exact = exactPart(r.counted);
    const p = r.counted;
    const metric = `connections counted at ${(r.rate / 1000).toFixed(0)}k short connections/s for ${p.seconds} s, --interval ${r.intervalSec}s`;
    const value = partText(p);
    const note = `counted at the receiver / made by tcpgen and its server, after a SIGTERM flush; kernel losses ${Object.keys(lost).length ? JSON.stringify(lost) : 'none'}; daemon logged ${Object.keys(r.loggedLost).length ? JSON.stringify(r.loggedLost) : 'none'}; BPF runs the kernel skipped (recursion_misses) ${missesText(r.recursionMisses)}; loader restarts ${r.restarts}; ${initText(r.onInitThreads, "the server's events")}${restNote}`;
    const missing = p.generator.made - p.counted.client.tcp_established + (p.server.accepted - p.counted.server.tcp_established) + (p.generator.made - p.counted.client.tcp_closed) + (p.server.closed - p.counted.server.tcp_closed);
    rows.push(r.intervalSec === 60 ? judged('count.60s', metric, exact, value, 'every one', note, missing) : { ...info(`count.${r.intervalSec}s`, metric, value, note, missing), value: `${value}${exact ? ' (exact)' : ' (NOT exact)'}` });
  }
  // The per-second samples stay in the JSON, thinned to every 5th.
  const data = runs.map((r) => ({ ...r, samples: r.samples.filter((_, i) => i % 5 === 0) }));
  return { name: 'sustained', rows, data };
}
