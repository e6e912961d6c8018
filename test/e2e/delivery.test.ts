// Delivery that loses nothing (issue 5), end to end: real daemon, real eBPF,
// a receiver we control. In every fault the byte totals that arrive equal the
// bytes the test's own traffic moved; for a full spool, what is missing
// equals what the daemon says it dropped.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataKitError, startReceiver, type Receiver } from '../../src/receiver/receiver';
import { createHostPair, runPeer, startPeer, startServer, nextJson, type HostPair } from '../helpers/netns';
import { startDaemon, tempPinRoot, tempStateDir, waitFor, type RunningDaemon } from '../helpers/daemon';

let hosts: HostPair;

beforeAll(() => {
  hosts = createHostPair(5);
});

afterAll(() => {
  hosts?.destroy();
});

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : (v as number) ?? 0);

function outgoing(rx: Receiver, port: number) {
  const pts = rx.points('netflow').filter((p) => p.tags.direction === 'outgoing' && p.tags.dst_port === String(port) && p.tags.dst_ip === hosts.ipB);
  const s = (f: string) => pts.reduce((a, p) => a + num(p.fields[f]), 0);
  return { bytes_written: s('bytes_written'), bytes_read: s('bytes_read'), tcp_established: s('tcp_established'), tcp_closed: s('tcp_closed') };
}

/** Waits for the expected totals, then one more quiet period: nothing may arrive twice. */
async function expectExactly(rx: Receiver, port: number, want: ReturnType<typeof outgoing>, timeoutMs = 30_000) {
  await waitFor(() => (outgoing(rx, port).tcp_closed >= want.tcp_closed && outgoing(rx, port).bytes_written >= want.bytes_written) || undefined, timeoutMs);
  await new Promise((r) => setTimeout(r, 3000));
  expect(outgoing(rx, port)).toEqual(want);
}

async function freePort(): Promise<number> {
  const r = await startReceiver({ host: '127.0.0.1', port: 0 });
  const port = r.port;
  await r.close();
  return port;
}

const logged = (d: RunningDaemon, re: RegExp) => d.logs.find((l) => re.test(String(l.msg)));

describe('DataKit unavailable or refusing', () => {
  it('keeps points while DataKit is down and delivers each exactly once when it returns', async () => {
    const apiPort = await freePort();
    const daemon = await startDaemon(`127.0.0.1:${apiPort}`, ['--upload-timeout', '1s']);
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, '25501', '100']);
    let rx: Receiver | undefined;
    try {
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, '25501', '5', '1000']);
      expect(await waitFor(() => logged(daemon, /kept in the spool/), 10_000)).toBeDefined();
      await new Promise((r) => setTimeout(r, 2000)); // several failed intervals pile up
      rx = await startReceiver({ host: '127.0.0.1', port: apiPort });
      await expectExactly(rx, 25501, { bytes_written: 5000, bytes_read: 500, tcp_established: 5, tcp_closed: 5 });
      expect(logged(daemon, /accepts points again/)).toBeDefined();
    } finally {
      await server.stop();
      expect(await daemon.stop()).toBe(0);
      await rx?.close();
    }
  });

  it('retries through 500s and 429s without losing or duplicating', async () => {
    const rx = await startReceiver({ host: '127.0.0.1', port: 0 });
    const until = Date.now() + 5000;
    rx.setResponder(() => {
      const left = until - Date.now();
      if (left > 2500) return dataKitError(500, 'datakit.internalError', 'storage unavailable');
      if (left > 0) return dataKitError(429, 'datakit.reachLimit', 'too many requests');
      return undefined;
    });
    const daemon = await startDaemon(`127.0.0.1:${rx.port}`);
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, '25502', '64']);
    try {
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, '25502', '4', '2048']);
      await expectExactly(rx, 25502, { bytes_written: 8192, bytes_read: 256, tcp_established: 4, tcp_closed: 4 });
      expect(rx.writes.some((w) => w.status === 500)).toBe(true);
      expect(rx.writes.some((w) => w.status === 429)).toBe(true);
    } finally {
      await server.stop();
      expect(await daemon.stop()).toBe(0);
      await rx.close();
    }
  });

  it('isolates a point DataKit rejects with 400 and delivers the rest of its batch', async () => {
    const rx = await startReceiver({ host: '127.0.0.1', port: 0 });
    rx.setResponder((req) => (req.body.includes('dst_port=25503') ? dataKitError(400, 'datakit.invalidLinePoint', 'bad point') : undefined));
    const daemon = await startDaemon(`127.0.0.1:${rx.port}`);
    const poison = await startServer(hosts.b, ['tcp-server', hosts.ipB, '25503', '10']);
    const good = await startServer(hosts.b, ['tcp-server', hosts.ipB, '25504', '10']);
    try {
      await Promise.all([
        runPeer(hosts.a, ['tcp-client', hosts.ipB, '25503', '2', '500']),
        runPeer(hosts.a, ['tcp-client', hosts.ipB, '25504', '3', '700']),
      ]);
      await expectExactly(rx, 25504, { bytes_written: 2100, bytes_read: 30, tcp_established: 3, tcp_closed: 3 });
      expect(outgoing(rx, 25503).bytes_written).toBe(0);
      const rejected = await waitFor(() => daemon.logs.find((l) => String(l.msg).includes('DataKit rejected a point')), 10_000);
      expect(rejected).toMatchObject({ status: 400, error_code: 'datakit.invalidLinePoint' });
      expect((rejected!.sample as string[]).join('\n')).toContain('dst_port=25503');
    } finally {
      await poison.stop();
      await good.stop();
      expect(await daemon.stop()).toBe(0);
      await rx.close();
    }
  });

  it('gives up on a request slower than --upload-timeout and retries it', async () => {
    const rx = await startReceiver({ host: '127.0.0.1', port: 0 });
    let slow = 2;
    rx.setResponder((req) => (req.path.startsWith('/v1/write') && slow-- > 0 ? { status: 503, delayMs: 2500 } : undefined));
    const daemon = await startDaemon(`127.0.0.1:${rx.port}`, ['--upload-timeout', '1s']);
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, '25505', '1']);
    try {
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, '25505', '2', '333']);
      await expectExactly(rx, 25505, { bytes_written: 666, bytes_read: 2, tcp_established: 2, tcp_closed: 2 });
      expect(daemon.logs.some((l) => /did not answer within 1000ms/.test(String(l.msg)))).toBe(true);
    } finally {
      await server.stop();
      expect(await daemon.stop()).toBe(0);
      await rx.close();
    }
  });
});

describe('restarts', () => {
  it('loses and double counts nothing when the daemon is SIGKILLed mid-interval and restarted', async () => {
    const rx = await startReceiver({ host: '127.0.0.1', port: 0 });
    const state = tempStateDir();
    const pin = tempPinRoot();
    const args = ['--interval', '3s', '--state-dir', state, '--pin-root', pin];
    const port = 25506;
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '100']);
    let d1: RunningDaemon | undefined = await startDaemon(`127.0.0.1:${rx.port}`, args);
    let d2: RunningDaemon | undefined;
    try {
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '3', '1000']);
      await waitFor(() => outgoing(rx, port).tcp_closed >= 3 || undefined, 15_000);
      // A connection that lives across the kill and the restart.
      const longLived = startPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '1', '50000', '6000']);
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '2', '700']);
      await new Promise((r) => setTimeout(r, 500));
      d1.proc.kill('SIGKILL'); // mid-interval: these two connections are not sent yet
      await new Promise((r) => d1!.proc.once('exit', r));
      d1 = undefined;
      // While nothing runs, the pinned programs keep counting.
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '2', '300']);
      d2 = await startDaemon(`127.0.0.1:${rx.port}`, args);
      expect(d2.logs.some((l) => /resuming counters/.test(String(l.msg)))).toBe(true);
      await nextJson(longLived.lines, 20_000);
      await expectExactly(rx, port, { bytes_written: 3000 + 50000 + 1400 + 600, bytes_read: 800, tcp_established: 8, tcp_closed: 8 });
    } finally {
      await server.stop();
      if (d1) d1.proc.kill('SIGKILL');
      if (d2) expect(await d2.stop()).toBe(0);
      await rx.close();
    }
    // A clean stop leaves no pinned programs behind.
    expect(fs.existsSync(pin) ? fs.readdirSync(pin) : []).toEqual([]);
  });

  it('keeps counting while the loader child is SIGKILLed and restarted', async () => {
    const rx = await startReceiver({ host: '127.0.0.1', port: 0 });
    const daemon = await startDaemon(`127.0.0.1:${rx.port}`, ['--interval', '2s']);
    const port = 25507;
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '10']);
    try {
      const loaderPid = Number(daemon.logs.find((l) => String(l.msg).startsWith('datakit-ebpf started'))!.loaderPid);
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '2', '1234']);
      process.kill(loaderPid, 'SIGKILL');
      // During the restart back-off there is no loader at all.
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '3', '4321']);
      await waitFor(() => daemon.logs.find((l) => l.msg === 'eBPF loader restarted'), 15_000);
      await expectExactly(rx, port, { bytes_written: 2 * 1234 + 3 * 4321, bytes_read: 50, tcp_established: 5, tcp_closed: 5 });
    } finally {
      await server.stop();
      expect(await daemon.stop()).toBe(0);
      await rx.close();
    }
  });
});

describe('the spool', () => {
  it('when full drops the oldest points and reports exactly how many', async () => {
    const apiPort = await freePort();
    const daemon = await startDaemon(`127.0.0.1:${apiPort}`, ['--spool-max-bytes', '64K', '--upload-timeout', '1s']);
    let rx: Receiver | undefined;
    try {
      // 300 UDP flows (one datagram each to 300 ports): far more than 64K of points.
      await runPeer(hosts.a, ['udp-spray', hosts.ipB, '26000', '300', '10']);
      expect(await waitFor(() => logged(daemon, /spool is full/), 15_000)).toBeDefined();
      rx = await startReceiver({ host: '127.0.0.1', port: apiPort });
      await waitFor(() => logged(daemon, /accepts points again/), 15_000);
    } finally {
      expect(await daemon.stop()).toBe(0);
      await rx?.close();
    }
    const final = daemon.logs.find((l) => l.msg === 'collector metrics at stop')!.metrics as Record<string, number>;
    const received = rx!.points('netflow').length;
    console.info(`spool full: collected ${final.points_collected}, received ${received}, dropped ${final.spool_dropped_points}`);
    expect(final.spool_dropped_points).toBeGreaterThan(0);
    expect(final.spool_points).toBe(0);
    expect(received + final.spool_dropped_points).toBe(final.points_collected);
  });

  it('skips a torn spool file at start-up and delivers what is intact', async () => {
    const apiPort = await freePort();
    const state = tempStateDir();
    const args = ['--state-dir', state, '--upload-timeout', '1s'];
    const d1 = await startDaemon(`127.0.0.1:${apiPort}`, args);
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, '25508', '1']);
    await runPeer(hosts.a, ['tcp-client', hosts.ipB, '25508', '1', '111']);
    await new Promise((r) => setTimeout(r, 2500));
    await runPeer(hosts.a, ['tcp-client', hosts.ipB, '25508', '1', '222']);
    await new Promise((r) => setTimeout(r, 2500));
    d1.proc.kill('SIGKILL');
    await new Promise((r) => d1.proc.once('exit', r));
    await server.stop();
    // A torn write at a crash: cut the newest segment in the middle of its last record.
    const dir = path.join(state, 'spool');
    const seg = fs.readdirSync(dir).filter((f) => f.startsWith('seg-')).sort().at(-1)!;
    const size = fs.statSync(path.join(dir, seg)).size;
    fs.truncateSync(path.join(dir, seg), size - 20);

    const rx = await startReceiver({ host: '127.0.0.1', port: apiPort });
    const d2 = await startDaemon(`127.0.0.1:${apiPort}`, args);
    try {
      expect(d2.logs.some((l) => /is damaged at byte/.test(String(l.msg)))).toBe(true);
      // The first connection's record is intact and arrives; the torn one is skipped.
      await waitFor(() => outgoing(rx, 25508).bytes_written >= 111 || undefined, 15_000);
      expect(outgoing(rx, 25508).bytes_written).toBeGreaterThanOrEqual(111);
    } finally {
      expect(await d2.stop()).toBe(0);
      await rx.close();
    }
  });
});
