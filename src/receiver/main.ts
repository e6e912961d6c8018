#!/usr/bin/env node
// `node dist/src/receiver/main.js [--listen 127.0.0.1:9529] [--quiet]`
// Stands in for DataKit in the quick start: prints what the collector sends, one
// readable line per point on stdout (diagnostics go to stderr, so stdout can be
// piped), e.g.
//   12:00:01 network ebpf-net/netflow netflow outgoing tcp 10.0.0.5:* -> 93.184.216.34:443 curl[1234] bytes_read=5120 bytes_written=300

import type { ParsedPoint } from '../lineproto/parse';
import { startReceiver, type ReceivedWrite } from './receiver';

const USAGE = `usage: node dist/src/receiver/main.js [--listen HOST:PORT] [--quiet]

A stand-in for DataKit's HTTP API (/v1/write/:category, /v1/ping, /v1/lasterror)
that prints every point it receives. Point datakit-ebpf at it with
--datakit-apiserver HOST:PORT.

  --listen HOST:PORT  address to listen on (default 127.0.0.1:9529; [::1]:9529 for IPv6)
  --quiet             one summary line per request instead of one line per point
  -h, --help          show this help
`;

export interface CliArgs {
  host: string;
  port: number;
  quiet: boolean;
  help: boolean;
}

export function parseArgs(argv: readonly string[]): CliArgs {
  const args: CliArgs = { host: '127.0.0.1', port: 9529, quiet: false, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quiet' || a === '-q') args.quiet = true;
    else if (a === '--help' || a === '-h') args.help = true;
    else if (a === '--listen' || a.startsWith('--listen=')) {
      const v = a === '--listen' ? argv[++i] : a.slice('--listen='.length);
      if (!v) throw new Error('--listen needs HOST:PORT, e.g. --listen 127.0.0.1:9529');
      const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(v);
      const port = m ? Number(m[3]) : NaN;
      if (!m || !(port >= 0 && port <= 65535)) throw new Error(`--listen ${v}: expected HOST:PORT, e.g. 127.0.0.1:9529 or [::1]:9529`);
      args.host = m[1] ?? (m[2] || '127.0.0.1');
      args.port = port;
    } else throw new Error(`unknown argument ${a}; see --help`);
  }
  return args;
}

function clock(d: Date): string {
  return d.toTimeString().slice(0, 8);
}

function hostPort(ip: string | undefined, port: string | undefined): string {
  if (!ip) return port ? `*:${port}` : '?';
  const h = ip.includes(':') ? `[${ip}]` : ip;
  return port ? `${h}:${port}` : h;
}

function fieldText(v: ParsedPoint['fields'][string]): string {
  if (typeof v !== 'string') return String(v);
  const s = v.length > 200 ? v.slice(0, 197) + '...' : v;
  return /^[^\s"=,]+$/.test(s) ? s : JSON.stringify(s);
}

/** One human-readable line for a point: the tags that identify a flow, then every field. */
export function formatPoint(w: Pick<ReceivedWrite, 'category' | 'input' | 'receivedAt'>, p: ParsedPoint): string {
  const t = p.tags;
  const parts = [clock(w.receivedAt), w.category, w.input, p.measurement];
  if (t.direction) parts.push(t.direction);
  if (t.transport) parts.push(t.transport);
  if (t.src_ip || t.dst_ip) {
    let flow = `${hostPort(t.src_ip, t.src_port)} -> ${hostPort(t.dst_ip, t.dst_port)}`;
    if (t.dst_domain) flow += ` (${t.dst_domain})`;
    parts.push(flow);
  }
  if (t.process_name) parts.push(t.pid ? `${t.process_name}[${t.pid}]` : t.process_name);
  else if (t.pid) parts.push(`pid ${t.pid}`);
  for (const [k, v] of Object.entries(p.fields)) {
    // bash's message repeats pid/user/cmd; keep the line readable
    if (p.measurement === 'bash' && k === 'message') continue;
    parts.push(`${k}=${fieldText(v)}`);
  }
  return parts.join(' ');
}

async function main(): Promise<void> {
  let args: CliArgs;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return;
  }
  const receiver = await startReceiver({
    host: args.host,
    port: args.port,
    log: (line) => process.stderr.write(`receiver: ${line}\n`),
    onWrite: (w) => {
      if (args.quiet) {
        process.stdout.write(`${clock(w.receivedAt)} ${w.category} ${w.input}: ${w.points.length} point(s)\n`);
        return;
      }
      let out = '';
      for (const p of w.points) out += formatPoint(w, p) + '\n';
      process.stdout.write(out);
    },
  }).catch((err: NodeJS.ErrnoException) => {
    const hint =
      err.code === 'EADDRINUSE'
        ? ` (is DataKit itself running there? pick another port with --listen ${args.host}:9530 and pass the same address to --datakit-apiserver)`
        : err.code === 'EACCES'
          ? ' (ports below 1024 need root)'
          : '';
    process.stderr.write(`receiver: cannot listen on ${args.host}:${args.port}: ${err.message}${hint}\n`);
    process.exit(1);
  });
  process.stderr.write(
    `receiver: listening on ${receiver.url}; run datakit-ebpf with --datakit-apiserver ${receiver.url.replace(/^http:\/\//, '')}; Ctrl-C to stop\n`,
  );
  const stop = (): void => {
    void receiver.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (require.main === module) void main();
