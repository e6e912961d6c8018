// Nothing of ours keeps working for nobody (issue 11): programs that no
// collector reads for --orphan-timeout stop doing work, and a later start
// resumes without reporting anything twice.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../../src/receiver/receiver';
import { startDaemon, tempPinRoot, tempStateDir, waitFor, type RunningDaemon } from '../helpers/daemon';
import { createHostPair, runPeer, startServer, type HostPair } from '../helpers/netns';

let hosts: HostPair;
beforeAll(() => {
  hosts = createHostPair(8);
});
afterAll(() => {
  hosts?.destroy();
});

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : ((v as number) ?? 0));
function outgoing(rx: Receiver, port: number) {
  const pts = rx.points('netflow').filter((p) => p.tags.direction === 'outgoing' && p.tags.dst_port === String(port) && p.tags.dst_ip === hosts.ipB);
  const s = (f: string) => pts.reduce((a, p) => a + num(p.fields[f]), 0);
  return { bytes_written: s('bytes_written'), tcp_closed: s('tcp_closed') };
}

/** The ids of the programs behind the links pinned under `pin` (bpftool's view). */
function pinnedProgramIds(pin: string): number[] {
  const ids: number[] = [];
  // Directories of pins; the collector's lock (a symlink) is not one.
  for (const dir of fs.readdirSync(pin, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) {
    for (const f of fs.readdirSync(path.join(pin, dir)).filter((n) => n.startsWith('link_'))) {
      const link = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show', 'pinned', path.join(pin, dir, f)], { encoding: 'utf8' })) as { prog_id: number };
      ids.push(link.prog_id);
    }
  }
  return ids;
}

/** The programs of `ids` still loaded in the kernel, as "id name". */
function stillLoaded(ids: number[]): string[] {
  const loaded = new Map((JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' })) as { id: number; name?: string }[]).map((p) => [p.id, p.name]));
  return ids.filter((id) => loaded.has(id)).map((id) => `${id} ${loaded.get(id)}`);
}

describe('orphaned programs', () => {
  it('go quiet when no collector reads them for --orphan-timeout, and a restart reports nothing twice', async () => {
    const rx = await startReceiver({ host: '127.0.0.1', port: 0 });
    const pin = tempPinRoot();
    const state = tempStateDir();
    const args = ['--interval', '1s', '--orphan-timeout', '10s', '--state-dir', state, '--pin-root', pin];
    const port = 25801;
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(port), '10']);
    let d1: RunningDaemon | undefined = await startDaemon(`127.0.0.1:${rx.port}`, args);
    let d2: RunningDaemon | undefined;
    let ours: number[] = [];
    try {
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '2', '1000']);
      await waitFor(() => outgoing(rx, port).tcp_closed >= 2 || undefined, 10_000);
      // Delivery is at least once: a kill between DataKit's 200 and the spool's
      // ack would send that batch again. Let the ack land (not this test's subject).
      const acked = path.join(state, 'spool', 'acked');
      await waitFor(() => (fs.existsSync(acked) && Number(fs.readFileSync(acked, 'utf8')) > 0) || undefined, 5000);
      await new Promise((r) => setTimeout(r, 300));
      d1.proc.kill('SIGKILL'); // as DataKit stops an input it disables
      await new Promise((r) => d1!.proc.once('exit', r));
      d1 = undefined;
      // Right after the kill the pinned programs still count (a restart is expected).
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '1', '300']);
      expect(fs.readdirSync(pin).filter((n) => n !== 'lock').length).toBe(1);
      // Past --orphan-timeout they do nothing (and count what they skipped).
      await new Promise((r) => setTimeout(r, 11_000));
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '3', '7777']);
      d2 = await startDaemon(`127.0.0.1:${rx.port}`, args);
      ours = pinnedProgramIds(pin);
      expect(ours.length).toBeGreaterThanOrEqual(5);
      const quiet = d2.logs.find((l) => /programs were quiet for/.test(String(l.msg)));
      expect(quiet, 'the restart says how long the programs were quiet').toBeDefined();
      expect(num(quiet!.quietSeconds)).toBeGreaterThan(0);
      await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(port), '1', '50']);
      await waitFor(() => outgoing(rx, port).tcp_closed >= 4 || undefined, 10_000);
      await new Promise((r) => setTimeout(r, 2500));
      // 2x1000 before the kill, 300 while pinned, 50 after the restart; the
      // three connections of the quiet time are not reported.
      expect(outgoing(rx, port)).toEqual({ bytes_written: 2000 + 300 + 50, tcp_closed: 4 });
      const skipped = d2.logs.find((l) => (l.lost as Record<string, number> | undefined)?.orphan_skipped);
      expect(skipped, 'the skipped program runs are reported').toBeDefined();
    } finally {
      await server.stop();
      if (d1) d1.proc.kill('SIGKILL');
      if (d2) expect(await d2.stop()).toBe(0);
      await rx.close();
    }
    // A clean stop removes the pins: the programs are gone from the kernel.
    expect(fs.readdirSync(pin)).toEqual([]);
    await waitFor(() => stillLoaded(ours).length === 0 || undefined, 5000, () => `programs ${stillLoaded(ours).join(', ')} are still loaded`);
  });
});
