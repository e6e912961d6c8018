import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import { dataKitError, startReceiver, type ReceivedWrite, type Receiver } from '../../src/receiver/receiver';
import { formatPoint, parseArgs } from '../../src/receiver/main';

let r: Receiver;
let logged: string[];
let seen: ReceivedWrite[];

beforeEach(async () => {
  logged = [];
  seen = [];
  r = await startReceiver({ port: 0, log: (l) => logged.push(l), onWrite: (w) => seen.push(w) });
});

afterEach(async () => {
  await r.close();
});

const LINES = 'netflow,host=h,src_ip=10.0.0.5 bytes_read=10i,rtt=1.5 1700000000000000000\nnetflow,host=h,src_ip=10.0.0.6 bytes_read=20i 1700000000000000000\n';

async function post(path: string, body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(r.url + path, { method: 'POST', body, headers });
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
}

describe('POST /v1/write/:category', () => {
  it('accepts a plain body: 200 with an empty body, points recorded', async () => {
    const res = await post('/v1/write/network?input=ebpf-net%2Fnetflow&precision=ns', LINES);
    expect(res).toMatchObject({ status: 200, text: '' });
    expect(r.writes).toHaveLength(1);
    expect(r.writes[0]).toMatchObject({ category: 'network', input: 'ebpf-net/netflow', precision: 'ns', status: 200, body: LINES });
    expect(r.points('netflow').map((p) => p.fields.bytes_read)).toEqual([10, 20]);
    expect(r.points('other')).toEqual([]);
    expect(seen).toHaveLength(1);
  });

  it.each([
    ['gzip', (b: Buffer) => zlib.gzipSync(b)],
    ['deflate', (b: Buffer) => zlib.deflateSync(b)],
    ['deflate', (b: Buffer) => zlib.deflateRawSync(b)], // raw deflate, as some clients send it
    ['br', (b: Buffer) => zlib.brotliCompressSync(b)],
    ['identity', (b: Buffer) => b],
  ])('decodes Content-Encoding %s', async (encoding, compress) => {
    const res = await post('/v1/write/network?input=x', compress(Buffer.from(LINES)), { 'content-encoding': encoding });
    expect(res.status).toBe(200);
    expect(r.points()).toHaveLength(2);
    expect(r.writes[0].body).toBe(LINES);
  });

  it('rejects a corrupt gzip body with 400', async () => {
    const res = await post('/v1/write/network?input=x', Buffer.from('not gzip'), { 'content-encoding': 'gzip' });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text).error_code).toBe('datakit.invalidBody');
    expect(r.writes[0].status).toBe(400);
  });

  it('rejects an unknown Content-Encoding with 415', async () => {
    const res = await post('/v1/write/network?input=x', LINES, { 'content-encoding': 'zstd' });
    expect(res.status).toBe(415);
  });

  it.each([
    ['an unescaped space', 'netflow,host=a b f=1i\n'],
    ['a float with an i suffix', 'netflow f=1.5i\n'],
    ['a missing field', 'netflow,host=a\n'],
    ['a bad timestamp', 'netflow f=1i 12x\n'],
    ['a good line then a bad one', 'netflow f=1i\nnetflow f=\n'],
  ])('answers 400 datakit.invalidLinePoint for %s', async (_name, body) => {
    const res = await post('/v1/write/network?input=x', body);
    expect(res.status).toBe(400);
    expect(res.type).toBe('application/json');
    const j = JSON.parse(res.text);
    expect(j.error_code).toBe('datakit.invalidLinePoint');
    expect(j.message).toMatch(/^line \d+, column \d+: /);
    expect(r.points()).toEqual([]);
    expect(r.writes[0]).toMatchObject({ status: 400 });
    expect(r.writes[0].error).toBe(j.message);
    expect(seen).toEqual([]);
    expect(logged[0]).toContain('datakit.invalidLinePoint');
  });

  it('answers 400 for an empty body and for a body with no points', async () => {
    expect(JSON.parse((await post('/v1/write/network', '')).text)).toEqual({ error_code: 'datakit.emptyBody', message: 'empty body' });
    expect(JSON.parse((await post('/v1/write/network', '# just a comment\n')).text).error_code).toBe('datakit.noPoints');
  });

  it('answers 400 for an unknown category and defaults input and precision', async () => {
    const res = await post('/v1/write/bogus', LINES);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text).error_code).toBe('datakit.invalidCategory');
    await post('/v1/write/logging', LINES);
    expect(r.writes[1]).toMatchObject({ input: 'datakit-http', precision: 'n', status: 200 });
  });

  it('refuses GET on a write route and 404s unknown paths', async () => {
    expect((await fetch(r.url + '/v1/write/network')).status).toBe(405);
    expect((await fetch(r.url + '/nope')).status).toBe(404);
  });
});

describe('setResponder', () => {
  it('forces DataKit-style errors and records the attempt without its points', async () => {
    r.setResponder((req) => (req.path.startsWith('/v1/write/') ? dataKitError(429, 'datakit.reachMaxAPIRateLimit', 'slow down') : undefined));
    const res = await post('/v1/write/network?input=x', LINES);
    expect(res.status).toBe(429);
    expect(JSON.parse(res.text)).toEqual({ error_code: 'datakit.reachMaxAPIRateLimit', message: 'slow down' });
    expect(r.writes[0].status).toBe(429);
    expect(r.points()).toEqual([]);
    expect(seen).toEqual([]);
    // ping is untouched by this responder
    expect((await fetch(r.url + '/v1/ping')).status).toBe(200);
    r.setResponder(undefined);
    expect((await post('/v1/write/network?input=x', LINES)).status).toBe(200);
    expect(r.points()).toHaveLength(2);
  });

  it('sees the parsed points and the raw URL', async () => {
    let got: unknown;
    r.setResponder((req) => {
      got = { url: req.url, n: req.points?.length, input: req.query.get('input') };
      return undefined;
    });
    await post('/v1/write/network?input=ebpf-net%2Fnetflow&precision=ns', LINES);
    expect(got).toEqual({ url: '/v1/write/network?input=ebpf-net%2Fnetflow&precision=ns', n: 2, input: 'ebpf-net/netflow' });
  });

  it('can drop the connection', async () => {
    r.setResponder(() => ({ status: 0, hangUp: true }));
    await expect(post('/v1/write/network', LINES)).rejects.toThrow();
    expect(r.writes[0].status).toBe(0);
  });

  it('clear() forgets recorded writes and last errors', async () => {
    await post('/v1/write/network', LINES);
    await post('/v1/lasterror', JSON.stringify({ input: 'ebpf', source: '', err_content: 'x' }));
    r.clear();
    expect(r.writes).toEqual([]);
    expect(r.lastErrors).toEqual([]);
  });
});

describe('GET /v1/ping and POST /v1/lasterror', () => {
  it('answers ping like DataKit', async () => {
    const res = await fetch(r.url + '/v1/ping');
    expect(res.status).toBe(200);
    const j = (await res.json()) as { content: Record<string, string> };
    expect(Object.keys(j.content).sort()).toEqual(['commit', 'host', 'uptime', 'version']);
    expect(j.content.version).toBe('receiver-0.1');
    expect(j.content.uptime).toMatch(/^\d+s$/);
  });

  it('records last errors and rejects bad JSON', async () => {
    const ok = await post('/v1/lasterror', JSON.stringify({ input: 'ebpf', source: '', err_content: 'no BTF' }), { 'content-type': 'application/json' });
    expect(ok).toMatchObject({ status: 200, text: '' });
    expect(r.lastErrors).toEqual([expect.objectContaining({ input: 'ebpf', source: '', errContent: 'no BTF' })]);
    expect((await post('/v1/lasterror', '{not json')).status).toBe(400);
    expect((await post('/v1/lasterror', '{"input":1}')).status).toBe(400);
    expect(r.lastErrors).toHaveLength(1);
  });
});

describe('close', () => {
  it('is idempotent and frees the port', async () => {
    const port = r.port;
    await Promise.all([r.close(), r.close()]);
    await expect(fetch(r.url + '/v1/ping')).rejects.toThrow();
    r = await startReceiver({ port });
    expect(r.port).toBe(port);
  });
});

describe('receiver CLI helpers', () => {
  it('formats a netflow point as one readable line', () => {
    const w = { category: 'network', input: 'ebpf-net/netflow', receivedAt: new Date(2025, 0, 1, 12, 0, 1) };
    const line = formatPoint(w, {
      measurement: 'netflow',
      tags: { host: 'h', direction: 'outgoing', transport: 'tcp', src_ip: '10.0.0.5', src_port: '*', dst_ip: '2001:db8::1', dst_port: '443', dst_domain: 'example.com', process_name: 'curl', pid: '1234' },
      fields: { bytes_read: 5120, bytes_written: 300 },
      fieldTypes: { bytes_read: 'int', bytes_written: 'int' },
    });
    expect(line).toBe('12:00:01 network ebpf-net/netflow netflow outgoing tcp 10.0.0.5:* -> [2001:db8::1]:443 (example.com) curl[1234] bytes_read=5120 bytes_written=300');
  });

  it('formats a bash point without repeating the message', () => {
    const w = { category: 'logging', input: 'ebpf-bash', receivedAt: new Date(2025, 0, 1, 8, 5, 9) };
    const line = formatPoint(w, {
      measurement: 'bash',
      tags: { host: 'h' },
      fields: { pid: '42', user: 'root', cmd: 'ls -la', message: '2025-01-01T08:05:09Z pid:42 user:root cmd:ls -la' },
      fieldTypes: { pid: 'string', user: 'string', cmd: 'string', message: 'string' },
    });
    expect(line).toBe('08:05:09 logging ebpf-bash bash pid=42 user=root cmd="ls -la"');
  });

  it('parses --listen and --quiet', () => {
    expect(parseArgs([])).toEqual({ host: '127.0.0.1', port: 9529, quiet: false, help: false });
    expect(parseArgs(['--listen', '0.0.0.0:19529', '--quiet'])).toMatchObject({ host: '0.0.0.0', port: 19529, quiet: true });
    expect(parseArgs(['--listen=[::1]:9000'])).toMatchObject({ host: '::1', port: 9000 });
    expect(() => parseArgs(['--listen', 'nope'])).toThrow(/HOST:PORT/);
    expect(() => parseArgs(['--bogus'])).toThrow(/unknown argument/);
  });
});
