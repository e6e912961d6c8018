// DNS lookups through dnsmasq between the test hosts (resolver on b, client
// on a; gen/dnsgen.c keeps 16 lookups in flight), with the collector
// running vs not. A probe of the alternated rounds (lib/rounds.ts). With the
// collector it also measures its CPU per lookup and, after each session's
// SIGTERM flush, whether every lookup was reported: dnsflow `count` at the
// receiver (client side and resolver side) against the queries dnsgen sent,
// and the kernel side's DNS losses (telemetry dns_ringbuf_full, the loader's
// sheds from the daemon's log).
import { losses, missesText, telemetryDelta, type Telemetry } from './lib/bpf';
import type { Collector } from './lib/collector';
import { BENCH_DNS, startResolver, dnsgen, type DnsgenResult, type Resolver } from './lib/dns';
import { countDns, type DnsCounts } from './lib/flows';
import { floorRow, ratioRow, type AbProbe, type CollectorState, type RoundSamples } from './lib/rounds';
import { check, judged, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { median, round } from './lib/util';

export interface DnsSample extends DnsgenResult {
  collectorCpuSeconds?: number;
  /** Per collector process ('daemon', 'net loader', ...), CPU seconds over the run. */
  cpuByProcess?: Record<string, number>;
  telemetry?: Telemetry;
  /** After the session's SIGTERM flush, with the lookups of the whole session (its warm-up too). */
  counted?: DnsCounts;
  sessionSent?: number;
  loggedLost?: Record<string, number>;
  recursionMisses?: Record<string, number>;
}

export function dnsProbe(): AbProbe<DnsSample> {
  let resolver: Resolver | undefined;
  let sessionCollector: Collector | undefined;
  let logFrom = 0;
  return {
    name: 'dns',
    warmUp: true,
    floor: true,
    async setup(ctx) {
      resolver = await startResolver(ctx.hosts.b, ctx.hosts.ipB, BENCH_DNS.port, BENCH_DNS.answer);
    },
    async teardown() {
      await resolver?.stop();
      resolver = undefined;
    },
    async measure(ctx: BenchContext, collector: Collector | undefined, _round: number, _state: CollectorState): Promise<DnsSample> {
      if (collector !== sessionCollector) {
        // The session's first run (its warm-up): what it logs from here on is the session's.
        sessionCollector = collector;
        logFrom = collector?.logs.length ?? 0;
      }
      const cpu0 = collector?.cpuByProcess();
      const tel0 = collector?.telemetry();
      const res: DnsSample = await dnsgen(ctx.hosts.a, ctx.hosts.ipB, BENCH_DNS.port, ctx.config.churnSeconds, BENCH_DNS.inflight, BENCH_DNS.inflight);
      if (collector) {
        const cpu1 = collector.cpuByProcess();
        res.cpuByProcess = Object.fromEntries(Object.keys(cpu1).map((k) => [k, cpu1[k]! - (cpu0![k] ?? 0)]));
        res.collectorCpuSeconds = res.cpuByProcess.total;
        const tel1 = collector.telemetry();
        if (tel0 && tel1) res.telemetry = telemetryDelta(tel1, tel0);
      }
      return res;
    },
    async afterStop(ctx, samples) {
      const s = samples[0];
      if (!s) return;
      s.counted = countDns(ctx.receiver, ctx.hosts.ipB, BENCH_DNS.port);
      s.sessionSent = samples.reduce((a, x) => a + x.sent, 0);
      s.loggedLost = sessionCollector?.loggedLost(logFrom) ?? {};
      s.recursionMisses = sessionCollector?.missesAtStop ?? {};
    },
  };
}

export function summarizeDns(s: RoundSamples<DnsSample>): ScenarioResult {
  const rows: Row[] = [];
  const w = s.with.map((x) => x.rate);
  const wo = s.without.map((x) => x.rate);
  const { row, ratios, ratio } = ratioRow('dns.ratio', `DNS lookups/s through dnsmasq between test hosts, with / without (${BENCH_DNS.inflight} in flight)`, 0.9, w, wo, '/s');
  rows.push(row);
  const floor = floorRow('dns.floor', s.floor.map((x) => x.rate), wo, '/s');
  rows.push(...floor.rows);
  const perLookupUs = median(s.with.map((x) => ((x.collectorCpuSeconds ?? NaN) / x.answered) * 1e6));
  const roles = [...new Set(s.with.flatMap((x) => Object.keys(x.cpuByProcess ?? {})))].filter((k) => k !== 'total');
  const perRole = roles.map((k) => `${k} ${median(s.with.map((x) => ((x.cpuByProcess?.[k] ?? 0) / x.answered) * 1e6)).toFixed(2)}`).join(', ');
  rows.push(check('dns.cpuPerLookup', 'collector CPU per DNS lookup', perLookupUs, '<=', 2, (v) => `${v.toFixed(2)} µs`, `all collector processes over the dnsgen run, idle included (${perRole} µs); median of rounds`));

  // The sessions' lookups, warm-ups included: the receiver counted those too.
  const sent = s.with.reduce((a, x) => a + (x.sessionSent ?? 0), 0);
  const clientCounted = s.with.reduce((a, x) => a + (x.counted?.clientTotal ?? 0), 0);
  const serverCounted = s.with.reduce((a, x) => a + (x.counted?.serverTotal ?? 0), 0);
  const unanswered = s.with.reduce((a, x) => a + x.timeouts + x.unfinished, 0);
  const tel: Record<string, number> = {};
  for (const x of s.with) for (const [k, v] of Object.entries(x.telemetry ?? {})) tel[k] = (tel[k] ?? 0) + v;
  const logged: Record<string, number> = {};
  for (const x of s.with) for (const [k, v] of Object.entries(x.loggedLost ?? {})) logged[k] = (logged[k] ?? 0) + v;
  const misses: Record<string, number> = {};
  for (const x of s.with) for (const [k, v] of Object.entries(x.recursionMisses ?? {})) misses[k] = (misses[k] ?? 0) + v;
  const lostClient = sent - clientCounted;
  const lostServer = sent - serverCounted;
  const kernelLost = losses(tel);
  const ok = lostClient === 0 && lostServer === 0 && (tel.dns_ringbuf_full ?? 0) === 0;
  const pct = (n: number): string => (sent ? `${((n / sent) * 100).toFixed(2)} %` : 'n/a');
  rows.push(
    judged(
      'dns.lost',
      'DNS lookups lost (sent vs dnsflow count at the receiver)',
      ok,
      `client side ${lostClient} (${pct(lostClient)}), resolver side ${lostServer} (${pct(lostServer)}) of ${sent}`,
      'none',
      `counted ${clientCounted} client / ${serverCounted} resolver; dns_ringbuf_full ${tel.dns_ringbuf_full ?? 'n/a'}, dns_packets ${tel.dns_packets ?? 'n/a'}; kernel losses ${Object.keys(kernelLost).length ? JSON.stringify(kernelLost) : 'none'}; daemon logged ${Object.keys(logged).length ? JSON.stringify(logged) : 'none'}; BPF runs the kernel skipped in the sessions (recursion_misses) ${missesText(misses)}; unanswered by dnsmasq ${unanswered}`,
      lostClient + lostServer,
    ),
  );
  return {
    name: 'dns',
    rows,
    data: { with: s.with, without: s.without, floor: s.floor, floorRatios: floor.ratios.map((r) => round(r, 4)), ratios: ratios.map((r) => round(r, 4)), medianRatio: round(ratio, 4), cpuPerLookupUs: round(perLookupUs, 3), sent, clientCounted, serverCounted, telemetry: tel, loggedLost: logged },
  };
}
