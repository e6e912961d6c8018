// DnsflowService's schedule: dnsflow is flushed on every plugin tick, and
// every 30 s in between when --interval is longer (upstream's 30 s period).
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CollectorConfig } from '../../src/config/types';
import { Metrics } from '../../src/daemon/metrics';
import { DNS_FLUSH_MS, DNSFLOW_INPUT, DnsflowService } from '../../src/dnsflow/service';
import type { Point } from '../../src/lineproto/point';
import { NET_STREAM_DNS } from '../../src/loader/plugins/dns';
import type { LoaderReady, LoaderSupervisor } from '../../src/loader/supervisor';
import type { PluginContext } from '../../src/plugins/types';
import type { PointSink } from '../../src/upload/delivery';
import { buildMessage, rawRecord } from '../helpers/dns-wire';

function setup(intervalMs: number, telemetry: number[] = [0, 0, 0, 0]) {
  const writes: { input: string; points: readonly Point[] }[] = [];
  const uploader = {
    durable: false,
    write: vi.fn(async (_c: string, input: string, points: readonly Point[]) => {
      writes.push({ input, points });
      return { queued: points.length, rejected: 0, lastSeq: 0 };
    }),
  } as unknown as PointSink;
  const metrics = new Metrics();
  const config = { dnsPorts: [53], dnsTimeoutMs: 6000, includeLoopback: false, intervalMs } as unknown as CollectorConfig;
  const ctx: PluginContext = { config, log: pino({ level: 'silent' }), uploader, metrics, commonTags: { host: 'h' } };
  const loader = Object.assign(new EventEmitter(), {
    generation: 1,
    request: vi.fn(async () => telemetry),
  });
  const service = new DnsflowService(ctx, loader as unknown as LoaderSupervisor, ctx.log);
  service.onReady({ generation: 1, info: { dns: true }, kernel: 'k', hookSet: { name: 'x', attached: [], degraded: [] }, pid: 1 } as LoaderReady);
  let id = 0;
  /** One answered lookup, as the loader would stream it. */
  const lookup = (): void => {
    id++;
    const t = process.hrtime.bigint();
    const q = buildMessage({ id, questions: [{ name: 'a.test', type: 1 }] });
    const a = buildMessage({ id, qr: true, questions: [{ name: 'a.test', type: 1 }], answers: [{ name: 'a.test', type: 1, data: '10.0.0.9' }] });
    loader.emit(
      'event',
      NET_STREAM_DNS,
      Buffer.concat([
        rawRecord({ ktimeNs: t, src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 53, egress: true, payload: q }),
        rawRecord({ ktimeNs: t + 1000n, src: '10.0.0.2', dst: '10.0.0.1', sport: 53, dport: 40000, egress: false, payload: a }),
      ]),
      1,
    );
  };
  return { service, writes, metrics, lookup };
}

const now = (): bigint => BigInt(Date.now()) * 1_000_000n;

describe('DnsflowService', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('with a 60 s interval flushes on each tick and once 30 s after it', async () => {
    const { service, writes, lookup } = setup(60_000);
    lookup();
    await service.tick(now());
    expect(writes).toHaveLength(1);
    expect(writes[0]!.input).toBe(DNSFLOW_INPUT);
    expect(writes[0]!.points[0]!.fields).toMatchObject({ count: 1, rcode: 0, latency: 1000 });
    lookup();
    await vi.advanceTimersByTimeAsync(DNS_FLUSH_MS);
    expect(writes).toHaveLength(2);
    lookup();
    await vi.advanceTimersByTimeAsync(DNS_FLUSH_MS - 1);
    expect(writes).toHaveLength(2); // the next tick, not a timer, takes the lookup
    await service.tick(now());
    expect(writes).toHaveLength(3);
    lookup();
    await vi.advanceTimersByTimeAsync(DNS_FLUSH_MS);
    expect(writes).toHaveLength(4);
    service.close();
    lookup();
    await vi.advanceTimersByTimeAsync(5 * DNS_FLUSH_MS);
    expect(writes).toHaveLength(4);
  });

  it('with an interval under 30 s flushes on ticks only', async () => {
    const { service, writes, lookup } = setup(10_000);
    lookup();
    await service.tick(now());
    lookup();
    await vi.advanceTimersByTimeAsync(2 * DNS_FLUSH_MS);
    expect(writes).toHaveLength(1);
    await service.tick(now());
    expect(writes).toHaveLength(2);
  });

  it('counts what the kernel lost and writes nothing when there is nothing to send', async () => {
    const { service, writes, metrics } = setup(10_000, [10, 3, 2, 0]);
    await service.tick(now());
    expect(writes).toHaveLength(0);
    expect(metrics.summary()).toMatchObject({ kernel_dropped: 3, dnsflow_truncated_packets: 2 });
  });
});
