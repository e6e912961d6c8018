// DnsflowService: frames from the loader in, points out. dnsflow is flushed
// on every plugin tick, and every 30 s in between when --interval is longer
// (upstream's 30 s period); names the loader learnt feed netflow's domains.
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CollectorConfig } from '../../src/config/types';
import { Metrics } from '../../src/daemon/metrics';
import { DNS_FLUSH_MS, DNSFLOW_INPUT, DnsflowService } from '../../src/dnsflow/service';
import type { Point } from '../../src/lineproto/point';
import { DKE_COLLECT_DNS, DKE_FRAME_DNS_STATS } from '../../src/loader/layout.generated';
import type { LoaderReady, LoaderSupervisor } from '../../src/loader/supervisor';
import type { PluginContext } from '../../src/plugins/types';
import type { PointSink } from '../../src/upload/delivery';
import { dnsNamesFrame, dnsStatsFrame } from '../helpers/records';

function setup(intervalMs: number) {
  const writes: { input: string; points: readonly Point[] }[] = [];
  const uploader = {
    durable: false,
    write: vi.fn(async (_c: string, input: string, points: readonly Point[]) => {
      writes.push({ input, points });
      return { queued: points.length, rejected: 0, lastSeq: 0 };
    }),
  } as unknown as PointSink;
  const metrics = new Metrics();
  const config = { dnsPorts: [53], dnsTimeoutMs: 6000, includeLoopback: false, intervalMs, maxFlows: 0 } as unknown as CollectorConfig;
  const ctx: PluginContext = { config, log: pino({ level: 'silent' }), uploader, metrics, commonTags: { host: 'h' } };
  const loader = Object.assign(new EventEmitter(), { collect: vi.fn(async () => {}) });
  const service = new DnsflowService(ctx, loader as unknown as LoaderSupervisor, ctx.log);
  service.onReady({ generation: 1, info: { dns: true }, kernel: 'k', hookSet: { name: 'x', attached: [], degraded: [] }, pid: 1 } as LoaderReady);
  /** One answered lookup (1 µs), as the loader sends it. */
  const lookup = (): void => {
    loader.emit('frame', dnsStatsFrame({ client: '10.0.0.1', server: '10.0.0.2', latencySumNs: 1000, latencyMaxNs: 1000 }), 1);
  };
  return { service, writes, metrics, loader, lookup };
}

const now = (): bigint => BigInt(Date.now()) * 1_000_000n;

describe('DnsflowService', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('with a 60 s interval flushes on each tick and once 30 s after it, collecting DNS first', async () => {
    const { service, writes, loader, lookup } = setup(60_000);
    lookup();
    await service.tick(now());
    expect(writes).toHaveLength(1);
    expect(writes[0]!.input).toBe(DNSFLOW_INPUT);
    expect(writes[0]!.points[0]!.fields).toEqual({ count: 1, rcode: 0, latency: 1000, latency_max: 1000 });
    expect(writes[0]!.points[0]!.tags).toMatchObject({ host: 'h', source: 'dnsflow', src_ip: '10.0.0.1', dst_ip: '10.0.0.2' });
    expect(loader.collect).not.toHaveBeenCalled(); // the plugin's tick collected
    lookup();
    await vi.advanceTimersByTimeAsync(DNS_FLUSH_MS);
    expect(loader.collect).toHaveBeenCalledExactlyOnceWith(0n, DKE_COLLECT_DNS);
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
    const { service, writes, loader, lookup } = setup(10_000);
    lookup();
    await service.tick(now());
    lookup();
    await vi.advanceTimersByTimeAsync(2 * DNS_FLUSH_MS);
    expect(writes).toHaveLength(1);
    expect(loader.collect).not.toHaveBeenCalled();
    await service.tick(now());
    expect(writes).toHaveLength(2);
  });

  it('a timer flush still sends what arrived when the collect fails', async () => {
    const { writes, loader, lookup } = setup(60_000);
    loader.collect.mockRejectedValueOnce(new Error('the net eBPF loader is not running'));
    lookup();
    await vi.advanceTimersByTimeAsync(DNS_FLUSH_MS);
    expect(writes).toHaveLength(1);
    expect(writes[0]!.points[0]!.fields.count).toBe(1);
  });

  it('writes nothing when there is nothing to send', async () => {
    const { service, writes } = setup(10_000);
    await service.tick(now());
    expect(writes).toHaveLength(0);
  });

  it('learns the names the loader sends, for netflow', async () => {
    const { service, loader, metrics } = setup(10_000);
    loader.emit('frame', dnsNamesFrame({ addr: '23.1.2.3', domain: 'api.example.com', ttlS: 5 }, { addr: '2600:1400::17', domain: 'api.example.com', ttlS: 5 }), 1);
    expect(service.domainOf('23.1.2.3')).toBe('api.example.com');
    expect(service.domainOf('2600:1400::17')).toBe('api.example.com');
    expect(service.domainOf('10.9.9.9')).toBe('');
    expect(metrics.summary()).toMatchObject({ dnsflow_known_domains: 2 });
  });

  it('drops a frame that does not decode and keeps going', async () => {
    const { service, writes, loader, lookup } = setup(10_000);
    const bad = dnsStatsFrame({ client: '10.0.0.1', server: '10.0.0.2' });
    loader.emit('frame', { type: DKE_FRAME_DNS_STATS, count: 2, payload: bad.payload }, 1);
    lookup();
    await service.tick(now());
    expect(writes).toHaveLength(1);
    expect(writes[0]!.points.map((p) => p.fields.count)).toEqual([1]);
  });
});
