// The console's benchmark (npm run bench -- console): ingest rate through the
// write API and the time of each API route over 48 hours of 20 hosts x 100
// flow keys every 30 s (11.5 M netflow points), plus the store's size on disk.
// Targets (issue 12): ingest >= 50k points/s; every route < 500 ms.
//
//   node dist/bench/test/bench/console.js [--hours 48] [--hosts 20] [--keys 100] [--concurrency 4] [--batch 2000]
//
// The console runs as its own process (the real CLI); this process generates
// collector-shaped line protocol (25 tags, 9 integer fields) and POSTs it with
// several requests in flight, so concurrent requests share commits. Results are
// printed and written to test/bench/results/console-<time>.json.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { median, repoRoot, round } from './lib/util';

interface Args {
  hours: number;
  hosts: number;
  keys: number;
  concurrency: number;
  batch: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { hours: 48, hosts: 20, keys: 100, concurrency: 4, batch: 2000 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!.replace(/^--/, '') as keyof Args;
    if (!(k in a)) throw new Error(`unknown argument ${argv[i]}; expected --hours, --hosts, --keys, --concurrency or --batch`);
    a[k] = Number(argv[++i]);
  }
  return a;
}

const STEP_MS = 30_000;

/** The tag part of each flow key's line: what a collector sends for it, every interval. */
function flowKeys(hosts: number, keys: number): string[] {
  const out: string[] = [];
  for (let h = 0; h < hosts; h++) {
    for (let k = 0; k < keys; k++) {
      const peer = (h + 1 + (k % (hosts - 1))) % hosts;
      const outgoing = k % 3 !== 0;
      const tcp = k % 5 !== 0;
      const local = `10.20.0.${h + 1}`;
      const remote = k % 4 === 0 ? `93.184.${k}.${h}` : `10.20.0.${peer + 1}`;
      const port = String([443, 80, 5432, 6379, 53][k % 5]);
      const tags = [
        `host=bench-host-${String(h).padStart(2, '0')}`, 'service=ebpf', 'source=netflow', 'family=IPv4', `direction=${outgoing ? 'outgoing' : 'incoming'}`, `transport=${tcp ? 'tcp' : 'udp'}`,
        `src_ip=${local}`, `dst_ip=${remote}`, `src_port=${outgoing ? '*' : port}`, `dst_port=${outgoing ? port : '*'}`, 'src_ip_type=private', `dst_ip_type=${k % 4 === 0 ? 'other' : 'private'}`,
        `pid=${1000 + k}`, `process_name=proc-${k % 13}`, 'netns=4026531840', 'dst_nat_ip=N/A', 'dst_nat_port=N/A', `conn_side=${outgoing ? 'client' : 'server'}`,
        `client_ip=${outgoing ? local : remote}`, 'client_port=*', 'client_ip_type=private', `server_ip=${outgoing ? remote : local}`, `server_port=${port}`, 'server_ip_type=private',
      ];
      out.push(`netflow,${tags.join(',')} `);
    }
  }
  return out;
}

function fields(i: number, k: number, tcp: boolean): string {
  const base = `bytes_read=${(i * 7 + k * 13) % 100_000}i,bytes_written=${(i * 3 + k * 11) % 20_000}i,client_sent=${k}i,server_sent=${i % 1000}i`;
  return tcp ? `${base},retransmits=${(i + k) % 17 === 0 ? 1 : 0}i,rtt=${200 + ((i * k) % 5000)}i,rtt_var=${20 + (k % 300)}i,tcp_established=${(i + k) % 3}i,tcp_closed=${(i + k) % 4 === 0 ? 1 : 0}i` : base;
}

async function startConsole(dataDir: string): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const cli = path.join(repoRoot(), 'dist/src/cli/main.js');
  const proc = spawn(process.execPath, [cli, 'console', '--listen', '127.0.0.1:0', '--data', dataDir, '--retention', '72h'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the console did not start within 30 s')), 30_000);
    readline.createInterface({ input: proc.stderr! }).on('line', (l) => {
      const m = / open (http:\/\/[^/\s]+)/.exec(l);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => reject(new Error(`the console exited with ${code}`)));
  });
  return {
    url,
    pid: proc.pid!,
    stop: () =>
      new Promise((resolve) => {
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

/** utime + stime of a process in seconds (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function du(dir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, f.name);
    n += f.isDirectory() ? du(p) : fs.statSync(p).size;
  }
  return n;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-console-bench-'));
  const c = await startConsole(dataDir);
  const keys = flowKeys(args.hosts, args.keys);
  const steps = (args.hours * 3600_000) / STEP_MS;
  const total = steps * keys.length;
  const end = Math.floor(Date.now() / STEP_MS) * STEP_MS;
  const start = end - steps * STEP_MS;
  process.stderr.write(`console bench: ${total.toLocaleString()} points (${args.hours} h x ${args.hosts} hosts x ${args.keys} keys every 30 s) through ${c.url}, ${args.concurrency} requests in flight\n`);

  // Bodies are generated as they are sent: the whole data set is gigabytes of text.
  let next = 0;
  const body = (n: number): string => {
    let s = '';
    for (let j = 0; j < args.batch && n * args.batch + j < total; j++) {
      const idx = n * args.batch + j;
      const i = Math.floor(idx / keys.length);
      const k = idx % keys.length;
      s += `${keys[k]}${fields(i, k % args.keys, (k % args.keys) % 5 !== 0)} ${start + i * STEP_MS}\n`;
    }
    return s;
  };
  const batches = Math.ceil(total / args.batch);
  const cpu0 = cpuSeconds(c.pid);
  const self0 = process.cpuUsage();
  const t0 = Date.now();
  let sent = 0;
  let lastReport = t0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const n = next++;
      if (n >= batches) return;
      const b = body(n);
      const res = await fetch(`${c.url}/v1/write/network?input=ebpf-net%2Fnetflow&precision=ms`, { method: 'POST', body: b });
      if (res.status !== 200) throw new Error(`write ${n}: HTTP ${res.status} ${await res.text()}`);
      sent += Math.min(args.batch, total - n * args.batch);
      if (Date.now() - lastReport > 10_000) {
        lastReport = Date.now();
        process.stderr.write(`  ${sent.toLocaleString()} points, ${Math.round(sent / ((Date.now() - t0) / 1000)).toLocaleString()} points/s\n`);
      }
    }
  };
  await Promise.all(Array.from({ length: args.concurrency }, worker));
  const ingestSec = (Date.now() - t0) / 1000;
  const consoleCpu = cpuSeconds(c.pid) - cpu0;
  const selfCpu = process.cpuUsage(self0);
  const clientCpu = (selfCpu.user + selfCpu.system) / 1e6;

  const from = start;
  const to = end + 1;
  const range = `from=${from}&to=${to}`;
  const routes: [string, string][] = [
    ['hosts', `/api/v1/hosts?${range}`],
    ['host network (5 min steps)', `/api/v1/hosts/bench-host-03/network?${range}`],
    ['host network tcp outgoing', `/api/v1/hosts/bench-host-03/network?${range}&transport=tcp&direction=outgoing`],
    ['host network, unaligned range', `/api/v1/hosts/bench-host-03/network?from=${from + 7 * 60_000 + 123}&to=${end - 11 * 60_000}`],
    ['connections (all hosts)', `/api/v1/connections?${range}`],
    ['connections dst_port:443', `/api/v1/connections?${range}&where=dst_port:443`],
    ['map', `/api/v1/map?${range}`],
    ['map fill=retransmits q=host-1', `/api/v1/map?${range}&fill=retransmits&q=host-1`],
    ['dns', `/api/v1/dns?${range}`],
    ['bash', `/api/v1/bash?${range}&q=ls`],
  ];
  const timed = async (p: string): Promise<number> => {
    const t = process.hrtime.bigint();
    const res = await fetch(c.url + p);
    await res.text();
    if (res.status !== 200) throw new Error(`${p}: HTTP ${res.status}`);
    return Number(process.hrtime.bigint() - t) / 1e6;
  };
  // The first query waits for the rollups of the last commits.
  const firstMs = await timed(routes[0]![1]);
  const rows: { route: string; medianMs: number; maxMs: number }[] = [];
  for (const [name, p] of routes) {
    const ms: number[] = [];
    for (let i = 0; i < 5; i++) ms.push(await timed(p));
    rows.push({ route: name, medianMs: round(median(ms), 1), maxMs: round(Math.max(...ms), 1) });
  }
  await c.stop();
  const bytes = du(dataDir);
  fs.rmSync(dataDir, { recursive: true, force: true });

  const result = {
    when: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, load: os.loadavg() },
    args,
    points: total,
    ingest: {
      seconds: round(ingestSec, 1),
      pointsPerSec: Math.round(total / ingestSec),
      consoleCpuSeconds: round(consoleCpu, 1),
      consoleCpuUsPerPoint: round((consoleCpu / total) * 1e6, 1),
      clientCpuSeconds: round(clientCpu, 1),
    },
    firstQueryMs: round(firstMs, 1),
    routes: rows,
    storeBytes: bytes,
    targets: { ingestPointsPerSec: 50_000, routeMs: 500 },
  };
  process.stdout.write(
    `\ningest: ${total.toLocaleString()} points in ${result.ingest.seconds} s = ${result.ingest.pointsPerSec.toLocaleString()} points/s (target 50,000); ` +
      `console CPU ${result.ingest.consoleCpuSeconds} s (${result.ingest.consoleCpuUsPerPoint} us/point), this client's CPU ${result.ingest.clientCpuSeconds} s; load average now ${os.loadavg()[0]!.toFixed(1)}\n`,
  );
  process.stdout.write(`store on disk: ${(bytes / 2 ** 20).toFixed(0)} MiB; first query (waits for the last rollups): ${result.firstQueryMs} ms\n\n`);
  process.stdout.write(`${'route'.padEnd(34)} ${'median ms'.padStart(10)} ${'max ms'.padStart(8)}\n`);
  for (const r of rows) process.stdout.write(`${r.route.padEnd(34)} ${String(r.medianMs).padStart(10)} ${String(r.maxMs).padStart(8)}${r.maxMs > 500 ? '  over 500 ms' : ''}\n`);
  const dir = path.join(repoRoot(), 'test/bench/results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `console-${result.when.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`\nwritten to ${path.relative(repoRoot(), file)}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`console bench failed: ${err.message}\n`);
  process.exit(1);
});
