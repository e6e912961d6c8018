// The console fed by the real collector (real eBPF): known TCP traffic between
// two test hosts (network namespaces), and a second host's points posted as its
// own collector would send them (one collector sees every namespace of its
// machine, so the second host cannot be a second collector here). The API must
// return exactly the bytes and connections moved, the same numbers as the
// points the collector sent (the console forwards them to a receiver we read),
// and the map must have both hosts and the edges between them.
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../../src/receiver/receiver';
import { netflowLine, postLines, startConsole, until, type RunningConsole } from '../helpers/console';
import { startDaemon, type RunningDaemon } from '../helpers/daemon';
import { createHostPair, runPeer, startServer, type HostPair } from '../helpers/netns';

// Host names sort so that the second host owns the address both report (see graph.ts: several owners -> first by name).
const COLLECTOR_HOST = `e2e-z-${os.hostname()}`;
const SECOND_HOST = 'e2e-b';
const PORT = 18120;
const K = 4;
const N = 23_456;
const M = 6_543;

let hosts: HostPair;
let dk: Receiver;
let c: RunningConsole;
let daemon: RunningDaemon;

beforeAll(async () => {
  hosts = createHostPair(12);
  dk = await startReceiver({ host: '127.0.0.1', port: 0 });
  c = await startConsole(['--forward', dk.url]);
  daemon = await startDaemon(c.url.replace('http://', ''), ['--hostname', COLLECTOR_HOST]);
});

afterAll(async () => {
  await daemon?.stop();
  await c?.stop();
  await dk?.close();
  hosts?.destroy();
});

type Row = Record<string, number | string | null>;

async function connection(where: string[]): Promise<Row | undefined> {
  const q = new URLSearchParams({ host: COLLECTOR_HOST });
  for (const w of where) q.append('where', w);
  const { rows } = await c.api<{ rows: Row[] }>(`/api/v1/connections?${q}`);
  expect(rows.length).toBeLessThanOrEqual(1);
  return rows[0];
}

describe('console with the real collector', () => {
  it('returns exactly the bytes and connections moved between two test hosts, and maps them', async () => {
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(PORT), String(M)]);
    const client = await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(PORT), String(K), String(N)]);
    expect(client.sent).toBe(K * N);
    const clientSide = ['direction:outgoing', `dst_ip:${hosts.ipB}`, `dst_port:${PORT}`, 'process_name:dke-tcp-client'];
    const serverSide = ['direction:incoming', `src_ip:${hosts.ipB}`, `src_port:${PORT}`, 'process_name:dke-tcp-server'];
    await until(
      'the collector to report every byte and close',
      async () => {
        const a = await connection(clientSide);
        const b = await connection(serverSide);
        return a && b && Number(a.tcp_closed) >= K && Number(b.tcp_closed) >= K && Number(a.bytes_written) >= K * N && Number(b.bytes_read) >= K * N;
      },
      30_000,
      250,
    );
    await server.stop();
    // A marker connection after the traffic: once its points are in, every later
    // point of the traffic would be too (the collector reports nothing in an idle
    // interval, so counting flushes would not do). Nothing may exceed what was moved.
    const marker = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(PORT + 1), '1']);
    await runPeer(hosts.a, ['tcp-client', hosts.ipB, String(PORT + 1), '1', '1']);
    await until('the marker connection to be reported', async () => Number((await connection(['direction:outgoing', `dst_ip:${hosts.ipB}`, `dst_port:${PORT + 1}`]))?.tcp_closed ?? 0) >= 1, 30_000, 250);
    await marker.stop();

    const out = (await connection(clientSide))!;
    const inc = (await connection(serverSide))!;
    expect(out).toMatchObject({ host: COLLECTOR_HOST, transport: 'tcp', src_ip: hosts.ipA, src_port: '*', bytes_written: K * N, bytes_read: K * M, tcp_established: K, tcp_closed: K });
    expect(inc).toMatchObject({ host: COLLECTOR_HOST, transport: 'tcp', dst_ip: hosts.ipA, dst_port: '*', bytes_read: K * N, bytes_written: K * M, tcp_established: K, tcp_closed: K });
    expect(Number(out.rtt)).toBeGreaterThan(0);

    // The same numbers as the points the collector sent (forwarded unchanged to `dk`).
    const sent = dk.points('netflow').filter((p) => p.tags.host === COLLECTOR_HOST && p.tags.direction === 'outgoing' && p.tags.dst_ip === hosts.ipB && p.tags.dst_port === String(PORT));
    const sum = (f: string) => sent.reduce((a, p) => a + Number(p.fields[f] ?? 0), 0);
    expect(sent.length).toBeGreaterThan(0);
    expect([sum('bytes_written'), sum('bytes_read'), sum('tcp_established'), sum('tcp_closed'), sum('retransmits')]).toEqual([out.bytes_written, out.bytes_read, out.tcp_established, out.tcp_closed, out.retransmits]);
    const rtts = sent.map((p) => Number(p.fields.rtt));
    expect(Number(out.rtt)).toBeCloseTo(rtts.reduce((a, v) => a + v, 0) / rtts.length, 6);

    // The host view of the collector's host, outgoing TCP, filtered to this flow, sums the same.
    const q = new URLSearchParams({ transport: 'tcp', direction: 'outgoing' });
    for (const w of clientSide.slice(1)) q.append('where', w);
    const view = await c.api<{ totals: Row }>(`/api/v1/hosts/${encodeURIComponent(COLLECTOR_HOST)}/network?${q}`);
    expect(view.totals).toMatchObject({ bytes_written: K * N, bytes_read: K * M, tcp_established: K, tcp_closed: K });

    // The second host: its own collector would report the server side of the same connections.
    const ts = Date.now() * 1e6;
    const second = netflowLine({ host: SECOND_HOST, src_ip: hosts.ipB, src_port: String(PORT), dst_ip: hosts.ipA, dst_port: '*', direction: 'incoming', process_name: 'dke-tcp-server', ts, fields: { bytes_read: K * N, bytes_written: K * M, tcp_established: K, tcp_closed: K, retransmits: 0, rtt: 100, rtt_var: 10 } });
    expect(await postLines(c.url, 'network', 'ebpf-net/netflow', `${second}\n`, { precision: 'ns' })).toEqual({ status: 200, text: '' });

    const map = await c.api<{ nodes: { id: string; kind: string; addresses: string[]; metrics: Row }[]; edges: { source: string; target: string; direction: string; traffic: number; metrics: Row }[] }>('/api/v1/map?outside=hide');
    const ids = map.nodes.map((n) => n.id);
    expect(ids).toContain(COLLECTOR_HOST);
    expect(ids).toContain(SECOND_HOST);
    expect(map.nodes.find((n) => n.id === COLLECTOR_HOST)!.addresses).toContain(hosts.ipA);
    const there = map.edges.find((e) => e.source === COLLECTOR_HOST && e.target === SECOND_HOST && e.direction === 'outgoing');
    const back = map.edges.find((e) => e.source === SECOND_HOST && e.target === COLLECTOR_HOST && e.direction === 'incoming');
    // The edge holds every flow from the collector's host to the second host's address: the traffic and the marker (1 byte each way).
    expect(there?.metrics).toMatchObject({ bytes_written: K * N + 1, bytes_read: K * M + 1, tcp_established: K + 1, tcp_closed: K + 1 });
    expect(there?.traffic).toBe(K * (N + M) + 2);
    expect(back?.metrics).toMatchObject({ bytes_read: K * N, bytes_written: K * M, tcp_established: K });
  });
});
