// `datakit-ebpf console [flags]`: flags, then the store, the forwarder and the
// server, with signals wired to their close()/destroy() here.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CollectorError } from '../errors';
import { dialUrl, goDurationNs, parseApiServer, parseByteSize } from '../config/values';
import { createLogger } from '../daemon/logger';
import type { LogLevel } from '../config/types';
import { Forwarder } from './forward';
import { ConsoleServer, isLoopbackAddress } from './server';
import { Store } from './store';

export const CONSOLE_USAGE = `usage: datakit-ebpf console [flags]

A local network console: a DataKit-compatible write API (point collectors'
--datakit-apiserver at it) that keeps every point in an embedded store, and a
web page with the host network view, connection analysis, network map, DNS and
bash pages, plus their JSON API, on the same port.

  --listen HOST:PORT   address (default 127.0.0.1:9530; any non-loopback address needs --token-file)
  --data DIR           where the store lives (default /var/lib/datakit-ebpf-console as root, else ~/.datakit-ebpf-console)
  --retention DUR      keep points this long (default 48h)
  --forward URL        also pass every write on to this DataKit, unchanged (spooled, retried), e.g. http://127.0.0.1:9529
  --token-file FILE    a token (first line) the page, the API and the write API then require
  --max-body SIZE      largest write body, decoded (default 64M)
  --log FILE|stdout|stderr  (default stderr)
  --log-level LEVEL    debug, info, warn, error (default info)
  -h, --help           this help
`;

export interface ConsoleArgs {
  host: string;
  port: number;
  dataDir: string;
  retentionMs: number;
  forward?: string;
  tokenFile?: string;
  maxBodyBytes: number;
  log: string;
  logLevel: LogLevel;
  help: boolean;
}

function bad(message: string): CollectorError {
  return new CollectorError('CONFIG_INVALID', message);
}

export function defaultDataDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/datakit-ebpf-console' : path.join(os.homedir(), '.datakit-ebpf-console');
}

export function parseConsoleArgs(argv: readonly string[]): ConsoleArgs {
  const a: ConsoleArgs = { host: '127.0.0.1', port: 9530, dataDir: defaultDataDir(), retentionMs: 48 * 3600_000, maxBodyBytes: 64 << 20, log: 'stderr', logLevel: 'info', help: false };
  for (let i = 0; i < argv.length; i++) {
    let flag = argv[i]!;
    let value: string | undefined;
    const eq = flag.indexOf('=');
    if (flag.startsWith('--') && eq > 0) {
      value = flag.slice(eq + 1);
      flag = flag.slice(0, eq);
    }
    if (flag === '-h' || flag === '--help') {
      a.help = true;
      continue;
    }
    const val = (): string => {
      const v = value ?? argv[++i];
      if (v === undefined || v === '') throw bad(`${flag} needs a value; see datakit-ebpf console --help`);
      return v;
    };
    switch (flag) {
      case '--listen': {
        const v = val();
        const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(v);
        const port = m ? Number(m[3]) : NaN;
        if (!m || !(port >= 0 && port <= 65535)) throw bad(`--listen ${v}: expected HOST:PORT, e.g. 127.0.0.1:9530 or [::1]:9530`);
        a.host = m[1] ?? (m[2] || '127.0.0.1');
        a.port = port;
        break;
      }
      case '--data':
        a.dataDir = path.resolve(val());
        break;
      case '--retention': {
        const v = val();
        const ns = goDurationNs(v);
        if (ns === undefined || ns < 3600e9) throw bad(`--retention ${v}: expected a duration of at least 1h, such as 48h or 168h`);
        a.retentionMs = ns / 1e6;
        break;
      }
      case '--forward':
        a.forward = dialUrl(parseApiServer(val(), '--forward'));
        break;
      case '--token-file':
        a.tokenFile = val();
        break;
      case '--max-body':
        a.maxBodyBytes = parseByteSize(val(), '--max-body');
        break;
      case '--log':
        a.log = val();
        break;
      case '--log-level': {
        const v = val() as LogLevel;
        if (!['debug', 'info', 'warn', 'error'].includes(v)) throw bad(`--log-level ${v}: expected debug, info, warn or error`);
        a.logLevel = v;
        break;
      }
      default:
        throw bad(`unknown flag ${flag}; see datakit-ebpf console --help`);
    }
  }
  return a;
}

/** The token of --token-file (its first line); a missing or empty file is an error. */
export function readToken(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw bad(`--token-file ${file}: ${(err as Error).message}`);
  }
  const token = text.split('\n')[0]!.trim();
  if (token.length < 8) throw bad(`--token-file ${file}: the first line must hold a token of at least 8 characters (e.g. from: openssl rand -hex 16)`);
  return token;
}

/** Runs the console until SIGINT/SIGTERM; returns an exit code only when it could not start. */
export async function runConsole(argv: readonly string[]): Promise<number> {
  let args: ConsoleArgs;
  let token: string | undefined;
  try {
    args = parseConsoleArgs(argv);
    if (args.help) {
      process.stdout.write(CONSOLE_USAGE);
      return 0;
    }
    if (args.tokenFile) token = readToken(args.tokenFile);
    if (!token && !isLoopbackAddress(args.host)) {
      throw bad(`--listen ${args.host}: the console shows typed bash commands; on an address other than loopback it needs --token-file`);
    }
  } catch (err) {
    process.stderr.write(`datakit-ebpf console: ${(err as Error).message}\n`);
    return 2;
  }
  const log = createLogger(args.log, args.logLevel);
  const store = new Store({ dir: args.dataDir, retentionMs: args.retentionMs });
  let forwarder: Forwarder | undefined;
  try {
    await store.open();
  } catch (err) {
    process.stderr.write(`datakit-ebpf console: cannot open the store in ${args.dataDir}: ${(err as Error).message} (is another console using it? pick another --data)\n`);
    return 1;
  }
  if (args.forward) {
    forwarder = new Forwarder({ url: args.forward, dataDir: args.dataDir, log });
    forwarder.open();
  }
  const server = new ConsoleServer({ host: args.host, port: args.port, store, log, forwarder, token, maxBodyBytes: args.maxBodyBytes, version: `console-${process.env.npm_package_version ?? '0.1'}` });
  try {
    await server.listen();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const hint = e.code === 'EADDRINUSE' ? ` (another console, or DataKit? pick another port with --listen ${args.host}:9531)` : '';
    process.stderr.write(`datakit-ebpf console: cannot listen on ${args.host}:${args.port}: ${e.message}${hint}\n`);
    await store.close();
    return 1;
  }
  const apiServer = server.url.replace(/^http:\/\//, '');
  log.info({ url: server.url, data: args.dataDir, forward: args.forward }, `console listening on ${server.url}`);
  process.stderr.write(
    `datakit-ebpf console: open ${server.url}/${token ? '?token=<token>' : ''}; collectors: --datakit-apiserver ${isLoopbackAddress(args.host) ? apiServer : `http://${apiServer}?token=<token>`}\n`,
  );

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      store.destroy();
      forwarder?.destroy();
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'console stopping');
    const force = setTimeout(() => {
      store.destroy();
      process.exit(1);
    }, 15_000);
    force.unref();
    void (async () => {
      await server.close();
      await forwarder?.drain(3000);
      await forwarder?.close();
      await store.close();
      process.exit(0);
    })();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  return -1;
}
