// The benchmark runner (npm run bench -> scripts/bench -> here). Sets up the
// test hosts and a receiver (the DataKit stand-in), runs every scenario,
// prints one table with issue 10's rows (target, met or missed, and the
// previous local result beside each value) and the details under it, and
// writes everything measured to test/bench/results/ as JSON (never committed).
//
//   node dist/bench/test/bench/run.js [--quick] [--only a,b] [--rounds N] [--sustained S] [--cpu-prof] [--strict]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startReceiver, type Receiver } from '../../src/receiver/receiver';
import { runBpfCost } from './bpf-cost';
import { summarizeChurn, churnProbe, type ChurnSample } from './churn';
import { runCpu } from './cpu';
import { summarizeDns, dnsProbe, type DnsSample } from './dns';
import { runEncoder } from './encoder';
import { runExact } from './exact';
import { runMemory } from './memory';
import { summarizeNginx, nginxProbe } from './nginx';
import { runSustained } from './sustained';
import { summarizeThroughput, throughputProbe, type ThroughputSample } from './throughput';
import { runUdp } from './udp';
import { foreignCollectorPrograms } from './lib/bpf';
import { Collector } from './lib/collector';
import { summarizeProfiles } from './lib/profile';
import { createBenchHosts, type BenchHosts } from './lib/hosts';
import type { AbResult } from './lib/nginx';
import { loadAverage, machineBusyPercent } from './lib/proc';
import { runRounds, type AbProbe, type RoundSamples } from './lib/rounds';
import { killAllChildren } from './lib/spawn';
import { genPath } from './lib/tcpgen';
import { info, type BenchConfig, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { progress, repoRoot, sleep } from './lib/util';

const SCENARIOS = ['throughput', 'churn', 'nginx', 'dns', 'bpf-cost', 'cpu', 'memory', 'udp', 'exact', 'sustained', 'encoder'] as const;
type ScenarioName = (typeof SCENARIOS)[number];
/** Measured together in the alternated rounds (one collector session serves them all). */
const ROUND_PROBES = ['throughput', 'churn', 'nginx', 'dns'] as const;

/** Issue 10's table, in its order: these rows come first, the rest are details. */
const TARGET_ROWS: { key: string; scenario: ScenarioName; what: string }[] = [
  { key: 'churn.ratio', scenario: 'churn', what: 'short-connection churn, with / without (tcpgen), --interval 1s' },
  { key: 'churn60.ratio', scenario: 'churn', what: "short-connection churn, with / without (tcpgen), --interval 60s (DataKit's default)" },
  { key: 'nginx.ratio', scenario: 'nginx', what: 'short-connection churn, with / without (nginx + ab)' },
  { key: 'churn.paused', scenario: 'churn', what: 'the same with the daemon and loaders stopped (SIGSTOP)' },
  { key: 'throughput.veth', scenario: 'throughput', what: 'bulk throughput over veth, with / without' },
  { key: 'throughput.veth1k', scenario: 'throughput', what: 'bulk throughput over veth, 1 KiB writes (both ends on one CPU), with / without' },
  { key: 'bpf.perConnection', scenario: 'bpf-cost', what: 'BPF time per short connection' },
  { key: 'bpf.perMiB', scenario: 'bpf-cost', what: 'BPF time per MiB of bulk veth traffic' },
  { key: 'cpu.rate1', scenario: 'cpu', what: 'collector CPU at 1,000 new connections/s' },
  { key: 'cpu.per10k', scenario: 'cpu', what: 'collector CPU per 10k connections above idle, at 20k conns/s' },
  { key: 'rss.idle', scenario: 'memory', what: 'RSS of all collector processes, idle' },
  { key: 'rss.live', scenario: 'memory', what: 'RSS of all collector processes, live connections' },
  { key: 'sustained.rss.10s', scenario: 'sustained', what: 'RSS under sustained churn, --interval 10s' },
  { key: 'sustained.rss.60s', scenario: 'sustained', what: 'RSS under sustained churn, --interval 60s' },
  { key: 'cpu.drops', scenario: 'cpu', what: 'ring-buffer drops at 20k conns/s' },
  { key: 'dns.ratio', scenario: 'dns', what: 'DNS lookups/s through dnsmasq, with / without' },
  { key: 'dns.cpuPerLookup', scenario: 'dns', what: 'collector CPU per DNS lookup' },
  { key: 'dns.lost', scenario: 'dns', what: 'DNS lookups lost' },
  { key: 'count.60s', scenario: 'sustained', what: 'connections counted at 17k short connections/s, --interval 60s' },
  { key: 'udp.bytes', scenario: 'udp', what: 'UDP bytes, one-datagram sockets, --interval 60s' },
  { key: 'exact.1s', scenario: 'exact', what: 'every byte, open, close and retransmit counted, --interval 1s' },
  { key: 'exact.60s', scenario: 'exact', what: 'every byte, open, close and retransmit counted, --interval 60s' },
];
const TARGET_KEYS = TARGET_ROWS.map((t) => t.key);

const FULL: BenchConfig = {
  quick: false,
  rounds: 6,
  probeSeconds: 3,
  omitSeconds: 1,
  churnSeconds: 3,
  intervalSec: 1,
  cpuIntervalSec: 10,
  cpuWindowSeconds: 20,
  rates: [1000, 20_000],
  memorySteps: [50_000, 100_000],
  memoryIntervalSec: 5,
  sustainedRate: 17_000,
  sustainedSeconds: 240,
  sustainedIntervals: [10, 60],
  countSeconds: 130,
  udpSockets: 150_000,
  udpSeconds: 3,
  udpIntervalSec: 60,
  exactRuns: [
    { intervalSec: 1, seconds: 20 },
    // Longer than one interval, so the run crosses a flush as well as the final one.
    { intervalSec: 60, seconds: 75 },
  ],
  statsRounds: 3,
  encoderSeconds: 2,
};

const QUICK: BenchConfig = {
  ...FULL,
  quick: true,
  rounds: 2,
  probeSeconds: 2,
  churnSeconds: 2,
  cpuIntervalSec: 5,
  cpuWindowSeconds: 10,
  memorySteps: [20_000],
  memoryIntervalSec: 2,
  sustainedSeconds: 45,
  countSeconds: 30,
  exactRuns: [
    { intervalSec: 1, seconds: 8 },
    { intervalSec: 60, seconds: 8 },
  ],
  statsRounds: 1,
  encoderSeconds: 1,
};

interface Args {
  config: BenchConfig;
  only: Set<ScenarioName>;
  strict: boolean;
}

function parseArgs(argv: string[]): Args {
  let config = { ...FULL };
  let only = new Set<ScenarioName>(SCENARIOS);
  let strict = false;
  let rounds: number | undefined;
  let sustained: number | undefined;
  let cpuProf = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') config = { ...QUICK };
    else if (a === '--strict') strict = true;
    else if (a === '--cpu-prof') cpuProf = true;
    else if (a === '--rounds') rounds = Number(argv[++i]);
    else if (a === '--sustained') sustained = Number(argv[++i]);
    else if (a === '--only') {
      const names = (argv[++i] ?? '').split(',').filter(Boolean);
      const bad = names.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
      if (bad.length) throw new Error(`unknown scenario(s) ${bad.join(', ')}; choose from ${SCENARIOS.join(', ')}`);
      only = new Set(names as ScenarioName[]);
    } else if (a === '-h' || a === '--help') {
      process.stdout.write(
        `usage: npm run bench -- [--quick] [--only ${SCENARIOS.join(',')}] [--rounds N] [--sustained SECONDS] [--cpu-prof] [--strict]\n` +
          '  --quick          shorter runs and fewer connections (for iterating; numbers are rougher), about 5 minutes\n' +
          '  --only a,b       run these scenarios only (see test/bench/README.md)\n' +
          '  --rounds N       alternated with/without rounds (default 6, quick 2)\n' +
          '  --sustained S    seconds of each sustained-churn run (default 240, quick 45)\n' +
          "  --cpu-prof       write V8 CPU profiles of the collector's daemon to test/bench/results/profiles-*/\n" +
          '  --strict         exit 1 when a target is missed\n',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (rounds !== undefined) {
    if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds takes a positive integer');
    config.rounds = rounds;
  }
  if (sustained !== undefined) {
    if (!Number.isFinite(sustained) || sustained < 5) throw new Error('--sustained takes seconds, at least 5');
    config.sustainedSeconds = sustained;
    config.countSeconds = Math.min(config.countSeconds, sustained);
  }
  if (cpuProf) {
    config.cpuProfDir = path.join(repoRoot(), 'test/bench/results', `profiles-${stamp()}`);
    fs.mkdirSync(config.cpuProfDir, { recursive: true });
  }
  return { config, only, strict };
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: repoRoot(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

interface Environment {
  kernel: string;
  cpus: number;
  cpuModel?: string;
  memoryBytes: number;
  node: string;
  commit: string;
  uncommittedFiles: number;
  loadAverage: number[];
  /** dke_* programs of other collectors (tests, stale pins): they run on the same hooks as ours. */
  foreignCollectorPrograms: number;
  bpfStatsEnabled: string;
}

function environment(): Environment {
  return {
    kernel: os.release(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryBytes: os.totalmem(),
    node: process.version,
    commit: git(['rev-parse', 'HEAD']),
    uncommittedFiles: git(['status', '--porcelain']).split('\n').filter(Boolean).length,
    loadAverage: loadAverage(),
    foreignCollectorPrograms: foreignCollectorPrograms([]),
    bpfStatsEnabled: fs.readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim(),
  };
}

async function openReceiver(): Promise<Receiver> {
  let last: unknown;
  for (let port = 26900; port < 26910; port++) {
    try {
      return await startReceiver({ host: '127.0.0.1', port });
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`no free receiver port in 26900-26909: ${String(last)}`);
}

function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('the benchmark loads eBPF programs and creates network namespaces: run it as root (npm run bench)');
  for (const g of ['tcpgen', 'dnsgen', 'udpgen'] as const) genPath(g);
}

const STATUS = { met: 'met', missed: 'MISSED', info: '' } as const;

function table(rows: Row[], withPrevious: boolean): string {
  const esc = (x: string | undefined): string => (x ?? '').replace(/\|/g, '\\|');
  const head = withPrevious ? '| What | Now | Previous | Target | Met | How / notes |\n|---|---|---|---|---|---|' : '| What | Now | Target | Met | How / notes |\n|---|---|---|---|---|';
  const lines = rows.map((r) =>
    withPrevious
      ? `| ${esc(r.metric)} | ${esc(r.value)} | ${esc(r.previous ?? '-')} | ${esc(r.goal)} | ${STATUS[r.status]} | ${esc(r.note)} |`
      : `| ${esc(r.metric)} | ${esc(r.value)} | ${esc(r.goal)} | ${STATUS[r.status]} | ${esc(r.note)} |`,
  );
  return [head, ...lines].join('\n');
}

interface Previous {
  file: string;
  startedAt?: string;
  quick?: boolean;
  commit?: string;
  rows: Map<string, Row>;
}

/** The last local result (latest.json), read before this run overwrites it. */
function readPrevious(dir: string): Previous | undefined {
  const file = path.join(dir, 'latest.json');
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { startedAt?: string; config?: { quick?: boolean }; environment?: { start?: { commit?: string } }; rows?: Row[] };
    const rows = new Map<string, Row>();
    for (const r of j.rows ?? []) if (r.key) rows.set(r.key, r);
    return { file, startedAt: j.startedAt, quick: j.config?.quick, commit: j.environment?.start?.commit, rows };
  } catch {
    return undefined;
  }
}

/** Pin directories of other collectors that still hold something (pinned links keep programs attached). */
function leftoverPinDirs(): string[] {
  try {
    return fs
      .readdirSync('/sys/fs/bpf')
      .filter((d) => !d.startsWith(`dkb-bench-${process.pid}-`))
      .map((d) => path.join('/sys/fs/bpf', d))
      .filter((d) => {
        try {
          return fs.statSync(d).isDirectory() && fs.readdirSync(d).length > 0;
        } catch {
          return false;
        }
      });
  } catch {
    return [];
  }
}

/** Best-effort synchronous cleanup for an interrupted run. */
function cleanupSync(hosts: BenchHosts | undefined): void {
  Collector.killAll();
  killAllChildren('SIGKILL');
  try {
    for (const d of fs.readdirSync('/sys/fs/bpf')) {
      if (d.startsWith(`dkb-bench-${process.pid}-`)) fs.rmSync(path.join('/sys/fs/bpf', d), { recursive: true, force: true });
    }
  } catch {
    /* no bpffs */
  }
  hosts?.destroy();
}

async function main(): Promise<number> {
  const { config, only, strict } = parseArgs(process.argv.slice(2));
  preflight();
  const startedAt = new Date();
  // What the rest of the machine is doing before we start: our numbers are only as quiet as this.
  const busy0 = machineBusyPercent();
  await sleep(2000);
  const env = { ...environment(), machineBusyPercentBeforeStart: Math.round(machineBusyPercent(busy0).percent) };
  progress(`${config.quick ? 'quick' : 'full'} run: ${[...only].join(', ')}; other collectors' programs loaded: ${String(env.foreignCollectorPrograms)}`);
  if (env.loadAverage[0]! >= 1.5) progress(`the machine is busy (load average ${String(env.loadAverage)}): ratios and CPU numbers will be noisy; quote a run on a quiet machine`);
  let hosts: BenchHosts | undefined;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      progress(`${sig}: cleaning up`);
      cleanupSync(hosts);
      process.exit(130);
    });
  }
  hosts = createBenchHosts();
  const receiver = await openReceiver();
  const ctx: BenchContext = { config, hosts, receiver, apiServer: `127.0.0.1:${receiver.port}` };
  const results: ScenarioResult[] = [];
  const errors: Record<string, string> = {};
  const timed = async (name: string, fn: () => Promise<ScenarioResult | ScenarioResult[]>): Promise<void> => {
    const t0 = Date.now();
    try {
      const r = await fn();
      for (const x of Array.isArray(r) ? r : [r]) results.push({ ...x, seconds: Math.round((Date.now() - t0) / 100) / 10 });
    } catch (err) {
      errors[name] = (err as Error).stack ?? String(err);
      progress(`${name} failed: ${(err as Error).message}`);
    }
  };
  try {
    const probes: AbProbe<unknown>[] = [];
    if (only.has('throughput')) probes.push(throughputProbe() as AbProbe<unknown>);
    if (only.has('churn')) probes.push(churnProbe() as AbProbe<unknown>);
    if (only.has('nginx')) probes.push(nginxProbe() as AbProbe<unknown>);
    if (only.has('dns')) probes.push(dnsProbe() as AbProbe<unknown>);
    if (probes.length) {
      await timed('rounds', async () => {
        const out = await runRounds(ctx, probes);
        const res: ScenarioResult[] = [];
        const S = out.samples;
        if (S.throughput) res.push(summarizeThroughput(S.throughput as RoundSamples<ThroughputSample>));
        if (S.churn) res.push(summarizeChurn(S.churn as RoundSamples<ChurnSample>, config.intervalSec));
        if (S.nginx) res.push(summarizeNginx(S.nginx as RoundSamples<AbResult>));
        if (S.dns) res.push(summarizeDns(S.dns as RoundSamples<DnsSample>));
        const bad = out.collectorExitCodes.filter((c) => c !== 0).length;
        res[res.length - 1]!.rows.push(
          info('rounds.collector', `collector sessions in the rounds (--interval ${config.intervalSec}s)`, `${out.collectorExitCodes.length} started, ${bad} unclean exits, ${out.loaderRestarts} loader restarts`, out.collectorProblems.length ? `warnings: ${out.collectorProblems.slice(0, 3).join(' / ')}` : undefined),
        );
        return res;
      });
    }
    // Churn again at DataKit's default interval: what most hosts run.
    if (only.has('churn')) {
      await timed('churn60', async () => {
        const out = await runRounds({ ...ctx, config: { ...config, intervalSec: 60 } }, [churnProbe('churn60', true) as AbProbe<unknown>]);
        return summarizeChurn(out.samples.churn60 as RoundSamples<ChurnSample>, 60, 'churn60');
      });
    }
    if (only.has('bpf-cost')) await timed('bpf-cost', () => runBpfCost(ctx));
    if (only.has('cpu')) await timed('cpu', () => runCpu(ctx));
    if (only.has('memory')) await timed('memory', () => runMemory(ctx));
    if (only.has('udp')) await timed('udp', () => runUdp(ctx));
    if (only.has('exact')) await timed('exact', () => runExact(ctx));
    if (only.has('sustained')) await timed('sustained', () => runSustained(ctx));
    if (only.has('encoder')) await timed('encoder', () => runEncoder(ctx));
  } finally {
    Collector.killAll();
    killAllChildren('SIGKILL');
    await receiver.close();
    hosts.destroy();
  }

  const profiles = config.cpuProfDir ? summarizeProfiles(config.cpuProfDir) : undefined;
  const finishedAt = new Date();
  const all = results.flatMap((r) => r.rows);
  if (config.cpuProfDir) all.unshift(info('profiling', 'profiling (--cpu-prof) was on', 'yes', 'the V8 profiler costs the daemon CPU: CPU and ratio rows of this run are worse than without it'));
  // A row whose scenario ran but failed is still printed, as missed.
  for (const t of TARGET_ROWS) {
    if (!only.has(t.scenario) || all.some((r) => r.key === t.key)) continue;
    const err = errors[t.scenario] ?? errors[(ROUND_PROBES as readonly string[]).includes(t.scenario) ? 'rounds' : t.scenario];
    all.push({ key: t.key, metric: t.what, value: 'not measured', status: 'missed', note: err ? `the scenario failed: ${err.split('\n')[0]}` : 'the scenario gave no value' });
  }
  const order = (r: Row): number => {
    const i = TARGET_KEYS.indexOf(r.key);
    return i >= 0 ? i : TARGET_KEYS.length;
  };
  const targets = all.filter((r) => order(r) < TARGET_KEYS.length).sort((a, b) => order(a) - order(b));
  const details = all.filter((r) => order(r) === TARGET_KEYS.length);
  const dir = path.join(repoRoot(), 'test/bench/results');
  fs.mkdirSync(dir, { recursive: true });
  const previous = readPrevious(dir);
  for (const r of all) r.previous = previous?.rows.get(r.key)?.value;
  const envEnd = { loadAverage: loadAverage(), foreignCollectorPrograms: foreignCollectorPrograms([]), bpfStatsEnabled: fs.readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() };
  const report = {
    version: 2,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationSeconds: Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000),
    config,
    environment: { start: env, end: envEnd },
    previous: previous && { file: path.relative(repoRoot(), previous.file), startedAt: previous.startedAt, quick: previous.quick, commit: previous.commit },
    rows: [...targets, ...details],
    scenarios: Object.fromEntries(results.map((r) => [r.name, r])),
    profiles,
    errors,
  };
  const file = path.join(dir, `bench-${stamp()}${config.quick ? '-quick' : ''}.json`);
  const json = JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
  fs.writeFileSync(file, json);
  fs.writeFileSync(path.join(dir, 'latest.json'), json);

  const missed = all.filter((r) => r.status === 'missed');
  const withPrev = previous !== undefined;
  const prevText = previous
    ? `Previous: ${previous.startedAt ?? '?'} (${previous.quick ? 'quick' : 'full'} run, commit ${(previous.commit ?? '?').slice(0, 8)}), from ${path.relative(repoRoot(), previous.file)} before this run replaced it.`
    : 'Previous: none (no test/bench/results/latest.json).';
  process.stdout.write(`\nIssue 10's rows\n\n${table(targets, withPrev)}\n\n${details.length ? `Details\n\n${table(details, withPrev)}\n\n` : ''}${prevText}\n`);
  const quiet = env.loadAverage[0]! < 1.5 && env.machineBusyPercentBeforeStart < 20;
  process.stdout.write(
    `${config.quick ? 'Quick' : 'Full'} run, ${report.durationSeconds} s; machine ${env.machineBusyPercentBeforeStart}% busy before start; load average ${String(env.loadAverage)} at start, ${String(envEnd.loadAverage)} at end${quiet ? '' : ' (NOT quiet: numbers are noisy)'}; ` +
      `other collectors' dke_* programs loaded: ${String(env.foreignCollectorPrograms)} at start, ${String(envEnd.foreignCollectorPrograms)} at end.\n` +
      `Targets: ${all.filter((r) => r.status === 'met').length} met, ${missed.length} missed. Results: ${path.relative(repoRoot(), file)}\n`,
  );
  if (profiles) {
    process.stdout.write(`\nCollector daemon JavaScript profile (${profiles.files} processes, ${profiles.busyMs} ms busy of ${profiles.sampledMs} ms sampled); own code, inclusive:\n`);
    for (const f of profiles.topOwn) process.stdout.write(`  ${String(f.ms).padStart(8)} ms  ${f.fn}\n`);
    process.stdout.write('self time:\n');
    for (const f of profiles.topSelf) process.stdout.write(`  ${String(f.ms).padStart(8)} ms  ${f.fn}\n`);
  }
  if (env.foreignCollectorPrograms > 0 || envEnd.foreignCollectorPrograms > 0) {
    const stale = leftoverPinDirs();
    process.stdout.write(
      `WARNING: other collectors' BPF programs were attached during this run (${env.foreignCollectorPrograms} at start, ${envEnd.foreignCollectorPrograms} at end). ` +
        `They run on the same hooks as ours, with or without our collector, so every number above includes their cost and noise` +
        `${stale.length ? `; ${stale.length} non-empty pin directories under /sys/fs/bpf (e.g. ${stale.slice(0, 3).join(', ')}) keep programs attached after their test run ended` : ''}. ` +
        `Quote numbers only from a run where both counts are 0.\n`,
    );
  }
  for (const [name, e] of Object.entries(errors)) process.stdout.write(`scenario ${name} did not complete:\n${e}\n`);
  if (Object.keys(errors).length > 0) return 1;
  return strict && missed.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    Collector.killAll();
    killAllChildren('SIGKILL');
    process.exit(1);
  },
);
