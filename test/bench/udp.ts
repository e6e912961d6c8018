// UDP bytes with many one-datagram sockets: 150,000 new UDP sockets on test
// host a each send one datagram to one server on b within 3 s (gen/udpgen.c;
// half connect()+send(), half sendto()), at --interval 60s, DataKit's
// default. After a SIGTERM flush, netflow bytes at the receiver (client side
// bytes_written, server side bytes_read) against what was sent and what the
// server read; what is missing must show as a loss in the kernel side's
// telemetry (and the daemon's log), never silently.
import { losses, missesText, telemetryDelta, type Telemetry } from './lib/bpf';
import { Collector } from './lib/collector';
import { sumFlows, type FlowSums } from './lib/flows';
import { snmp } from '../helpers/netns';
import { startUdpServer, udpBurst, type BurstResult, type UdpServerCounts } from './lib/udpgen';
import { judged, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { progress, sleep } from './lib/util';

const PORT = 26400;
const DATAGRAM_BYTES = 100;

export interface UdpData {
  intervalSec: number;
  burst: BurstResult;
  server: UdpServerCounts;
  rcvbufErrors: number;
  counted: FlowSums;
  telemetry?: Telemetry;
  loggedLost: Record<string, number>;
  recursionMisses: Record<string, number>;
  exitCode: number | null;
}

export async function runUdp(ctx: BenchContext): Promise<ScenarioResult> {
  const { config } = ctx;
  const server = await startUdpServer(ctx.hosts.b, ctx.hosts.ipB, PORT);
  const collector = await Collector.start({ apiServer: ctx.apiServer, intervalSec: config.udpIntervalSec, cpuProfDir: config.cpuProfDir }).catch(async (err: unknown) => {
    await server.stop();
    throw err;
  });
  let data: UdpData;
  try {
    await sleep(1000);
    ctx.receiver.clear();
    const tel0 = collector.telemetry();
    const rcv0 = snmp(ctx.hosts.b, 'Udp', 'RcvbufErrors');
    progress(`udp: ${config.udpSockets} one-datagram sockets in ${config.udpSeconds} s at --interval ${config.udpIntervalSec}s`);
    const burst = await udpBurst(ctx.hosts.a, ctx.hosts.ipB, PORT, config.udpSockets, config.udpSeconds, DATAGRAM_BYTES);
    await sleep(500);
    const counts = await server.counts();
    const tel1 = collector.telemetry();
    const rcvbufErrors = snmp(ctx.hosts.b, 'Udp', 'RcvbufErrors') - rcv0;
    const exitCode = await collector.stop();
    await sleep(300);
    data = {
      intervalSec: config.udpIntervalSec,
      burst,
      server: counts,
      rcvbufErrors,
      counted: sumFlows(ctx.receiver, 'udp', ctx.hosts.ipB, PORT, 1),
      telemetry: tel0 && tel1 ? telemetryDelta(tel1, tel0) : undefined,
      loggedLost: collector.loggedLost(),
      recursionMisses: collector.missesAtStop,
      exitCode,
    };
  } finally {
    await collector.stop();
    await server.stop();
  }

  const d = data;
  const pct = (n: number, of: number): string => (of ? `${((n / of) * 100).toFixed(1)} %` : 'n/a');
  const clientMissing = d.burst.bytes - d.counted.client.bytes_written;
  const serverMissing = d.server.bytes - d.counted.server.bytes_read;
  const lost = losses(d.telemetry);
  const lostEvents = Object.values(lost).reduce((a, b) => a + b, 0);
  const logged = Object.keys(d.loggedLost).length > 0;
  const exact = clientMissing === 0 && serverMissing === 0;
  // Not exact is acceptable only if the kernel side counted and the daemon logged a loss.
  const accounted = !exact && lostEvents > 0 && logged && clientMissing >= 0 && serverMissing >= 0;
  const rows: Row[] = [
    judged(
      'udp.bytes',
      `UDP bytes, ${d.burst.sockets.toLocaleString('en')} one-datagram sockets to one server in ${config.udpSeconds} s, --interval ${d.intervalSec}s`,
      exact || accounted,
      `client side ${pct(d.counted.client.bytes_written, d.burst.bytes)}, server side ${pct(d.counted.server.bytes_read, d.server.bytes)} counted`,
      'every byte, or every loss counted and logged',
      `bytes counted/sent: client ${d.counted.client.bytes_written}/${d.burst.bytes}, server ${d.counted.server.bytes_read}/${d.server.bytes} read (${d.server.datagrams} datagrams; RcvbufErrors ${d.rcvbufErrors}); kernel losses ${Object.keys(lost).length ? JSON.stringify(lost) : 'none'}; daemon logged ${logged ? JSON.stringify(d.loggedLost) : 'nothing'}; BPF runs the kernel skipped (recursion_misses) ${missesText(d.recursionMisses)}; burst took ${d.burst.seconds.toFixed(1)} s, ${d.burst.failed} failed sends`,
      clientMissing + serverMissing,
    ),
  ];
  return { name: 'udp', rows, data: d };
}
