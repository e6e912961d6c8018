// Memory: RSS of every collector process (the daemon and its dke-loader per
// plugin) idle, and while N connections between test hosts a and b stay
// open (both ends are on this machine, so the collector tracks 2N sockets),
// and the BPF maps' memory (memlock from bpftool). Descriptors per process are
// limited (RLIMIT_NOFILE; raising the hard limit needs CAP_SYS_RESOURCE,
// which our VMs lack), so the connections are spread over several client
// and server processes, one server port each. Closing them all at once at
// the end is a burst of close events: its ring-buffer drops are reported.
import { execFileSync } from 'node:child_process';
import { losses, mapInfo, telemetryDelta, type MapInfo, type Telemetry } from './lib/bpf';
import { Collector, rssText, type Role } from './lib/collector';
import { countFlows } from './lib/flows';
import { hold, startTcpServer, type Holder, type TcpServer } from './lib/tcpgen';
import { check, info, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { progress, round, sleep, waitUntil } from './lib/util';

const FIRST_PORT = 26200;
const MB = 1024 * 1024;

interface Step {
  liveConnections: number;
  /** Seconds until the receiver had all of them (both sides), undefined if not within the wait. */
  countedAfterSeconds?: number;
  counted: { outgoing: number; incoming: number };
  rssMaxBytes: number;
  /** Per process at the total's maximum. */
  rssAtMax: Record<Role, number>;
  rssEnd: Record<Role, number>;
  mapMemlockBytes: number;
  maps: MapInfo[];
}

/**
 * Start-up is not idle: the net loader holds the kernel's BTF while it loads
 * (about 16 MB, then 9), and the daemon's heap grows with compiling its
 * modules and is given back by V8's memory reducer about 8 s after start
 * (65 -> 58 MB). Idle is measured after that.
 */
const STARTUP_SETTLE_MS = 12_000;

export interface MemoryData {
  intervalSec: number;
  perProcess: number;
  /** Start-up: max over its first `windowMs` (at least STARTUP_SETTLE_MS), per process at that maximum. */
  startup: { windowMs: number; rssBytes: number; perProcess: Record<Role, number> };
  /** Idle: max over one interval once start-up settled, per process at that maximum. */
  idle: { rssBytes: number; perProcess: Record<Role, number>; mapMemlockBytes: number };
  steps: Step[];
  massClose?: { connections: number; telemetry?: Telemetry; loggedLost: Record<string, number> };
  exitCode: number | null;
}

/** Connections one process may hold: its descriptor limit (inherited from us) less some slack. */
function perProcessLimit(): number {
  const hard = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  const n = hard === 'unlimited' ? 1 << 20 : Number(hard);
  return Math.max(1000, Math.min(12_500, n - 200));
}

const mb = (b: number): string => `${(b / MB).toFixed(1)} MB`;

export async function runMemory(ctx: BenchContext): Promise<ScenarioResult> {
  const { config } = ctx;
  const perProcess = perProcessLimit();
  const servers: TcpServer[] = [];
  const holders: Holder[] = [];
  let live = 0;
  const collector = await Collector.start({ apiServer: ctx.apiServer, intervalSec: config.memoryIntervalSec, cpuProfDir: config.cpuProfDir });
  const steps: Step[] = [];
  let massClose: MemoryData['massClose'];
  let exitCode: number | null = null;
  const mapsNow = (): MapInfo[] => mapInfo(collector.bpfObjects().mapIds);
  const sumMemlock = (maps: MapInfo[]): number => maps.reduce((a, m) => a + m.memlockBytes, 0);
  let startup: MemoryData['startup'] = { windowMs: Math.max(config.memoryIntervalSec * 1000 + 1000, STARTUP_SETTLE_MS), rssBytes: 0, perProcess: {} };
  let idle: MemoryData['idle'] = { rssBytes: 0, perProcess: {}, mapMemlockBytes: 0 };
  /** Max of the total RSS over `ms`, with the per-process split at that moment. */
  const rssMaxOver = async (ms: number): Promise<Record<Role, number>> => {
    let best = collector.rssByProcess();
    const end = Date.now() + ms;
    while (Date.now() < end) {
      await sleep(250);
      const r = collector.rssByProcess();
      if (r.total! > best.total!) best = r;
    }
    return best;
  };
  try {
    const s0 = await rssMaxOver(startup.windowMs);
    startup = { ...startup, rssBytes: s0.total!, perProcess: s0 };
    const r0 = await rssMaxOver(config.memoryIntervalSec * 1000 + 500);
    idle = { rssBytes: r0.total!, perProcess: r0, mapMemlockBytes: sumMemlock(mapsNow()) };
    ctx.receiver.clear();
    for (const target of config.memorySteps) {
      progress(`memory: opening connections up to ${target}`);
      const batch: Promise<Holder>[] = [];
      while (live < target) {
        const n = Math.min(perProcess, target - live);
        const port = FIRST_PORT + servers.length;
        servers.push(await startTcpServer(ctx.hosts.b, ctx.hosts.ipB, port, 1));
        batch.push(hold(ctx.hosts.a, ctx.hosts.ipB, port, n));
        live += n;
      }
      for (const h of await Promise.all(batch)) {
        holders.push(h);
        if (h.result.failed > 0) throw new Error(`opening connections failed: ${h.result.failed} (${h.result.firstError})`);
      }
      const t0 = Date.now();
      const counted = await waitUntil(() => {
        const c = countFlows(ctx.receiver, ctx.hosts.ipB, FIRST_PORT, servers.length);
        return c.outgoingEstablished >= live && c.incomingEstablished >= live ? c : undefined;
      }, 6 * config.memoryIntervalSec * 1000, 250);
      const countedAfter = counted ? (Date.now() - t0) / 1000 : undefined;
      // Two more whole intervals with all of them live.
      const rMax = await rssMaxOver(2 * config.memoryIntervalSec * 1000 + 500);
      const r = collector.rssByProcess();
      const maps = mapsNow();
      const c = countFlows(ctx.receiver, ctx.hosts.ipB, FIRST_PORT, servers.length);
      steps.push({
        liveConnections: live,
        countedAfterSeconds: countedAfter === undefined ? undefined : round(countedAfter, 1),
        counted: { outgoing: c.outgoingEstablished, incoming: c.incomingEstablished },
        rssMaxBytes: rMax.total!,
        rssAtMax: rMax,
        rssEnd: r,
        mapMemlockBytes: sumMemlock(maps),
        maps,
      });
    }
    progress(`memory: closing ${live} connections at once`);
    const logFrom = collector.logs.length;
    const tel0 = collector.telemetry();
    await Promise.all(holders.splice(0).map((h) => h.stop()));
    await sleep(2 * config.memoryIntervalSec * 1000 + 1000);
    const tel1 = collector.telemetry();
    massClose = { connections: live, telemetry: tel0 && tel1 ? telemetryDelta(tel1, tel0) : undefined, loggedLost: collector.loggedLost(logFrom) };
  } finally {
    await Promise.all(holders.map((h) => h.stop()));
    exitCode = await collector.stop();
    for (const s of servers) await s.stop();
  }

  const rows: Row[] = [];
  rows.push(check('rss.idle', 'RSS of all collector processes, idle', idle.rssBytes / MB, '<=', 80, (v) => `${v.toFixed(1)} MB`, `${rssText(idle.perProcess)}; max over an interval once start-up settled; BPF maps ${mb(idle.mapMemlockBytes)} (memlock, not in RSS)`));
  rows.push(info('rss.startup', 'RSS of all collector processes, start-up', `${(startup.rssBytes / MB).toFixed(1)} MB`, `${rssText(startup.perProcess)}; max over the first ${Math.round(startup.windowMs / 1000)} s after start: the loaders parse the kernel's BTF, the daemon compiles its modules; V8 gives back what that took about 8 s after start`, startup.rssBytes / MB));
  const judgedStep = steps[steps.length - 1];
  for (const s of steps) {
    const top = [...s.maps].sort((a, b) => b.memlockBytes - a.memlockBytes).slice(0, 3).map((m) => `${m.name} ${mb(m.memlockBytes)}`).join(', ');
    const countedNote = s.countedAfterSeconds !== undefined ? 'all counted' : `counted only ${s.counted.outgoing}/${s.liveConnections} client, ${s.counted.incoming}/${s.liveConnections} server`;
    const note = `max over 2 intervals (--interval ${config.memoryIntervalSec}s): ${rssText(s.rssAtMax)}; ${2 * s.liveConnections} sockets tracked (${countedNote})`;
    const metric = `RSS of all collector processes, ${s.liveConnections.toLocaleString('en')} live connections`;
    rows.push(s === judgedStep ? check('rss.live', metric, s.rssMaxBytes / MB, '<=', 120, (v) => `${v.toFixed(1)} MB`, note) : info(`rss.live.${s.liveConnections}`, metric, mb(s.rssMaxBytes), note, s.rssMaxBytes / MB));
    rows.push(info(`bpfmaps.live.${s === judgedStep ? 'top' : s.liveConnections}`, `BPF map memory, ${s.liveConnections.toLocaleString('en')} live connections`, mb(s.mapMemlockBytes), `memlock; largest: ${top}`, s.mapMemlockBytes / MB));
  }
  if (massClose) {
    const lost = losses(massClose.telemetry);
    rows.push(
      info(
        'memory.massClose',
        `closing ${massClose.connections.toLocaleString('en')} connections at once: kernel-side losses`,
        Object.keys(lost).length ? JSON.stringify(lost) : 'none',
        `daemon logged: ${Object.keys(massClose.loggedLost).length ? JSON.stringify(massClose.loggedLost) : 'none'}`,
      ),
    );
  }
  const data: MemoryData = { intervalSec: config.memoryIntervalSec, perProcess, startup, idle, steps, massClose, exitCode };
  return { name: 'memory', rows, data };
}
