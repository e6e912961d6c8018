// A bill that cannot explode (issue 13): a flood of distinct flow keys (a
// port scan, many UDP peers) becomes at most --max-flows points per interval
// plus one folded point per direction and transport, counted and logged,
// with every byte still in the totals.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../../src/receiver/receiver';
import { startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon';
import { createHostPair, runPeer, type HostPair } from '../helpers/netns';

let hosts: HostPair;
let receiver: Receiver;
let daemon: RunningDaemon;
const MAX_FLOWS = 10;

beforeAll(async () => {
  hosts = createHostPair(9);
  receiver = await startReceiver({ host: '127.0.0.1', port: 0 });
  daemon = await startDaemon(`127.0.0.1:${receiver.port}`, ['--max-flows', String(MAX_FLOWS), '--interval', '2s']);
});

afterAll(async () => {
  const code = daemon ? await daemon.stop() : 0;
  await receiver?.close();
  hosts?.destroy();
  expect(code).toBe(0);
});

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : ((v as number) ?? 0));

describe('--max-flows', () => {
  it('folds the flow keys beyond the cap into one point per direction and transport, keeping every byte', async () => {
    const PORTS = 40;
    const BYTES = 123;
    const spray = await runPeer(hosts.a, ['udp-spray', hosts.ipB, '31000', String(PORTS), String(BYTES)]);
    // A folded point names no process (pid '*'); nothing else in this file sends UDP.
    const mine = () => receiver.points('netflow').filter((p) => p.tags.direction === 'outgoing' && p.tags.transport === 'udp' && (p.tags.pid === String(spray.pid) || p.tags.pid === '*'));
    await waitFor(() => mine().reduce((a, p) => a + num(p.fields.bytes_written), 0) >= PORTS * BYTES || undefined, 15_000);
    const points = mine();
    const folded = points.filter((p) => p.tags.dst_port === '*' && p.tags.dst_ip === '*');
    expect(folded.length).toBeGreaterThanOrEqual(1);
    expect(points.length).toBeLessThanOrEqual(MAX_FLOWS + folded.length);
    expect(points.reduce((a, p) => a + num(p.fields.bytes_written), 0)).toBe(PORTS * BYTES);
    expect(folded[0]!.tags).toMatchObject({ direction: 'outgoing', transport: 'udp', family: 'IPv4', src_ip: '*', process_name: '*' });
    const logged = daemon.logs.find((l) => /beyond --max-flows folded/.test(String(l.msg)));
    expect(logged, 'the fold is logged').toBeDefined();
    expect(num(logged!.folded)).toBeGreaterThanOrEqual(PORTS - MAX_FLOWS);
  });
});
