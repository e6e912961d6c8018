// The loader's flow generations (bpf/netflow_maps.bpf.h, flow_gen), driven
// as the daemon drives it, with real sockets: a collect reports every
// generation not yet durable, a generation stays pinned across a SIGKILL of
// the loader until its collect is durable, and goes once it is.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCollectCmd, encodeFrame, forEachRecord, readField, type Frame } from '../../src/loader/frames';
import {
  DKE_CMD_COLLECT,
  DKE_CMD_COMMIT,
  DKE_CMD_RESUME,
  DKE_COLLECT_FLOWS,
  DKE_DIR_OUTGOING,
  DKE_FRAME_COLLECTED,
  DKE_FRAME_FLOWS,
  DKE_FRAME_READY,
  dke_collect_cmd,
  dke_flow_delta,
  dke_flow_key,
  dke_flow_stats,
} from '../../src/loader/layout.generated';
import { tempPinRoot, waitFor } from '../helpers/daemon';
import { startLoader, type RunningLoader } from '../helpers/loader';
import { createHostPair, runPeer, startServer, type HostPair } from '../helpers/netns';

let hosts: HostPair;

beforeAll(() => {
  hosts = createHostPair(15);
});

afterAll(() => {
  hosts?.destroy();
});

const PORT = 25611;
const REPLY = 100;

interface ClientTotals {
  bytes_sent: number;
  bytes_received: number;
  established: number;
  closed: number;
}

function command(l: RunningLoader, type: number, seq: bigint, what = 0): void {
  l.proc.stdin!.write(encodeFrame(type, encodeCollectCmd(seq, what)));
}

/** Collect `seq`; the client side of our port in what it reported. */
async function collect(l: RunningLoader, seq: bigint): Promise<ClientTotals> {
  const from = l.frames.length;
  command(l, DKE_CMD_COLLECT, seq, DKE_COLLECT_FLOWS);
  const done = (f: Frame) => f.type === DKE_FRAME_COLLECTED && BigInt(readField(f.payload, 0, dke_collect_cmd.fields.seq)) === seq;
  await waitFor(() => l.frames.slice(from).some(done) || undefined, 10_000);
  const K = dke_flow_key.fields;
  const S = dke_flow_stats.fields;
  const key = dke_flow_delta.fields.key.offset;
  const delta = dke_flow_delta.fields.delta.offset;
  const t: ClientTotals = { bytes_sent: 0, bytes_received: 0, established: 0, closed: 0 };
  for (const f of l.frames.slice(from).filter((x) => x.type === DKE_FRAME_FLOWS)) {
    forEachRecord(f, dke_flow_delta, (r) => {
      if (readField(f.payload, r + key, K.remote_port) !== PORT || readField(f.payload, r + key, K.direction) !== DKE_DIR_OUTGOING) return;
      t.bytes_sent += readField(f.payload, r + delta, S.bytes_sent);
      t.bytes_received += readField(f.payload, r + delta, S.bytes_received);
      t.established += readField(f.payload, r + delta, S.established);
      t.closed += readField(f.payload, r + delta, S.closed);
    });
  }
  return t;
}

/** `n` connections sending `bytes` each, all closed when it returns. */
const connections = (n: number, bytes: number) => runPeer(hosts.a, ['tcp-client', hosts.ipB, String(PORT), String(n), String(bytes)]);

const totals = (n: number, bytes: number): ClientTotals => ({ bytes_sent: n * bytes, bytes_received: n * REPLY, established: n, closed: n });

async function start(pin: string, durable: bigint): Promise<RunningLoader> {
  const l = await startLoader(['net', '--pin-root', pin, '--ephemeral-port', '32768']);
  expect(l.first.type).toBe(DKE_FRAME_READY);
  command(l, DKE_CMD_RESUME, durable);
  return l;
}

function kill(l: RunningLoader): Promise<unknown> {
  const exited = new Promise((r) => l.proc.once('exit', r));
  l.proc.kill('SIGKILL');
  return exited;
}

describe('flow generations', () => {
  it('reports a generation again until its collect is durable, across a SIGKILL of the loader, and then lets it go', async () => {
    const pin = tempPinRoot();
    const server = await startServer(hosts.b, ['tcp-server', hosts.ipB, String(PORT), String(REPLY)]);
    const loaders: RunningLoader[] = [];
    try {
      const first = await start(pin, 0n);
      loaders.push(first);
      await connections(2, 1000);
      expect(await collect(first, 10n)).toEqual(totals(2, 1000));
      // Collect 10's points never become durable: the loader dies before it hears of it.
      await kill(first);
      const pinDir = fs.readdirSync(pin).find((d) => d.startsWith('net-'))!;
      expect(fs.readdirSync(`${pin}/${pinDir}`)).toContain('flow_gen_10');
      // The pinned programs keep counting into the current generation meanwhile.
      await connections(3, 500);

      const second = await start(pin, 0n);
      loaders.push(second);
      expect((second.first.body.info as { mapsReused: boolean }).mapsReused).toBe(true);
      // Collect 10's generation again, with what came since.
      expect(await collect(second, 11n)).toEqual({
        bytes_sent: 2 * 1000 + 3 * 500,
        bytes_received: 5 * REPLY,
        established: 5,
        closed: 5,
      });
      command(second, DKE_CMD_COMMIT, 11n);
      expect(await collect(second, 12n)).toEqual(totals(0, 0));
      // Committed generations are let go; collect 12's stays pinned only if
      // something else on the host moved (its flows are not this test's).
      const kept = fs.readdirSync(`${pin}/${pinDir}`).filter((n) => n.startsWith('flow_gen_'));
      expect(kept.filter((n) => Number(n.slice('flow_gen_'.length)) <= 11)).toEqual([]);

      // Collect 13 is durable (the daemon spooled it) but the loader dies before the commit.
      await connections(1, 700);
      expect(await collect(second, 13n)).toEqual(totals(1, 700));
      await kill(second);
      const third = await start(pin, 13n);
      loaders.push(third);
      expect(await collect(third, 14n)).toEqual(totals(0, 0));

      // A clean stop leaves nothing pinned.
      expect(await third.stop(true)).toBe(0);
      expect(fs.existsSync(`${pin}/${pinDir}`)).toBe(false);
    } finally {
      for (const l of loaders) if (l.proc.exitCode === null && l.proc.signalCode === null) await kill(l);
      await server.stop();
      fs.rmSync(pin, { recursive: true, force: true });
    }
  });
});
