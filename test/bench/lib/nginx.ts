// nginx (Debian's, installed by scripts/bench) as a web server on a test host
// and ApacheBench (apache2-utils) as its clients: the short-connection
// workload users know, next to tcpgen's synthetic one. nginx runs from a
// configuration of our own in a temporary directory (one worker, no access
// log, a fixed 200 answer), never the system's.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runText, spawnJson, type JsonProc } from './spawn';
import { sleep, waitUntil } from './util';

export interface WebServer {
  pid: number;
  stop(): Promise<void>;
}

export function checkNginx(): void {
  for (const [bin, pkg] of [['nginx', 'nginx'], ['ab', 'apache2-utils']] as const) {
    try {
      execFileSync(bin, ['-V'], { stdio: 'ignore' });
    } catch {
      throw new Error(`${bin} is not installed: run the benchmark with npm run bench (scripts/bench installs ${pkg})`);
    }
  }
}

export async function startNginx(ns: string, ip: string, port: number): Promise<WebServer> {
  checkNginx();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkb-nginx-'));
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    [
      'worker_processes 1;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'events { worker_connections 8192; }',
      'http {',
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t};`),
      `  server { listen ${ip}:${port} backlog=8192; location / { return 200 "ok\\n"; } }`,
      '}',
      '',
    ].join('\n'),
  );
  const p: JsonProc = spawnJson('ip', ['netns', 'exec', ns, 'nginx', '-p', dir, '-e', `${dir}/error.log`, '-c', conf, '-g', 'daemon off;']);
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const up = await waitUntil(() => {
    if (p.proc.exitCode !== null) return null;
    try {
      return execFileSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/tcp'], { encoding: 'utf8' }).includes(`:${hexPort} 00000000:0000 0A`) || undefined;
    } catch {
      return undefined;
    }
  }, 5000);
  if (!up) {
    p.kill('SIGKILL');
    let log = '';
    try {
      log = fs.readFileSync(`${dir}/error.log`, 'utf8').slice(-500);
    } catch {
      /* none */
    }
    throw new Error(`nginx on ${ip}:${port} did not start: ${p.stderr.join(' | ')} ${log}`);
  }
  return {
    pid: p.pid,
    async stop() {
      // The master stops its worker on SIGTERM (fast shutdown).
      p.kill('SIGTERM');
      await Promise.race([p.exited, sleep(5000)]);
      p.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface AbResult {
  requestsPerSecond: number;
  complete: number;
  failed: number;
  seconds: number;
}

/** ab without keep-alive (a new connection per request), `clients` at once, for `seconds`. */
export async function ab(ns: string, url: string, seconds: number, clients = 32): Promise<AbResult> {
  // -t before -n: -t alone caps the run at 50,000 requests.
  const args = ['netns', 'exec', ns, 'ab', '-q', '-r', '-c', String(clients), '-t', String(seconds), '-n', '1000000', url];
  const { code, stdout, stderr } = await runText('ip', args, (seconds + 30) * 1000);
  const field = (re: RegExp): number => Number(re.exec(stdout)?.[1] ?? NaN);
  const res = {
    requestsPerSecond: field(/Requests per second:\s+([\d.]+)/),
    complete: field(/Complete requests:\s+(\d+)/),
    failed: field(/Failed requests:\s+(\d+)/),
    seconds: field(/Time taken for tests:\s+([\d.]+)/),
  };
  if (code !== 0 || !Number.isFinite(res.requestsPerSecond)) throw new Error(`ab ${url} failed (exit ${code}): ${stderr.slice(0, 300)} ${stdout.slice(-300)}`);
  return res;
}
