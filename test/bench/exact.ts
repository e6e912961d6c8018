// Every byte, open, close and retransmit counted: a mixed TCP workload from
// test host a to b with known totals, once at --interval 1s and once at 60s
// (DataKit's default), then run totals at the receiver (after a SIGTERM
// flush) against the ground truth: the bytes the generators wrote and read
// and the servers read and wrote, the connections made, accepted and closed,
// and the namespaces' RetransSegs (/proc/net/snmp) deltas. Retransmits come
// from iptables dropping 1 % of the packets to and from the servers. The
// workload: request/response connections (1,000 bytes up, 2,000 down) at a
// steady rate, plus a few bulk ones (4 MiB up, 256 KiB down).
import { execFileSync } from 'node:child_process';
import { losses, missesText, telemetryDelta, type Telemetry } from './lib/bpf';
import { Collector } from './lib/collector';
import { initText, startEventWitness, type EventWitness } from './lib/ftrace';
import { sumFlows, type FlowSums } from './lib/flows';
import { snmp } from '../helpers/netns';
import { churn, startTcpServer, type ChurnResult, type ServerCounts } from './lib/tcpgen';
import { judged, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { progress, sleep } from './lib/util';

const RR_PORT = 26300; // 2 ports
const BULK_PORT = 26302; // 2 ports
const DROP = '0.01';

interface Truth {
  made: number;
  accepted: number;
  clientClosed: number;
  serverClosed: number;
  clientSent: number;
  clientReceived: number;
  serverRead: number;
  serverWritten: number;
  clientRetrans: number;
  serverRetrans: number;
}

export interface ExactRun {
  intervalSec: number;
  seconds: number;
  truth: Truth;
  counted: FlowSums;
  generators: ChurnResult[];
  servers: ServerCounts[];
  telemetry?: Telemetry;
  loggedLost: Record<string, number>;
  recursionMisses: Record<string, number>;
  /** Connections of the test hosts still open or closing when the wait for them ended (0: all done before the truth was read). */
  stillOpen: number;
  /** When not exact: our hosts' TCP points outside the filter (for the diagnosis). */
  unmatched?: unknown[];
  /** Trace events of the test's sockets the kernel handled on top of pid 1's threads, where it runs none of our tracing programs (lib/ftrace.ts); null: no tracefs. */
  onInitThreads: Record<string, number> | null;
  /** Server-side sums per direction, process, pid, server port and client address. */
  serverKeys: Record<string, { points: number; established: number; closed: number; bytes_read: number }>;
  exitCode: number | null;
}

function iptables(ns: string, op: '-A' | '-D', chain: string, portFlag: '--dport' | '--sport'): void {
  execFileSync('ip', ['netns', 'exec', ns, 'iptables', op, chain, '-p', 'tcp', portFlag, `${RR_PORT}:${BULK_PORT + 1}`, '-m', 'statistic', '--mode', 'random', '--probability', DROP, '-j', 'DROP'], { stdio: 'ignore' });
}

async function runOne(ctx: BenchContext, intervalSec: number, seconds: number): Promise<ExactRun> {
  const { hosts } = ctx;
  const rrServer = await startTcpServer(hosts.b, hosts.ipB, RR_PORT, 2, 2000);
  const bulkServer = await startTcpServer(hosts.b, hosts.ipB, BULK_PORT, 2, 256 << 10);
  const collector = await Collector.start({ apiServer: ctx.apiServer, intervalSec, cpuProfDir: ctx.config.cpuProfDir }).catch(async (err: unknown) => {
    await rrServer.stop();
    await bulkServer.stop();
    throw err;
  });
  let rules = false;
  let witness: EventWitness | null = null;
  try {
    await sleep(1000);
    ctx.receiver.clear();
    witness = startEventWitness('dke-bench-exact', RR_PORT, BULK_PORT + 1);
    const tel0 = collector.telemetry();
    const retrans0 = [snmp(hosts.a, 'Tcp', 'RetransSegs'), snmp(hosts.b, 'Tcp', 'RetransSegs')];
    // Lose 1 % of the packets each way: requests and ACKs into b, answers and ACKs into a.
    iptables(hosts.b, '-A', 'INPUT', '--dport');
    iptables(hosts.a, '-A', 'INPUT', '--sport');
    rules = true;
    progress(`exact: ${seconds} s of request/response and bulk connections at --interval ${intervalSec}s, ${Number(DROP) * 100} % of packets dropped`);
    const gens = await Promise.all([
      churn({ ns: hosts.a, ip: hosts.ipB, port: RR_PORT, nports: 2, seconds, rate: 500, concurrency: 64, bytes: 1000, expectReply: true }),
      churn({ ns: hosts.a, ip: hosts.ipB, port: BULK_PORT, nports: 2, seconds, rate: 4, concurrency: 4, bytes: 4 << 20, expectReply: true }),
    ]);
    iptables(hosts.b, '-D', 'INPUT', '--dport');
    iptables(hosts.a, '-D', 'INPUT', '--sport');
    rules = false;
    // Lost FINs and last ACKs are retransmitted after the generators are done.
    const stillOpen = await ctx.hosts.settleTcp(15_000);
    await sleep(2000);
    const retrans1 = [snmp(hosts.a, 'Tcp', 'RetransSegs'), snmp(hosts.b, 'Tcp', 'RetransSegs')];
    const servers = [await rrServer.counts(), await bulkServer.counts()];
    const tel1 = collector.telemetry();
    const logged = collector.loggedLost();
    const exitCode = await collector.stop();
    await sleep(300);
    const onInitThreads = witness ? witness.stop() : null;
    const sum = <T>(xs: T[], f: (x: T) => number): number => xs.reduce((a, x) => a + f(x), 0);
    const counted = sumFlows(ctx.receiver, 'tcp', hosts.ipB, RR_PORT, 4);
    const unmatched = ctx.receiver
      .points('netflow')
      .filter((p) => p.tags.transport === 'tcp' && [p.tags.src_ip, p.tags.dst_ip].some((ip) => ip === hosts.ipA || ip === hosts.ipB))
      .filter((p) => p.tags.server_ip !== hosts.ipB || !(Number(p.tags.server_port) >= RR_PORT && Number(p.tags.server_port) < RR_PORT + 4))
      .slice(0, 50)
      .map((p) => ({ tags: p.tags, fields: p.fields }));
    // Per flow identity on the server side (for the diagnosis of a miss).
    const serverKeys: Record<string, { points: number; established: number; closed: number; bytes_read: number }> = {};
    for (const p of ctx.receiver.points('netflow')) {
      const t = p.tags;
      if (t.transport !== 'tcp' || t.server_ip !== hosts.ipB || t.direction === 'outgoing') continue;
      const k = `${t.direction}|${t.process_name ?? ''}|${t.pid ?? ''}|${t.server_port}|${t.src_ip}:${t.src_port}`;
      const e = (serverKeys[k] ??= { points: 0, established: 0, closed: 0, bytes_read: 0 });
      e.points++;
      e.established += Number(p.fields.tcp_established ?? 0);
      e.closed += Number(p.fields.tcp_closed ?? 0);
      e.bytes_read += Number(p.fields.bytes_read ?? 0);
    }
    return {
      serverKeys,
      onInitThreads,
      unmatched: unmatched.length ? unmatched : undefined,
      stillOpen,
      intervalSec,
      seconds,
      truth: {
        made: sum(gens, (g) => g.made),
        accepted: sum(servers, (s) => s.accepted),
        clientClosed: sum(gens, (g) => g.made),
        serverClosed: sum(servers, (s) => s.closed),
        clientSent: sum(gens, (g) => g.bytesSent),
        clientReceived: sum(gens, (g) => g.bytesReceived),
        serverRead: sum(servers, (s) => s.bytesRead),
        serverWritten: sum(servers, (s) => s.bytesWritten),
        clientRetrans: retrans1[0]! - retrans0[0]!,
        serverRetrans: retrans1[1]! - retrans0[1]!,
      },
      counted,
      generators: gens,
      servers,
      telemetry: tel0 && tel1 ? telemetryDelta(tel1, tel0) : undefined,
      loggedLost: logged,
      recursionMisses: collector.missesAtStop,
      exitCode,
    };
  } finally {
    witness?.stop();
    if (rules) {
      for (const [ns, flag] of [[hosts.b, '--dport'], [hosts.a, '--sport']] as const) {
        try {
          iptables(ns, '-D', 'INPUT', flag);
        } catch {
          /* gone with the namespace */
        }
      }
    }
    await collector.stop();
    await rrServer.stop();
    await bulkServer.stop();
  }
}

export async function runExact(ctx: BenchContext): Promise<ScenarioResult> {
  const runs: ExactRun[] = [];
  for (const r of ctx.config.exactRuns) runs.push(await runOne(ctx, r.intervalSec, r.seconds));
  const rows: Row[] = [];
  for (const r of runs) {
    const t = r.truth;
    const c = r.counted;
    const pairs: [string, number, number][] = [
      ['client opens', c.client.tcp_established, t.made],
      ['server opens', c.server.tcp_established, t.accepted],
      ['client closes', c.client.tcp_closed, t.clientClosed],
      ['server closes', c.server.tcp_closed, t.serverClosed],
      ['client bytes sent', c.client.bytes_written, t.clientSent],
      ['client bytes received', c.client.bytes_read, t.clientReceived],
      ['server bytes received', c.server.bytes_read, t.serverRead],
      ['server bytes sent', c.server.bytes_written, t.serverWritten],
      ['client retransmits', c.client.retransmits, t.clientRetrans],
      ['server retransmits', c.server.retransmits, t.serverRetrans],
    ];
    const off = pairs.filter(([, got, want]) => got !== want);
    const failed = r.generators.reduce((a, g) => a + g.failed, 0);
    const lost = losses(r.telemetry);
    rows.push(
      judged(
        `exact.${r.intervalSec}s`,
        `every byte, open, close and retransmit counted, --interval ${r.intervalSec}s (run totals vs ground truth)`,
        off.length === 0 && failed === 0,
        off.length === 0 ? `exact (${t.made.toLocaleString('en')} connections, ${(t.clientSent / 1048576).toFixed(0)} MiB, ${t.clientRetrans + t.serverRetrans} retransmits)` : off.map(([n, got, want]) => `${n} ${got}/${want}`).join(', '),
        'exact',
        `${r.seconds} s, ${Number(DROP) * 100} % packet loss${r.stillOpen ? `; ${r.stillOpen} connections still open or closing when counted` : ''}; counted/truth: ${pairs.map(([n, got, want]) => `${n} ${got}/${want}`).join(', ')}; generator failures ${failed}; kernel losses ${Object.keys(lost).length ? JSON.stringify(lost) : 'none'}; daemon logged ${Object.keys(r.loggedLost).length ? JSON.stringify(r.loggedLost) : 'none'}; BPF runs the kernel skipped (recursion_misses) ${missesText(r.recursionMisses)}; ${initText(r.onInitThreads, 'events of these sockets')}`,
        off.length,
      ),
    );
  }
  return { name: 'exact', rows, data: runs };
}
