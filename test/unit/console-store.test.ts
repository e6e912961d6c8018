// The console's store with a real DuckDB in a temporary directory: every API
// number equals the one computed from the raw points for any range (rollups are
// exact), concurrent writes share commits, retention and reopening keep that.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ParsedPoint } from '../../src/lineproto/parse';
import { HOUR, MINUTE, METRICS, type Metrics } from '../../src/console/plan';
import { Queries } from '../../src/console/queries';
import { Store } from '../../src/console/store';
import { SeriesIds, compactWrite } from '../../src/console/compact';

const T0 = Date.UTC(2025, 0, 1, 0, 0, 0);
const dirs: string[] = [];
const stores: Store[] = [];

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function openStore(dir?: string, now = () => T0 + 10 * HOUR): Promise<Store> {
  const d = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'dke-console-store-'));
  if (!dir) dirs.push(d);
  const s = new Store({ dir: d, retentionMs: 48 * HOUR, now, memoryLimit: '256MB', rollupEveryMs: 60_000 });
  parser = new SeriesIds(parser.source + 1);
  await s.open();
  stores.push(s);
  return s;
}

interface Raw {
  host: string;
  dport: string;
  transport: string;
  direction: string;
  ts: number;
  f: Record<string, number>;
}

function point(r: Raw): ParsedPoint {
  const tags = { host: r.host, transport: r.transport, direction: r.direction, src_ip: `10.0.0.${r.host.length}`, src_port: '*', dst_ip: '10.9.9.9', dst_port: r.dport, process_name: 'p' };
  return { measurement: 'netflow', tags, fields: r.f, fieldTypes: {}, timestamp: BigInt(r.ts) };
}

/** The parser of the running "console" (a new one per store opened, as a restart starts new parse workers). */
let parser = new SeriesIds(1);

/** What the write path hands the store for these points (times in ms). */
function write(category: string, points: ParsedPoint[], times: number[]) {
  return compactWrite(category, 'ms', points.map((p, i) => ({ ...p, timestamp: BigInt(times[i]!) })), 0, parser);
}

function randomPoints(n: number, seed: number): Raw[] {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const out: Raw[] = [];
  for (let i = 0; i < n; i++) {
    const transport = rnd() < 0.7 ? 'tcp' : 'udp';
    const f: Record<string, number> = { bytes_read: Math.floor(rnd() * 1e6), bytes_written: Math.floor(rnd() * 1e5) };
    if (transport === 'tcp') Object.assign(f, { rtt: Math.floor(rnd() * 5000), rtt_var: Math.floor(rnd() * 500), tcp_established: Math.floor(rnd() * 3), tcp_closed: Math.floor(rnd() * 3), retransmits: Math.floor(rnd() * 2) });
    out.push({ host: rnd() < 0.5 ? 'hosta' : 'hb', dport: rnd() < 0.5 ? '443' : '80', transport, direction: rnd() < 0.5 ? 'outgoing' : 'incoming', ts: T0 + Math.floor(rnd() * 8 * HOUR), f });
  }
  return out;
}

function oracle(points: Raw[]): Metrics {
  const sum = (k: string) => points.reduce((a, p) => a + (p.f[k] ?? 0), 0);
  const mean = (k: string) => {
    const v = points.filter((p) => p.f[k] !== undefined);
    return v.length ? v.reduce((a, p) => a + p.f[k]!, 0) / v.length : null;
  };
  return { bytes_written: sum('bytes_written'), bytes_read: sum('bytes_read'), rtt: mean('rtt'), rtt_var: mean('rtt_var'), tcp_established: sum('tcp_established'), retransmits: sum('retransmits'), tcp_closed: sum('tcp_closed') };
}

function close(a: Metrics, b: Metrics): void {
  for (const m of METRICS) {
    if (b[m] === null) expect(a[m], m).toBeNull();
    else expect(a[m], m).toBeCloseTo(b[m]!, 6);
  }
}

async function ingestAll(store: Store, raws: Raw[], perWrite = 97): Promise<void> {
  const writes: Promise<void>[] = [];
  for (let i = 0; i < raws.length; i += perWrite) {
    const part = raws.slice(i, i + perWrite);
    writes.push(store.ingest(write('network', part.map(point), part.map((r) => r.ts))));
  }
  await Promise.all(writes);
}

describe('console store', () => {
  it('host network totals and series equal the raw points for unaligned ranges (rollups are exact)', async () => {
    const store = await openStore();
    const raws = randomPoints(3000, 11);
    await ingestAll(store, raws);
    const q = new Queries(store);
    const ranges = [
      [T0 + 7 * MINUTE + 1234, T0 + 6 * HOUR + 17 * MINUTE],
      [T0, T0 + 8 * HOUR],
      [T0 + 2 * MINUTE, T0 + 4 * MINUTE],
      [T0 + HOUR, T0 + 3 * HOUR],
    ];
    for (const [from, to] of ranges) {
      for (const transport of [undefined, 'tcp']) {
        const want = raws.filter((r) => r.host === 'hosta' && r.ts >= from! && r.ts < to! && (!transport || r.transport === transport));
        const got = await q.hostNetwork({ host: 'hosta', from: from!, to: to!, step: 5 * MINUTE, transport, where: [] });
        close(got.totals, oracle(want));
        // each bucket of the series too
        for (let i = 0; i < got.times.length; i++) {
          const t = got.times[i]!;
          const inBucket = want.filter((r) => r.ts >= t && r.ts < t + 5 * MINUTE);
          expect(got.series.bytes_read[i], `bucket ${i}`).toBe(inBucket.reduce((a, r) => a + r.f.bytes_read!, 0));
        }
      }
    }
  });

  it('connections and map use the same exact numbers, filtered by where', async () => {
    const store = await openStore();
    const raws = randomPoints(2000, 5);
    await ingestAll(store, raws);
    const q = new Queries(store);
    const from = T0 + 13 * MINUTE;
    const to = T0 + 7 * HOUR + 1;
    const { rows, total } = await q.connections({ from, to }, undefined, [{ key: 'dst_port', values: ['443'] }], 'traffic', 100);
    expect(rows.every((r) => r.dst_port === '443')).toBe(true);
    expect(total).toBe(rows.length);
    for (const r of rows) {
      const want = raws.filter((x) => x.ts >= from && x.ts < to && x.dport === '443' && x.host === r.host && x.transport === r.transport && x.direction === r.direction);
      close(r, oracle(want));
    }
    const g = await q.map({ from, to }, [], {});
    const a = g.nodes.find((n) => n.id === 'hosta')!;
    close(a.metrics, oracle(raws.filter((x) => x.ts >= from && x.ts < to && x.host === 'hosta')));
  });

  it('concurrent writes share commits; all of them are stored', async () => {
    const store = await openStore();
    const raws = randomPoints(2000, 9);
    await ingestAll(store, raws, 10); // 200 writes at once
    expect(store.stats.writes).toBe(200);
    expect(store.stats.points).toBe(2000);
    expect(store.stats.commits).toBeLessThan(200);
    const [n] = await store.query('SELECT count(*)::DOUBLE AS n FROM netflow');
    expect(n!.n).toBe(2000);
  });

  it('reopening after close, and after a destroy with rollups pending, gives the same numbers', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-console-store-'));
    dirs.push(dir);
    const raws = randomPoints(1500, 3);
    let store = await openStore(dir);
    await ingestAll(store, raws.slice(0, 1000));
    const before = (await new Queries(store).hostNetwork({ host: 'hb', from: T0, to: T0 + 8 * HOUR, step: HOUR, where: [] })).totals;
    await store.close();
    store = await openStore(dir);
    await ingestAll(store, raws.slice(1000));
    // No query ran: the rollups of these points are not computed yet.
    store.destroy();
    store = await openStore(dir);
    const after = (await new Queries(store).hostNetwork({ host: 'hb', from: T0, to: T0 + 8 * HOUR, step: HOUR, where: [] })).totals;
    close(after, oracle(raws.filter((r) => r.host === 'hb')));
    expect(after.bytes_read).toBeGreaterThan(before.bytes_read!);
  });

  it('retention drops old points and whole old rollup buckets only', async () => {
    let now = T0 + 10 * HOUR;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-console-store-'));
    dirs.push(dir);
    let store = await openStore(dir, () => now);
    const raws = randomPoints(1000, 21);
    await ingestAll(store, raws);
    await store.close();
    now = T0 + 48 * HOUR + 3 * HOUR + 7 * MINUTE; // cutoff = T0 + 3h07m
    store = await openStore(dir, () => now);
    const cutoff = now - 48 * HOUR;
    const [n] = await store.query('SELECT count(*)::DOUBLE AS n, min(ts)::DOUBLE AS first FROM netflow');
    expect(n!.n).toBe(raws.filter((r) => r.ts >= cutoff).length);
    const got = (await new Queries(store).hostNetwork({ host: 'hosta', from: cutoff, to: now, step: 5 * MINUTE, where: [] })).totals;
    close(got, oracle(raws.filter((r) => r.host === 'hosta' && r.ts >= cutoff)));
  });

  it('a series first seen in a write that was then refused still resolves in the parser\'s later writes', async () => {
    const store = await openStore();
    const raws = randomPoints(40, 2);
    const refused = write('network', raws.slice(0, 20).map(point), raws.slice(0, 20).map((r) => r.ts));
    expect(refused.newSeries.length).toBeGreaterThan(0);
    store.learn(refused); // parsed, then refused (say, the forward spool's disk was full): never ingested
    const later = write('network', raws.slice(20).map(point), raws.slice(20).map((r) => r.ts));
    expect(later.newSeries.length).toBeLessThan(refused.newSeries.length); // these tags are not sent again
    await store.ingest(later);
    const [n] = await store.query('SELECT count(*)::DOUBLE AS n FROM netflow');
    expect(n!.n).toBe(20);
  });

  it('dnsflow, bash and other measurements land in their tables', async () => {
    const store = await openStore();
    const dns: ParsedPoint = { measurement: 'dnsflow', tags: { host: 'h', src_ip: '10.0.0.1', dst_ip: '10.0.0.53', dst_port: '53' }, fields: { count: 4, rcode: 3, latency: 1000, latency_max: 2000 }, fieldTypes: {} };
    const bash: ParsedPoint = { measurement: 'bash', tags: { host: 'h' }, fields: { pid: '1', user: 'root', cmd: 'ls -la', message: 'm' }, fieldTypes: {} };
    const other: ParsedPoint = { measurement: 'cpu', tags: { host: 'h' }, fields: { usage: 1.5, big: 2n ** 62n }, fieldTypes: {} };
    await store.ingest(write('network', [dns], [T0]));
    await store.ingest(write('logging', [bash], [T0 + 1]));
    await store.ingest(write('metric', [other], [T0 + 2]));
    const q = new Queries(store);
    const d = await q.dns({ from: T0 - HOUR, to: T0 + HOUR, step: MINUTE }, undefined, []);
    expect(d.totals).toMatchObject({ lookups: 4, nxdomain: 4, timeouts: 0 });
    const b = await q.bash({ from: T0 - HOUR, to: T0 + HOUR }, undefined, 'LS', [], 10);
    expect(b.rows).toEqual([{ ts: T0 + 1, host: 'h', user: 'root', pid: '1', cmd: 'ls -la' }]);
    expect((await q.bash({ from: T0 - HOUR, to: T0 + HOUR }, undefined, '100%', [], 10)).rows).toEqual([]);
    const [o] = await store.query('SELECT measurement, fields FROM other');
    expect(o).toEqual({ measurement: 'cpu', fields: `{"usage":1.5,"big":"${2n ** 62n}"}` });
  });
});
