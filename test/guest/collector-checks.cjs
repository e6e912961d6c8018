#!/usr/bin/env node
// The collector's end-to-end checks as one plain script, so they run the same
// on this machine's kernel and inside a guest booted with another kernel
// (scripts/kernel-vm; test/e2e/kernel-6.1.test.ts runs both and compares).
// It runs the real daemon with the real eBPF programs between two network
// namespaces, moves exact byte counts, and writes what it saw and what it
// expected to <out>/results.json. It asserts nothing itself: the test does.
//
//   node test/guest/collector-checks.cjs <out dir> [<timeout scale>]
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');

const ROOT = path.join(__dirname, '..', '..');
const { startReceiver } = require(path.join(ROOT, 'dist/src/receiver/receiver.js'));
const PEER = path.join(ROOT, 'test/helpers/peer.cjs');
const DNS = path.join(ROOT, 'test/helpers/dns-server.cjs');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');

const out = process.argv[2];
const scale = Number(process.argv[3] ?? 1); // TCG runs everything 10-30x slower
const NS_A = 'dkgA';
const NS_B = 'dkgB';
const IP_A = '10.211.0.1';
const IP_B = '10.211.0.2';
const PIN = '/sys/fs/bpf/dke-checks';
const state = fs.mkdtempSync('/tmp/dke-checks-');
const results = { kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), checks: {} };
const children = [];

const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8' });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const num = (v) => (typeof v === 'bigint' ? Number(v) : (v ?? 0));

async function waitFor(probe, ms, what) {
  const end = Date.now() + ms * scale;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms * scale} ms waiting for ${what}`);
    await sleep(100);
  }
}

function hosts() {
  for (const ns of [NS_A, NS_B]) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {}
    sh('ip', ['netns', 'add', ns]);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  sh('ip', ['link', 'add', 'dkgva', 'netns', NS_A, 'type', 'veth', 'peer', 'name', 'dkgvb', 'netns', NS_B]);
  sh('ip', ['-n', NS_A, 'addr', 'add', `${IP_A}/24`, 'dev', 'dkgva']);
  sh('ip', ['-n', NS_B, 'addr', 'add', `${IP_B}/24`, 'dev', 'dkgvb']);
  sh('ip', ['-n', NS_A, 'link', 'set', 'dkgva', 'up']);
  sh('ip', ['-n', NS_B, 'link', 'set', 'dkgvb', 'up']);
}

/** A peer.cjs or dns-server.cjs process in a namespace; resolves with its first JSON line. */
function peer(ns, script, args, keep = false) {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  if (keep) children.push(proc);
  const lines = readline.createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  const first = lines.next().then((r) => JSON.parse(r.value));
  return { proc, first };
}

let daemon;
let logFile;
function startDaemon(tag) {
  logFile = path.join(out, `daemon-${tag}.log`);
  const args = ['run', '--datakit-apiserver', `127.0.0.1:${rx.port}`, '--interval', '2s', '--log', logFile, '--state-dir', path.join(state, 'state'),
    '--pin-root', PIN, '--user', 'root', '--enabled', 'ebpf-net,ebpf-bash', '--orphan-timeout', '10s', '--dns-timeout', '2s'];
  daemon = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
  return waitFor(() => logLines().find((l) => String(l.msg).startsWith('datakit-ebpf started')), 60_000, 'the daemon to start');
}
function logLines() {
  try {
    return fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}
function kill9() {
  const d = daemon;
  return new Promise((r) => {
    d.once('exit', r);
    d.kill('SIGKILL');
  });
}

let rx;
const flows = (f) => rx.points('netflow').filter((p) => f(p.tags));
const totals = (pts) => {
  const s = (k) => pts.reduce((a, p) => a + num(p.fields[k]), 0);
  return { bytes_written: s('bytes_written'), bytes_read: s('bytes_read'), tcp_established: s('tcp_established'), tcp_closed: s('tcp_closed') };
};
async function settle(f, want, what) {
  await waitFor(() => {
    const t = totals(flows(f));
    return Object.entries(want).every(([k, v]) => t[k] >= v);
  }, 30_000, what);
  await sleep(2500 * scale); // one more flush: nothing may come twice
  return totals(flows(f));
}

async function check(name, fn) {
  try {
    results.checks[name] = await fn();
  } catch (err) {
    results.checks[name] = { error: String(err.message ?? err) };
  }
  fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify(results, null, 2));
}

async function main() {
  fs.mkdirSync(out, { recursive: true });
  hosts();
  rx = await startReceiver({ host: '127.0.0.1', port: 0 });
  const started = await startDaemon('1');
  results.started = { msg: started.msg, hookSet: started.hookSet };

  await check('tcp', async () => {
    const srv = peer(NS_B, PEER, ['tcp-server', IP_B, '18080', '54321'], true);
    await srv.first;
    const cli = await peer(NS_A, PEER, ['tcp-client', IP_B, '18080', '3', '12345']).first;
    const want = { bytes_written: 3 * 12345, bytes_read: 3 * 54321, tcp_established: 3, tcp_closed: 3 };
    const got = await settle((t) => t.direction === 'outgoing' && t.dst_port === '18080' && t.pid === String(cli.pid), want, 'TCP totals');
    const server = totals(flows((t) => t.direction === 'incoming' && t.src_port === '18080'));
    const sample = flows((t) => t.direction === 'outgoing' && t.dst_port === '18080')[0];
    return { want, got, server, sample: sample && { tags: sample.tags, fields: Object.fromEntries(Object.entries(sample.fields).map(([k, v]) => [k, num(v)])) } };
  });

  await check('udp', async () => {
    const srv = peer(NS_B, PEER, ['udp-server', IP_B, '18081', '700'], true);
    await srv.first;
    const cli = await peer(NS_A, PEER, ['udp-client', IP_B, '18081', '20', '300', '700']).first;
    const want = { bytes_written: 20 * 300, bytes_read: 20 * 700 };
    const got = await settle((t) => t.direction === 'outgoing' && t.transport === 'udp' && t.dst_port === '18081' && t.pid === String(cli.pid), want, 'UDP totals');
    return { want: { ...want, tcp_established: 0, tcp_closed: 0 }, got };
  });

  await check('dns', async () => {
    const zone = JSON.stringify({ 'web.dke.test': { A: [IP_B], ttl: 60 } });
    await peer(NS_B, DNS, ['dns-server', IP_B, '53', zone], true).first;
    let answered = 0;
    for (let i = 0; i < 5; i++) {
      const o = sh('ip', ['netns', 'exec', NS_A, 'dig', `@${IP_B}`, 'web.dke.test', '+tries=1', '+timeout=3', '+nocookie']);
      if (/status: NOERROR/.test(o)) answered++;
    }
    const count = (f) => rx.points('dnsflow').filter((p) => f(p.tags)).reduce((a, p) => a + num(p.fields.count), 0);
    const client = (t) => t.conn_side === 'client' && t.dst_ip === IP_B && t.rcode_name === 'NOERROR';
    const server = (t) => t.conn_side === 'server' && t.src_ip === IP_B && t.rcode_name === 'NOERROR';
    await waitFor(() => count(client) >= answered && count(server) >= answered, 60_000, 'dnsflow counts');
    await sleep(2500 * scale);
    return { want: { answered, client: answered, server: answered }, got: { answered, client: count(client), server: count(server) } };
  });

  await check('bash', async () => {
    const sh = spawn('script', ['-qfec', '/bin/bash --norc --noprofile -i', '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'], env: { PATH: process.env.PATH, HOME: '/root', TERM: 'dumb', PS1: '[dke]> ', HISTFILE: '/dev/null', INPUTRC: '/dev/null' } });
    let screen = '';
    sh.stdout.on('data', (d) => (screen += d));
    await waitFor(() => screen.includes('[dke]> '), 20_000, 'the bash prompt');
    sh.stdin.write('echo dke-guest-line\n');
    await waitFor(() => screen.split('[dke]> ').length > 2, 20_000, 'the command to run');
    sh.stdin.write('exit\n');
    await new Promise((r) => sh.once('exit', r));
    const seen = await waitFor(() => rx.points('bash').find((p) => p.fields.cmd === 'echo dke-guest-line'), 30_000, 'the bash line');
    return { want: { cmd: 'echo dke-guest-line', user: 'root' }, got: { cmd: seen.fields.cmd, user: seen.fields.user } };
  });

  await check('sigkill', async () => {
    const srv = peer(NS_B, PEER, ['tcp-server', IP_B, '18082', '10'], true);
    await srv.first;
    const before = await peer(NS_A, PEER, ['tcp-client', IP_B, '18082', '2', '1000']).first;
    await sleep(300);
    await kill9(); // mid-interval, as DataKit stops it
    const during = await peer(NS_A, PEER, ['tcp-client', IP_B, '18082', '3', '500']).first;
    await startDaemon('2');
    const want = { bytes_written: 2 * 1000 + 3 * 500, tcp_established: 5, tcp_closed: 5 };
    const mine = (t) => t.direction === 'outgoing' && t.dst_port === '18082' && (t.pid === String(before.pid) || t.pid === String(during.pid));
    const got = await settle(mine, want, 'totals across a SIGKILL');
    return { want: { ...want, bytes_read: 50 }, got };
  });

  await check('orphan', async () => {
    await kill9();
    await sleep(12_000); // --orphan-timeout 10s (not scaled: the kernel's clock)
    const quiet = await peer(NS_A, PEER, ['tcp-client', IP_B, '18082', '1', '777']).first;
    await startDaemon('3');
    const resumed = logLines().find((l) => /programs were quiet for/.test(String(l.msg)));
    await sleep(5000 * scale);
    const reported = totals(flows((t) => t.pid === String(quiet.pid)));
    return { want: { quietLogged: true, bytes_written: 0 }, got: { quietLogged: Boolean(resumed), bytes_written: reported.bytes_written } };
  });

  await check('stop', async () => {
    // Our programs, by id: other collectors may run on this machine.
    const ids = [];
    for (const dir of fs.readdirSync(PIN).filter((n) => n.startsWith('net-'))) {
      for (const link of fs.readdirSync(path.join(PIN, dir)).filter((n) => n.startsWith('link_'))) {
        ids.push(JSON.parse(sh('bpftool', ['-j', 'link', 'show', 'pinned', path.join(PIN, dir, link)])).prog_id);
      }
    }
    const d = daemon;
    const code = await new Promise((r) => {
      d.once('exit', (c) => r(c));
      d.kill('SIGTERM');
    });
    await sleep(500);
    const loaded = new Set(JSON.parse(sh('bpftool', ['-j', 'prog', 'show'])).map((p) => p.id));
    const left = ids.filter((id) => loaded.has(id)).length;
    const pins = fs.existsSync(PIN) ? fs.readdirSync(PIN).filter((n) => n !== 'lock') : [];
    return { want: { exitCode: 0, programsLeft: 0, pins: [] }, got: { exitCode: code, programsLeft: left, pins }, programs: ids.length };
  });
}

main()
  .catch((err) => {
    results.fatal = String(err.stack ?? err);
  })
  .finally(async () => {
    fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify(results, null, 2));
    if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
    for (const c of children) c.kill('SIGTERM');
    await rx?.close();
    // A clean stop leaves the pin root with only its lock: leave no trace
    // (pins left by a failure stay, for whoever looks into it).
    try {
      if (fs.readdirSync(PIN).every((n) => n === 'lock')) fs.rmSync(PIN, { recursive: true });
    } catch {}
    for (const ns of [NS_A, NS_B]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {}
    }
    process.exit(0);
  });
