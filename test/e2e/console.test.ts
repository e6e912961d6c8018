// `datakit-ebpf console` end to end, as a process: real line protocol through
// the write API, every API number checked against what was sent, DataKit's
// answers to bad input, durability across SIGKILL, --forward through DataKit
// failures, and tokens. The console needs no root and no BPF.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { dataKitError, startReceiver, type Receiver } from '../../src/receiver/receiver';
import { expectMetrics, netflowLine, postAll, postLines, sampleTraffic, startConsole, sums, until, type RunningConsole } from '../helpers/console';

const running: RunningConsole[] = [];
const receivers: Receiver[] = [];
afterEach(async () => {
  for (const c of running.splice(0)) await c.kill();
  for (const r of receivers.splice(0)) await r.close();
});

async function consoleProc(extra: string[] = [], dataDir?: string): Promise<RunningConsole> {
  const c = await startConsole(extra, dataDir);
  running.push(c);
  return c;
}

const NOW = Date.now();
const MIN = 60_000;
const traffic = () => sampleTraffic(NOW);

describe('console write API and JSON API', () => {
  it('answers with exactly the numbers it was sent, on every route', async () => {
    const c = await consoleProc();
    const pts = traffic();
    await postAll(c.url, pts);
    const q = `from=${NOW - 4 * 60 * MIN}&to=${NOW + MIN}`;

    const { hosts } = await c.api<{ hosts: Record<string, unknown>[] }>(`/api/v1/hosts?${q}`);
    expect(hosts.map((h) => h.host)).toEqual(['db-1', 'web-1']);
    expectMetrics(hosts[1]!, sums(pts.filter((p) => p.host === 'web-1')));
    expect(hosts[1]!.addresses).toEqual(['10.1.0.1']);

    const net = await c.api<{ totals: Record<string, unknown>; series: Record<string, (number | null)[]>; step: number }>(`/api/v1/hosts/web-1/network?${q}&transport=tcp&direction=outgoing&step=5m`);
    const tcpOut = pts.filter((p) => p.host === 'web-1' && (p.transport ?? 'tcp') === 'tcp');
    expectMetrics(net.totals, sums(tcpOut));
    expect(net.step).toBe(5 * MIN);
    expect(net.series.bytes_written!.reduce((a, v) => a! + (v ?? 0), 0)).toBe(sums(tcpOut).bytes_written);
    // RFC 3339 works as well as Unix ms
    const rfc = await c.api<{ totals: Record<string, unknown> }>(`/api/v1/hosts/web-1/network?from=${new Date(NOW - 4 * 60 * MIN).toISOString()}&to=${new Date(NOW + MIN).toISOString()}&transport=udp`);
    expectMetrics(rfc.totals, sums(pts.filter((p) => p.transport === 'udp')));

    const conns = await c.api<{ rows: Record<string, unknown>[] }>(`/api/v1/connections?${q}&where=dst_port:443`);
    expect(conns.rows).toHaveLength(1);
    expect(conns.rows[0]).toMatchObject({ host: 'web-1', dst_ip: '93.184.216.34', dst_port: '443', process_name: 'curl', transport: 'tcp', direction: 'outgoing' });
    expectMetrics(conns.rows[0]!, sums(pts.filter((p) => p.dst_port === '443')));
    const all = await c.api<{ rows: Record<string, unknown>[]; total: number }>(`/api/v1/connections?${q}`);
    expect(all.total).toBe(4);
    expect(all.rows[0]).toMatchObject({ dst_port: '443' }); // most traffic first

    const map = await c.api<{ nodes: { id: string; kind: string; metrics: Record<string, unknown> }[]; edges: { source: string; target: string; direction: string; traffic: number }[] }>(`/api/v1/map?${q}&fill=retransmits`);
    expect(map.nodes.map((n) => [n.id, n.kind])).toEqual([['db-1', 'host'], ['web-1', 'host'], ['outside', 'outside']]);
    const edge = (s: string, t: string, d: string) => map.edges.find((e) => e.source === s && e.target === t && e.direction === d);
    const webDb = pts.filter((p) => p.host === 'web-1' && p.dst_ip === '10.1.0.2');
    expect(edge('web-1', 'db-1', 'outgoing')!.traffic).toBe(sums(webDb).bytes_read + sums(webDb).bytes_written);
    expect(edge('db-1', 'web-1', 'incoming')).toBeDefined();
    expect(edge('web-1', 'outside', 'outgoing')).toBeDefined();
    const hidden = await c.api<{ nodes: { id: string }[] }>(`/api/v1/map?${q}&outside=hide&q=db`);
    expect(hidden.nodes.map((n) => n.id)).toEqual(['db-1', 'web-1']);
  });

  it('dnsflow and bash pages: lookups, NXDOMAIN and timeouts by client and server; searchable lines', async () => {
    const c = await consoleProc();
    const ts = NOW - 10 * MIN;
    const dns = [
      `dnsflow,host=web-1,src_ip=10.1.0.1,dst_ip=10.1.0.53,src_port=*,dst_port=53,transport=udp,rcode_name=NOERROR count=9i,rcode=0i,latency=3000000i,latency_max=9000000i ${ts}`,
      `dnsflow,host=web-1,src_ip=10.1.0.1,dst_ip=10.1.0.53,src_port=*,dst_port=53,transport=udp,rcode_name=NXDOMAIN count=3i,rcode=3i,latency=1000000i,latency_max=2000000i ${ts}`,
      `dnsflow,host=db-1,src_ip=10.1.0.2,dst_ip=10.1.0.53,src_port=*,dst_port=53,transport=udp,rcode_name=TIMEOUT count=2i,rcode=-1i,latency=0i,latency_max=0i ${ts}`,
    ].join('\n');
    expect(await postLines(c.url, 'network', 'ebpf-net/dnsflow', dns, { precision: 'ms' })).toEqual({ status: 200, text: '' });
    const bash = `bash,host=web-1,service=ebpf,source=bash pid="11",user="alice",cmd="psql -h db-1",message="m1",status="info" ${ts * 1e6}\n` +
      `bash,host=db-1,service=ebpf,source=bash pid="12",user="root",cmd="for f in *; do\\necho $f; done",message="m2",status="info" ${(ts + 1000) * 1e6}\n`;
    expect(await postLines(c.url, 'logging', 'ebpf-bash', bash, { precision: 'ns' })).toEqual({ status: 200, text: '' });

    const d = await c.api<{ totals: Record<string, number>; byClient: Record<string, unknown>[]; byServer: Record<string, unknown>[] }>('/api/v1/dns');
    expect(d.totals).toMatchObject({ lookups: 14, nxdomain: 3, timeouts: 2, servfail: 0, latency_max: 9_000_000 });
    expect(d.totals.latency).toBeCloseTo((9 * 3e6 + 3 * 1e6) / 12, 6);
    expect(d.byClient.map((r) => [r.client, r.lookups, r.timeouts])).toEqual([['10.1.0.1', 12, 0], ['10.1.0.2', 2, 2]]);
    expect(d.byServer).toMatchObject([{ server: '10.1.0.53', port: '53', lookups: 14 }]);
    const dh = await c.api<{ totals: Record<string, number> }>('/api/v1/dns?host=db-1');
    expect(dh.totals.lookups).toBe(2);

    const b = await c.api<{ rows: Record<string, unknown>[]; total: number }>('/api/v1/bash');
    expect(b.rows.map((r) => [r.host, r.user, r.cmd, r.ts])).toEqual([
      ['db-1', 'root', 'for f in *; do\\necho $f; done', ts + 1000],
      ['web-1', 'alice', 'psql -h db-1', ts],
    ]);
    expect((await c.api<{ rows: unknown[] }>('/api/v1/bash?q=PSQL')).rows).toHaveLength(1);
    expect((await c.api<{ rows: unknown[] }>('/api/v1/bash?host=web-1&q=echo')).rows).toHaveLength(0);
  });

  it('bad input gets DataKit\'s status and error JSON and changes nothing stored', async () => {
    const c = await consoleProc();
    const good = traffic().slice(0, 8);
    await postAll(c.url, good);
    const before = await c.api<{ hosts: unknown[] }>('/api/v1/hosts');
    const line = netflowLine(good[0]!);
    const torn = zlib.gzipSync(Buffer.from(`${line}\n`.repeat(50))).subarray(0, 60);
    const cases: [string, Promise<{ status: number; text: string }>, number, string][] = [
      ['torn gzip', postLines(c.url, 'network', 'x', torn, { gzip: false, encoding: 'gzip' }), 400, 'datakit.invalidBody'],
      ['bad line protocol', postLines(c.url, 'network', 'x', `${line}\nnetflow,host=x bytes_read=1.5i`, { precision: 'ms' }), 400, 'datakit.invalidLinePoint'],
      ['unknown category', postLines(c.url, 'netflowz', 'x', line, { precision: 'ms' }), 400, 'datakit.invalidCategory'],
      ['bad precision', postLines(c.url, 'network', 'x', line, { precision: 'fortnight' }), 400, 'datakit.invalidPrecision'],
      ['empty body', postLines(c.url, 'network', 'x', '', { gzip: false }), 400, 'datakit.emptyBody'],
      ['100 MB body', postLines(c.url, 'network', 'x', Buffer.alloc(100 << 20, 'a'), { gzip: false }), 413, 'datakit.requestEntityTooLarge'],
      ['gzip bomb (100 MB decoded)', postLines(c.url, 'network', 'x', zlib.gzipSync(Buffer.alloc(100 << 20, 'a')), { gzip: false, encoding: 'gzip' }), 413, 'datakit.requestEntityTooLarge'],
    ];
    for (const [name, res, status, code] of cases) {
      const r = await res;
      expect(r.status, name).toBe(status);
      expect(JSON.parse(r.text), name).toMatchObject({ error_code: code, message: expect.any(String) });
    }
    expect(await c.api('/api/v1/hosts')).toEqual({ ...before, from: expect.any(Number), to: expect.any(Number) });
    const status = await c.api<{ store: { points: number } }>('/api/v1/status');
    expect(status.store.points).toBe(8);
    // ping and lasterror still work like DataKit's
    const ping = await c.api<{ content: Record<string, string> }>('/v1/ping');
    expect(Object.keys(ping.content).sort()).toEqual(['commit', 'host', 'uptime', 'version']);
    const le = await fetch(`${c.url}/v1/lasterror`, { method: 'POST', body: JSON.stringify({ input: 'ebpf', source: '', err_content: 'no BTF' }) });
    expect(le.status).toBe(200);
    expect(await c.api('/api/v1/lasterrors')).toMatchObject({ errors: [{ input: 'ebpf', errContent: 'no BTF' }] });
  });

  it('what was answered 200 survives a SIGKILL: concurrent writes, killed at once, all there after a restart', async () => {
    const c = await consoleProc();
    const pts = traffic();
    await postAll(c.url, pts, 24); // 60 requests in flight
    const status = await c.api<{ store: { commits: number; writes: number } }>('/api/v1/status');
    expect(status.store.writes).toBe(60);
    expect(status.store.commits).toBeLessThan(60); // requests shared commits
    await c.kill();
    const again = await consoleProc([], c.dataDir);
    const { hosts } = await again.api<{ hosts: Record<string, number>[] }>(`/api/v1/hosts?from=${NOW - 4 * 60 * MIN}&to=${NOW + MIN}`);
    expect(hosts.reduce((a, h) => a + h.points, 0)).toBe(pts.length);
    expectMetrics(hosts[1]!, sums(pts.filter((p) => p.host === 'web-1')));
  });

  it('--forward passes every body on unchanged, through DataKit failures and a restart', async () => {
    const dk = await startReceiver({ host: '127.0.0.1', port: 0 });
    receivers.push(dk);
    let failures = 3;
    dk.setResponder(() => (failures-- > 0 ? dataKitError(503, 'datakit.unavailable', 'starting') : undefined));
    const c = await consoleProc(['--forward', dk.url]);
    const bodies = [
      { category: 'network', input: 'ebpf-net/netflow', precision: 'ms', body: traffic().slice(0, 5).map(netflowLine).join('\n') },
      { category: 'logging', input: 'ebpf-bash', precision: 'ns', body: 'bash,host=h cmd="two\nlines",user="é" 1735689600000000000\n' },
      { category: 'network', input: 'ebpf-net/netflow', precision: 's', body: `netflow,host=h,src_ip=10.1.0.9,dst_ip=10.1.0.1,dst_port=80 bytes_read=1i ${Math.floor(NOW / 1000)}\n` },
    ];
    for (const b of bodies) expect((await postLines(c.url, b.category, b.input, b.body, { precision: b.precision })).status).toBe(200);
    // The first deliveries fail; stop the console while they are retried: the spool keeps them.
    await c.stop();
    const again = await consoleProc(['--forward', dk.url], c.dataDir);
    await until('DataKit to accept the three bodies', () => dk.writes.filter((w) => w.status === 200).length >= 3, 30_000);
    const ok = dk.writes.filter((w) => w.status === 200);
    expect(ok.map((w) => [w.category, w.input, w.precision, w.body])).toEqual(bodies.map((b) => [b.category, b.input, b.precision, b.body.endsWith('\n') ? b.body : `${b.body}\n`]));
    expect(dk.writes.filter((w) => w.status === 503)).toHaveLength(3);
    await again.stop();
  });
});

describe('console security', () => {
  const tokenFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dke-console-token-')), 'token');
  const TOKEN = 'f00dfeedcafe1234';
  fs.writeFileSync(tokenFile, `${TOKEN}\n`);

  it('with a token, the page, the API and the write API need it', async () => {
    const c = await consoleProc(['--token-file', tokenFile]);
    expect((await fetch(`${c.url}/api/v1/hosts`)).status).toBe(401);
    expect((await fetch(`${c.url}/`)).status).toBe(401);
    expect((await fetch(`${c.url}/api/v1/hosts`, { headers: { authorization: 'Bearer wrong-token' } })).status).toBe(401);
    expect((await c.api('/api/v1/hosts', TOKEN)).hosts).toEqual([]);
    // Opening the page with ?token= sets a cookie the page then uses.
    const first = await fetch(`${c.url}/?token=${TOKEN}`, { redirect: 'manual' });
    expect(first.status).toBe(303);
    const cookie = first.headers.get('set-cookie')!.split(';')[0]!;
    expect(cookie).toMatch(/^dke_console_token=/);
    expect((await fetch(`${c.url}/api/v1/hosts`, { headers: { cookie } })).status).toBe(200);
    const page = await fetch(`${c.url}/`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('datakit-ebpf console');
    // The write API takes DataKit's token parameter.
    const line = netflowLine(traffic()[0]!);
    const denied = await postLines(c.url, 'network', 'x', line, { precision: 'ms' });
    expect(denied.status).toBe(401);
    expect(JSON.parse(denied.text).error_code).toBe('datakit.invalidToken');
    expect((await postLines(c.url, 'network', 'x', line, { precision: 'ms', token: TOKEN })).status).toBe(200);
  });

  it('refuses a non-loopback address without a token, and bad flags, with one line and exit code 2', () => {
    const cli = path.resolve(__dirname, '../../dist/src/cli/main.js');
    const r = spawnSync(process.execPath, [cli, 'console', '--listen', '0.0.0.0:0', '--data', fs.mkdtempSync(path.join(os.tmpdir(), 'dke-console-'))], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/needs --token-file/);
    const bad = spawnSync(process.execPath, [cli, 'console', '--retention', '5m'], { encoding: 'utf8', timeout: 20_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/--retention 5m/);
  });
});
