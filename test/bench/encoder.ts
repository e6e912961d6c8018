// The encoder and the uploader's batching on one core:
// line-protocol points/s and MB/s for netflow-shaped points (the aggregator's
// tag set plus host/service), through encodePoints (LineBuffer),
// encodeBatches (the uploader's 256-point / 1 MiB bodies) and the gzip the
// daemon applies to every body by default. Runs in its own process pinned
// to one CPU (taskset), so nothing else in the runner skews it.
import { execFileSync, spawnSync } from 'node:child_process';
import zlib from 'node:zlib';
import { encodePoints } from '../../src/lineproto/encode';
import type { Point } from '../../src/lineproto/point';
import { encodeBatches } from '../../src/upload/uploader';
import { info, type BenchContext, type Row, type ScenarioResult } from './lib/types';
import { round } from './lib/util';

/** Points as NetflowAggregator.flush makes them: common tags first, then the flow's. */
export function netflowPoints(n: number): Point[] {
  const ts = BigInt(Date.now()) * 1_000_000n;
  const points: Point[] = [];
  for (let i = 0; i < n; i++) {
    const incoming = i % 3 === 0;
    const local = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const remote = `172.16.${(i * 7) & 255}.${(i * 13) & 255}`;
    const sport = incoming ? String(80 + (i % 50)) : '*';
    const dport = incoming ? '*' : String(443 + (i % 50));
    const server = incoming ? { ip: local, port: sport } : { ip: remote, port: dport };
    const client = incoming ? { ip: remote, port: dport } : { ip: local, port: sport };
    points.push({
      measurement: 'netflow',
      tags: {
        host: 'bench-host-01',
        service: 'ebpf',
        source: 'netflow',
        family: 'IPv4',
        direction: incoming ? 'incoming' : 'outgoing',
        transport: 'tcp',
        src_ip: local,
        dst_ip: remote,
        src_port: sport,
        dst_port: dport,
        src_ip_type: 'private',
        dst_ip_type: 'private',
        pid: String(1000 + (i % 400)),
        process_name: ['nginx', 'java', 'node', 'postgres', 'redis-server'][i % 5]!,
        netns: '4026531840',
        dst_domain: i % 4 === 0 ? `svc-${i % 97}.example.internal` : '',
        dst_nat_ip: 'N/A',
        dst_nat_port: 'N/A',
        conn_side: incoming ? 'server' : 'client',
        client_ip: client.ip,
        client_port: client.port,
        client_ip_type: 'private',
        server_ip: server.ip,
        server_port: server.port,
        server_ip_type: 'private',
        server_domain: '',
      },
      fields: {
        bytes_read: 1000 + ((i * 7919) % 1_000_000),
        bytes_written: 500 + ((i * 104_729) % 5_000_000),
        client_sent: 500 + ((i * 104_729) % 5_000_000),
        server_sent: 1000 + ((i * 7919) % 1_000_000),
        retransmits: i % 17 === 0 ? 1 : 0,
        rtt: 80 + (i % 3000),
        rtt_var: 20 + (i % 700),
        tcp_established: i % 5,
        tcp_closed: i % 4,
      },
      timestampNs: ts,
    });
  }
  return points;
}

export interface Throughput {
  pointsPerSecond: number;
  mbPerSecond: number;
  /** Encoded bytes per point. */
  bytesPerPoint: number;
}

function timeIt(seconds: number, points: number, once: () => number): Throughput {
  // Warm-up: let V8 optimise before the clock starts.
  const warmEnd = Date.now() + Math.min(500, seconds * 250);
  while (Date.now() < warmEnd) once();
  let iterations = 0;
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  const budget = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < budget) {
    bytes += once();
    iterations++;
    elapsed = process.hrtime.bigint() - t0;
  }
  const secs = Number(elapsed) / 1e9;
  return {
    pointsPerSecond: round((iterations * points) / secs, 0),
    mbPerSecond: round(bytes / secs / 1e6, 2),
    bytesPerPoint: round(bytes / (iterations * points), 1),
  };
}

export interface EncoderData {
  points: number;
  pinnedCpu: string;
  encodePoints: Throughput;
  encodeBatches: Throughput & { batchesPerRun: number };
  gzip: Throughput & { ratio: number };
}

/** The measurement itself (runs in the pinned child). */
export function measureEncoder(seconds: number, n = 4096): Omit<EncoderData, 'pinnedCpu'> {
  const points = netflowPoints(n);
  const ep = timeIt(seconds, n, () => Buffer.byteLength(encodePoints(points)));
  let batchesPerRun = 0;
  const eb = timeIt(seconds, n, () => {
    const r = encodeBatches(points, 256, 1 << 20);
    batchesPerRun = r.batches.length;
    return r.batches.reduce((a, b) => a + b.bytes, 0);
  });
  const bodies = encodeBatches(points, 256, 1 << 20).batches.map((b) => b.body);
  const raw = bodies.reduce((a, b) => a + b.length, 0);
  const gz = bodies.reduce((a, b) => a + zlib.gzipSync(b).length, 0);
  // MB/s of input, the rate at which encoded bodies can be compressed.
  const g = timeIt(seconds, n, () => {
    for (const b of bodies) zlib.gzipSync(b);
    return raw;
  });
  return { points: n, encodePoints: ep, encodeBatches: { ...eb, batchesPerRun }, gzip: { ...g, ratio: round(raw / gz, 2) } };
}

export async function runEncoder(ctx: BenchContext): Promise<ScenarioResult> {
  const cpus = execFileSync('nproc', { encoding: 'utf8' }).trim();
  const cpu = String(Number(cpus) - 1);
  let hasTaskset = true;
  try {
    execFileSync('taskset', ['--version'], { stdio: 'ignore' });
  } catch {
    hasTaskset = false;
  }
  const argv = [process.execPath, __filename, '--measure', String(ctx.config.encoderSeconds)];
  const r = hasTaskset ? spawnSync('taskset', ['-c', cpu, ...argv], { encoding: 'utf8' }) : spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`encoder child failed: ${r.stderr}`);
  const data: EncoderData = { ...(JSON.parse(r.stdout) as Omit<EncoderData, 'pinnedCpu'>), pinnedCpu: hasTaskset ? cpu : 'not pinned (no taskset)' };
  const fmt = (t: Throughput): string => `${Math.round(t.pointsPerSecond).toLocaleString('en-US')} points/s, ${t.mbPerSecond.toFixed(1)} MB/s`;
  const rows: Row[] = [
    info('encoder.encodePoints', 'encodePoints (LineBuffer), one core', fmt(data.encodePoints), `${data.encodePoints.bytesPerPoint} bytes/point, netflow-shaped`),
    info('encoder.encodeBatches', 'encodeBatches (256 points / 1 MiB), one core', fmt(data.encodeBatches), `${data.encodeBatches.batchesPerRun} bodies per ${data.points} points`),
    info('encoder.gzip', 'gzip of the bodies (daemon default), one core', `${data.gzip.mbPerSecond.toFixed(1)} MB/s in`, `${Math.round(data.gzip.pointsPerSecond).toLocaleString('en-US')} points/s; ratio ${data.gzip.ratio}:1`),
  ];
  return { name: 'encoder', rows, data };
}

if (require.main === module && process.argv[2] === '--measure') {
  process.stdout.write(`${JSON.stringify(measureEncoder(Number(process.argv[3]) || 2))}\n`);
}
