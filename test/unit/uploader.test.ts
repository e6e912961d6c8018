import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { float, type Point } from '../../src/lineproto/point';
import { dataKitError, startReceiver, type Receiver } from '../../src/receiver/receiver';
import { encodeBatches, Uploader } from '../../src/upload/uploader';
import { capture } from '../helpers/log-capture';

const WARN = 40;
const ERROR = 50;

function netflow(n: number, ts = 1700000000000000000n): Point[] {
  return Array.from({ length: n }, (_, i) => ({
    measurement: 'netflow',
    tags: { host: 'h1', service: 'ebpf', direction: 'outgoing', transport: 'tcp', src_ip: '10.0.0.5', src_port: '*', dst_ip: `93.184.${i >> 8}.${i & 255}`, dst_port: '443' },
    fields: { bytes_read: i, bytes_written: 2 * i, rtt: float(1.5) },
    timestampNs: ts,
  }));
}

let receiver: Receiver;
let uploader: Uploader | undefined;

beforeEach(async () => {
  receiver = await startReceiver({ host: '127.0.0.1', port: 0 });
});

afterEach(async () => {
  uploader?.destroy();
  uploader = undefined;
  await receiver.close();
});

function make(opts: Partial<ConstructorParameters<typeof Uploader>[0]> = {}) {
  const { logger, lines } = capture();
  uploader = new Uploader({ baseUrl: receiver.url, logger, ...opts });
  return { up: uploader, lines };
}

describe('Uploader.write', () => {
  it('splits 600 points into batches of 256 and POSTs them in order to the exact URL', async () => {
    const { up, lines } = make();
    const res = await up.write('network', 'ebpf-net/netflow', netflow(600));
    expect(res).toEqual({ sentPoints: 600, failedPoints: 0, batches: 3, failedBatches: 0 });
    expect(receiver.writes.map((w) => w.points.length)).toEqual([256, 256, 88]);
    for (const w of receiver.writes) {
      expect(w.url).toBe('/v1/write/network?input=ebpf-net%2Fnetflow&precision=ns');
      expect(w).toMatchObject({ category: 'network', input: 'ebpf-net/netflow', precision: 'ns', status: 200 });
    }
    const pts = receiver.points('netflow');
    expect(pts).toHaveLength(600);
    expect(pts[599].fields).toEqual({ bytes_read: 599, bytes_written: 1198, rtt: 1.5 });
    expect(pts[599].tags.dst_ip).toBe('93.184.2.87');
    expect(pts[0].timestamp).toBe(1700000000000000000n);
    expect(lines.filter((l) => l.level >= WARN)).toEqual([]);
  });

  it('uses the logging category and escapes the input name', async () => {
    const { up } = make();
    const p: Point = { measurement: 'bash', tags: { host: 'h' }, fields: { cmd: 'ls -la "x"', pid: '42' }, timestampNs: 1n };
    expect(await up.write('logging', 'ebpf-bash', [p])).toMatchObject({ sentPoints: 1, batches: 1 });
    expect(receiver.writes[0].url).toBe('/v1/write/logging?input=ebpf-bash&precision=ns');
    expect(receiver.points('bash')[0].fields.cmd).toBe('ls -la "x"');
  });

  it('honours maxBatchPoints and maxBatchBytes', async () => {
    const { up } = make({ maxBatchPoints: 10, maxBatchBytes: 1000 });
    const res = await up.write('network', 'ebpf-net/netflow', netflow(25));
    expect(res.failedPoints).toBe(0);
    expect(res.sentPoints).toBe(25);
    for (const w of receiver.writes) {
      expect(w.points.length).toBeLessThanOrEqual(10);
      expect(Buffer.byteLength(w.body)).toBeLessThanOrEqual(1000);
    }
    expect(res.batches).toBe(receiver.writes.length);
  });

  it('sends a single line larger than maxBatchBytes alone', () => {
    const big: Point = { measurement: 'm', tags: {}, fields: { s: 'x'.repeat(5000) }, timestampNs: 1n };
    const small = netflow(3);
    const { batches } = encodeBatches([small[0], big, small[1], small[2]], 256, 1000);
    expect(batches.map((b) => b.points)).toEqual([1, 1, 2]);
    expect(batches[1].bytes).toBeGreaterThan(5000);
    expect(batches.every((b) => b.body.length === b.bytes && b.body[b.bytes - 1] === 10)).toBe(true);
  });

  it('drops points that cannot be encoded, logs once, and sends the rest', async () => {
    const { up, lines } = make();
    const bad: Point = { measurement: 'netflow', tags: {}, fields: { x: 1.5 }, timestampNs: 1n };
    const res = await up.write('network', 'ebpf-net/netflow', [...netflow(2), bad, bad]);
    expect(res).toEqual({ sentPoints: 2, failedPoints: 2, batches: 1, failedBatches: 0 });
    const errs = lines.filter((l) => l.level === ERROR);
    expect(errs).toHaveLength(1);
    expect(errs[0].msg).toContain('2 ebpf-net/netflow point(s)');
    expect(errs[0].msg).toContain('not a safe integer');
  });

  it('reports a 400 with DataKit error_code and message, once per batch, at error level', async () => {
    const { up, lines } = make({ maxBatchPoints: 5 });
    receiver.setResponder(() => dataKitError(400, 'datakit.invalidLinePoint', 'lineproto parse error: bad point'));
    const res = await up.write('network', 'ebpf-net/netflow', netflow(10));
    expect(res).toEqual({ sentPoints: 0, failedPoints: 10, batches: 2, failedBatches: 2 });
    const errs = lines.filter((l) => l.level >= WARN);
    expect(errs).toHaveLength(2);
    for (const e of errs) {
      expect(e.level).toBe(ERROR);
      expect(e).toMatchObject({ status: 400, error_code: 'datakit.invalidLinePoint', input: 'ebpf-net/netflow', points: 5 });
      expect(e.msg).toContain('HTTP 400 datakit.invalidLinePoint: lineproto parse error: bad point');
      expect(e.msg).toContain('ebpf-net/netflow');
    }
  });

  it('reports a 500 at warn level and still sends the other batches', async () => {
    const { up, lines } = make({ maxBatchPoints: 4 });
    let n = 0;
    receiver.setResponder(() => (n++ === 1 ? dataKitError(500, 'datakit.internalError', 'feed failed') : undefined));
    const res = await up.write('network', 'ebpf-net/netflow', netflow(12));
    expect(res).toEqual({ sentPoints: 8, failedPoints: 4, batches: 3, failedBatches: 1 });
    expect(receiver.points()).toHaveLength(8);
    const warns = lines.filter((l) => l.level >= WARN);
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ level: WARN, status: 500, error_code: 'datakit.internalError' });
  });

  it('reports a 429 and a non-JSON error body defensively', async () => {
    const { up, lines } = make({ maxBatchPoints: 1 });
    const answers = [dataKitError(429, 'datakit.reachMaxAPIRateLimit', 'rate limited'), { status: 502, body: '<html>bad gateway</html>' }, { status: 503, body: '' }];
    let n = 0;
    receiver.setResponder(() => answers[n++]);
    const res = await up.write('network', 'ebpf-net/netflow', netflow(3));
    expect(res.failedBatches).toBe(3);
    const msgs = lines.filter((l) => l.level >= WARN).map((l) => l.msg);
    expect(msgs[0]).toContain('HTTP 429 datakit.reachMaxAPIRateLimit: rate limited');
    expect(msgs[1]).toContain('HTTP 502: <html>bad gateway</html>');
    expect(msgs[2]).toContain('HTTP 503');
  });

  it('does not throw when DataKit is down; logs one line naming the server and the fix', async () => {
    const url = receiver.url;
    await receiver.close();
    const { logger, lines } = capture();
    uploader = new Uploader({ baseUrl: url, logger, maxBatchPoints: 100 });
    const res = await uploader.write('network', 'ebpf-net/netflow', netflow(300));
    expect(res).toEqual({ sentPoints: 0, failedPoints: 300, batches: 3, failedBatches: 3 });
    const errs = lines.filter((l) => l.level >= WARN);
    expect(errs).toHaveLength(1);
    expect(errs[0].msg).toContain(url);
    expect(errs[0].msg).toContain('connection refused');
    expect(errs[0].msg).toContain('is DataKit running? check --datakit-apiserver');
    expect(errs[0].msg).not.toContain('\n');
    expect(errs[0].code).toBe('ECONNREFUSED');
  });

  it('times out a DataKit that does not answer', async () => {
    const { up, lines } = make({ timeoutMs: 200 });
    receiver.setResponder(() => ({ status: 200, delayMs: 1000 }));
    const res = await up.write('network', 'ebpf-net/netflow', netflow(2));
    expect(res).toMatchObject({ sentPoints: 0, failedPoints: 2, failedBatches: 1 });
    expect(lines.find((l) => l.level >= WARN)?.msg).toContain('did not answer within 200ms');
  });

  it('treats a dropped connection as a network failure', async () => {
    const { up, lines } = make();
    receiver.setResponder(() => ({ status: 0, hangUp: true }));
    const res = await up.write('network', 'ebpf-net/netflow', netflow(2));
    expect(res).toMatchObject({ sentPoints: 0, failedPoints: 2 });
    expect(lines.find((l) => l.level >= WARN)?.msg).toContain('is DataKit running?');
  });

  it('after a dropped connection, still sends the other batches on a new one', async () => {
    const { up, lines } = make({ maxBatchPoints: 2 });
    let n = 0;
    receiver.setResponder(() => (n++ === 0 ? { status: 0, hangUp: true } : undefined));
    const res = await up.write('network', 'ebpf-net/netflow', netflow(6));
    expect(res).toEqual({ sentPoints: 4, failedPoints: 2, batches: 3, failedBatches: 1 });
    expect(lines.filter((l) => l.level >= WARN)).toHaveLength(1);
  });

  it('accepts a base URL without scheme and with a trailing slash', async () => {
    const { logger } = capture();
    uploader = new Uploader({ baseUrl: `${receiver.url.replace('http://', '')}/`, logger });
    expect(await uploader.write('metric', 'x', netflow(1))).toMatchObject({ sentPoints: 1 });
    expect(receiver.writes[0].url).toBe('/v1/write/metric?input=x&precision=ns');
  });

  it('sends the base URL\'s token parameter with every write, and post() keeps a forwarded body\'s precision', async () => {
    const { logger } = capture();
    uploader = new Uploader({ baseUrl: `${receiver.url}?token=t%2Fk`, logger });
    expect(await uploader.write('network', 'x', netflow(1))).toMatchObject({ sentPoints: 1 });
    expect(await uploader.post('network', 'y', Buffer.from('m f=1i 1700000000\n'), false, 's')).toEqual({ kind: 'ok' });
    expect(receiver.writes.map((w) => w.url)).toEqual(['/v1/write/network?input=x&precision=ns&token=t%2Fk', '/v1/write/network?input=y&precision=s&token=t%2Fk']);
    expect(uploader.apiServer).not.toContain('t%2Fk');
  });
});

describe('Uploader.ping and reportLastError', () => {
  it('pings', async () => {
    const { up } = make();
    expect(await up.ping()).toEqual({ ok: true, version: 'receiver-0.1' });
  });

  it('ping reports HTTP and network failures without throwing', async () => {
    const { up } = make();
    receiver.setResponder(() => dataKitError(403, 'datakit.publicAccessDisabled', 'public access disabled'));
    expect(await up.ping()).toEqual({ ok: false, error: 'HTTP 403 datakit.publicAccessDisabled: public access disabled' });
    receiver.setResponder(undefined);
    await receiver.close();
    const r = await up.ping();
    expect(r.ok).toBe(false);
    expect(r.error).toContain('is DataKit running? check --datakit-apiserver');
  });

  it('reports the last error as DataKit expects it', async () => {
    const { up } = make();
    expect(await up.reportLastError('ebpf', 'kernel lacks BTF')).toBe(true);
    expect(receiver.lastErrors).toHaveLength(1);
    expect(receiver.lastErrors[0]).toMatchObject({ input: 'ebpf', source: '', errContent: 'kernel lacks BTF' });
  });

  it('reportLastError never throws', async () => {
    const { up, lines } = make();
    receiver.setResponder(() => dataKitError(500, 'datakit.x', 'nope'));
    expect(await up.reportLastError('ebpf', 'e')).toBe(false);
    await receiver.close();
    expect(await up.reportLastError('ebpf', 'e')).toBe(false);
    expect(lines.filter((l) => l.level === WARN)).toHaveLength(2);
  });
});

describe('Uploader.close and destroy', () => {
  it('close waits for an in-flight write, is idempotent, and later writes fail without throwing', async () => {
    const { up, lines } = make({ maxBatchPoints: 2 });
    receiver.setResponder(() => ({ status: 200, delayMs: 100 }));
    const pending = up.write('network', 'ebpf-net/netflow', netflow(4));
    await new Promise((r) => setTimeout(r, 20));
    const c1 = up.close();
    const c2 = up.close();
    await Promise.all([c1, c2]);
    expect(await pending).toMatchObject({ sentPoints: 4, failedBatches: 0 });
    expect(await up.write('network', 'ebpf-net/netflow', netflow(3))).toEqual({ sentPoints: 0, failedPoints: 3, batches: 2, failedBatches: 2 });
    expect(lines.at(-1)?.msg).toContain('uploader is closed');
    expect((await up.ping()).ok).toBe(false);
  });

  it('destroy aborts in-flight requests and is idempotent', async () => {
    const { up } = make();
    receiver.setResponder(() => ({ status: 200, delayMs: 2000 }));
    const pending = up.write('network', 'ebpf-net/netflow', netflow(2));
    await new Promise((r) => setTimeout(r, 50));
    up.destroy();
    up.destroy();
    expect(await pending).toMatchObject({ sentPoints: 0, failedPoints: 2 });
    await up.close(); // after destroy: resolves, does not hang
  });
});
