// `datakit-ebpf console`: the DataKit-compatible write path (../writeapi) with a
// store behind it, the JSON API and the static page, on one port.
//
// Security: on a loopback address everything is open unless a token is set; on
// any other address a token is required (cli.ts refuses to start without one).
// With a token, the page and the API take it as `Authorization: Bearer`, as the
// cookie the page sets after `/?token=...`, or as `?token=`; the write API takes
// DataKit's `token` query parameter (or the Bearer header).

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import {
  DEFAULT_MAX_BODY,
  HttpFailure,
  decodeBody,
  parseLastError,
  pingBody,
  readBody,
  readWrite,
  requireMethod,
  send,
  sendFailure,
  type LastErrorReport,
} from '../writeapi/writeapi';
import type { Forwarder } from './forward';
import { ParseFailure, ParsePool, type Parsed } from './parse-pool';
import { isFillMetric, type OutsideMode } from './graph';
import { QueryError, parseRange, parseStep, parseWhere } from './plan';
import { Queries } from './queries';
import type { Store } from './store';

export interface ConsoleServerOptions {
  host: string;
  port: number;
  store: Store;
  log: Logger;
  forwarder?: Forwarder;
  token?: string;
  maxBodyBytes?: number;
  /** Directory of index.html, app.js, style.css and vendor/. */
  webDir?: string;
  version?: string;
}

const COOKIE = 'dke_console_token';
const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

export function isLoopbackAddress(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.') || host === '::ffff:127.0.0.1';
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function cookieToken(req: http.IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

function bearer(req: http.IncomingMessage): string | undefined {
  const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  return m?.[1]?.trim();
}

export class ConsoleServer {
  private server?: http.Server;
  private readonly queries: Queries;
  private readonly parser = new ParsePool();
  private readonly startedAt = Date.now();
  readonly lastErrors: (LastErrorReport & { receivedAt: number })[] = [];
  private closing?: Promise<void>;
  url = '';

  constructor(private readonly opts: ConsoleServerOptions) {
    this.queries = new Queries(opts.store);
  }

  async listen(): Promise<string> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port, this.opts.host, () => {
        this.server!.off('error', reject);
        resolve();
      });
    });
    const port = (this.server.address() as AddressInfo).port;
    const h = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    this.url = `http://${h}:${port}`;
    return this.url;
  }

  private authorized(req: http.IncomingMessage, url: URL): boolean {
    const token = this.opts.token;
    if (!token) return true;
    const given = bearer(req) ?? url.searchParams.get('token') ?? cookieToken(req);
    return given !== undefined && safeEqual(given, token);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://console');
    const p = url.pathname;
    try {
      if (p.startsWith('/v1/')) {
        if (!this.authorized(req, url)) {
          req.resume();
          throw new HttpFailure(401, 'datakit.invalidToken', 'missing or wrong token: add ?token=<the console token> to the address');
        }
        if (p.startsWith('/v1/write/')) return await this.write(req, res, p, url.searchParams);
        if (p === '/v1/ping') {
          requireMethod(req, 'GET');
          req.resume();
          return send(res, 200, pingBody(this.opts.version ?? 'console', this.startedAt));
        }
        if (p === '/v1/lasterror') {
          requireMethod(req, 'POST');
          const limit = this.opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
          const e = parseLastError(await decodeBody(await readBody(req, limit), req.headers['content-encoding'], limit));
          this.lastErrors.push({ ...e, receivedAt: Date.now() });
          if (this.lastErrors.length > 100) this.lastErrors.shift();
          this.opts.log.warn({ input: e.input, source: e.source }, `last error from ${e.input}: ${e.errContent}`);
          return send(res, 200);
        }
        req.resume();
        return send(res, 404, '404 page not found\n', { 'content-type': 'text/plain; charset=utf-8' });
      }
      req.resume();
      if (!this.authorized(req, url)) {
        return send(res, 401, p.startsWith('/api/') ? { error: 'unauthorized', message: 'this console needs its token: open /?token=<token> once, or send Authorization: Bearer <token>' } : '401: open this page as /?token=<the console token>\n', p.startsWith('/api/') ? {} : { 'content-type': 'text/plain; charset=utf-8' });
      }
      if (p.startsWith('/api/')) return await this.api(req, res, p, url.searchParams);
      if (this.opts.token && url.searchParams.get('token') && req.method === 'GET' && p === '/') {
        // Remember the token in a cookie and drop it from the address bar.
        return send(res, 303, '', { location: '/', 'set-cookie': `${COOKIE}=${encodeURIComponent(this.opts.token)}; HttpOnly; SameSite=Strict; Path=/` });
      }
      return this.staticFile(res, p);
    } catch (err) {
      if (err instanceof QueryError) return send(res, 400, { error: err.code, message: err.message });
      const f = err instanceof HttpFailure ? err : new HttpFailure(500, 'datakit.internalError', (err as Error).message);
      if (f.status >= 500) this.opts.log.error({ path: p, err: (err as Error).message }, `${req.method} ${p}: ${(err as Error).message}`);
      if (p.startsWith('/api/')) return send(res, f.status, { error: f.errorCode, message: f.message });
      sendFailure(res, f);
    }
  }

  private async write(req: http.IncomingMessage, res: http.ServerResponse, p: string, query: URLSearchParams): Promise<void> {
    requireMethod(req, 'POST');
    const w = await readWrite(req, p, query, { limit: this.opts.maxBodyBytes ?? DEFAULT_MAX_BODY, parse: false });
    let failure = w.failure;
    let parsed: Parsed | undefined;
    if (!failure) {
      try {
        parsed = await this.parser.parse(w.category, w.precision, w.body, Date.now());
        if (parsed.write.points === 0) failure = new HttpFailure(400, 'datakit.noPoints', 'no points');
      } catch (err) {
        if (!(err instanceof ParseFailure)) throw err;
        failure = new HttpFailure(400, 'datakit.invalidLinePoint', err.message);
      }
    }
    if (parsed) this.opts.store.learn(parsed.write);
    if (failure || !parsed) {
      const f = failure ?? new HttpFailure(400, 'datakit.noPoints', 'no points');
      this.opts.log.info({ category: w.category, input: w.input, error_code: f.errorCode }, `rejected write: HTTP ${f.status} ${f.errorCode}: ${f.message}`);
      return sendFailure(res, f);
    }
    // Forwarding first: once in the spool it reaches DataKit even if the store fails.
    this.opts.forwarder?.enqueue([{ category: w.category, input: w.input, precision: w.precision, body: w.body, ends: parsed.ends }]);
    await this.opts.store.ingest(parsed.write);
    send(res, 200);
  }

  private async api(req: http.IncomingMessage, res: http.ServerResponse, p: string, q: URLSearchParams): Promise<void> {
    requireMethod(req, 'GET');
    const range = parseRange(q, Date.now());
    const where = parseWhere(q.getAll('where'));
    const host = q.get('host') || undefined;
    const limit = Number(q.get('limit') ?? 1000) || 1000;
    const ok = (body: unknown) => send(res, 200, body as object, { 'cache-control': 'no-store' });
    const m = /^\/api\/v1\/hosts\/([^/]+)\/network$/.exec(p);
    if (m) {
      const transport = q.get('transport') || undefined;
      const direction = q.get('direction') || undefined;
      if (transport && !['tcp', 'udp'].includes(transport)) throw new QueryError(`transport=${transport}: expected tcp or udp (or nothing for both)`);
      if (direction && !['incoming', 'outgoing'].includes(direction)) throw new QueryError(`direction=${direction}: expected incoming or outgoing (or nothing for both)`);
      const step = parseStep(q.get('step'), range);
      let name: string;
      try {
        name = decodeURIComponent(m[1]!);
      } catch {
        throw new QueryError(`bad host name in ${p}`);
      }
      return ok(await this.queries.hostNetwork({ ...range, host: name, transport, direction, step, where }));
    }
    switch (p) {
      case '/api/v1/hosts':
        return ok({ from: range.from, to: range.to, hosts: await this.queries.hosts(range, where) });
      case '/api/v1/connections':
        return ok({ from: range.from, to: range.to, ...(await this.queries.connections(range, host, where, q.get('sort') || 'traffic', limit)) });
      case '/api/v1/map': {
        const fill = q.get('fill') || 'rtt';
        if (!isFillMetric(fill)) throw new QueryError(`fill=${fill}: expected rtt, rtt_var, retransmits, tcp_established or tcp_closed`);
        const outside = (q.get('outside') || 'one') as OutsideMode;
        if (!['one', '24', 'hide'].includes(outside)) throw new QueryError(`outside=${outside}: expected one, 24 or hide`);
        const num = (k: string) => (q.get(k) === null || q.get(k) === '' ? undefined : Number(q.get(k)));
        const min = num('min');
        const max = num('max');
        if ((min !== undefined && !Number.isFinite(min)) || (max !== undefined && !Number.isFinite(max))) throw new QueryError('min and max must be numbers');
        return ok({ from: range.from, to: range.to, ...(await this.queries.map(range, where, { fill, outside, min, max, q: q.get('q') ?? undefined })) });
      }
      case '/api/v1/dns':
        return ok(await this.queries.dns({ ...range, step: parseStep(q.get('step'), range) }, host, where));
      case '/api/v1/bash':
        return ok({ from: range.from, to: range.to, ...(await this.queries.bash(range, host, q.get('q') || undefined, where, limit)) });
      case '/api/v1/lasterrors':
        return ok({ errors: this.lastErrors });
      case '/api/v1/status':
        return ok({ store: { ...this.opts.store.stats, diskBytes: this.opts.store.diskBytes() }, forward: this.opts.forwarder ? { url: this.opts.forwarder.opts.url, ...this.opts.forwarder.stats } : null });
      default:
        return send(res, 404, { error: 'not_found', message: `no API route ${p}` });
    }
  }

  private staticFile(res: http.ServerResponse, p: string): void {
    const dir = this.opts.webDir ?? path.join(__dirname, 'web');
    const rel = p === '/' ? 'index.html' : p.slice(1);
    const full = path.resolve(dir, rel);
    if (!full.startsWith(path.resolve(dir) + path.sep) || !STATIC_TYPES[path.extname(full)]) {
      return send(res, 404, 'not found\n', { 'content-type': 'text/plain; charset=utf-8' });
    }
    let data: Buffer;
    try {
      data = fs.readFileSync(full);
    } catch {
      return send(res, 404, 'not found\n', { 'content-type': 'text/plain; charset=utf-8' });
    }
    send(res, 200, data, { 'content-type': STATIC_TYPES[path.extname(full)]!, 'cache-control': 'no-cache' });
  }

  /** Stops listening and drops idle connections. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      setTimeout(() => this.server?.closeAllConnections(), 2000).unref();
    }).then(() => this.parser.close());
    return this.closing;
  }
}
