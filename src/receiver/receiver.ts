// A small stand-in for DataKit's HTTP API: enough of /v1/write/:category,
// /v1/ping and /v1/lasterror for the quick start (see what the collector sends
// without installing DataKit) and for tests. Bodies go through the strict
// parser, so it is pickier than DataKit about line protocol, never laxer.
// setResponder() lets a test force any answer (500, 429, a slow or dropped
// response) to exercise the uploader's failure handling.

import http from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { parseLines, type ParsedPoint } from '../lineproto/parse';

export interface ReceivedWrite {
  /** The request target as sent, e.g. `/v1/write/network?input=ebpf-net%2Fnetflow&precision=ns`. */
  url: string;
  category: string;
  input: string;
  precision: string;
  /** The decoded (decompressed) body. */
  body: string;
  /** Parsed points; empty when the body was rejected. */
  points: ParsedPoint[];
  receivedAt: Date;
  /** What the receiver answered: 200, 400 for a bad body, or whatever a responder forced. */
  status: number;
  /** Why the body was rejected, if it was. */
  error?: string;
}

export interface ReceivedLastError {
  input: string;
  source: string;
  errContent: string;
  receivedAt: Date;
}

export interface ResponderRequest {
  method: string;
  /** The request target as sent (path and raw query). */
  url: string;
  /** URL path without the query, e.g. `/v1/write/network`. */
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** The decoded body ('' for GET). */
  body: string;
  /** For writes: the parsed points, or undefined when the body does not parse. */
  points?: ParsedPoint[];
}

export interface ForcedResponse {
  status: number;
  /** A string is sent as is; an object as JSON. */
  body?: string | object;
  headers?: Record<string, string>;
  /** Wait this long before answering (to exercise client timeouts). */
  delayMs?: number;
  /** Drop the connection without answering. */
  hangUp?: boolean;
}

/** Returns a response to force, or undefined for the default behaviour. */
export type Responder = (req: ResponderRequest) => ForcedResponse | undefined | Promise<ForcedResponse | undefined>;

export interface ReceiverOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Called for every accepted write (status 200). */
  onWrite?: (w: ReceivedWrite) => void;
  /** Diagnostics (rejected requests, last errors), one line each. */
  log?: (line: string) => void;
  /** Largest decoded body accepted; larger ones get 413. */
  maxBodyBytes?: number;
}

export interface Receiver {
  /** e.g. `http://127.0.0.1:9529` */
  url: string;
  host: string;
  port: number;
  /** Every write request, accepted or not, in arrival order. */
  writes: ReceivedWrite[];
  lastErrors: ReceivedLastError[];
  /** Points of accepted writes, optionally only one measurement. */
  points(measurement?: string): ParsedPoint[];
  setResponder(fn: Responder | undefined): void;
  /** Forgets recorded writes and last errors. */
  clear(): void;
  /** Stops listening and drops open connections. Idempotent. */
  close(): Promise<void>;
}

/** The error body DataKit sends. */
export function dataKitError(status: number, errorCode: string, message: string): ForcedResponse {
  return { status, body: { error_code: errorCode, message } };
}

// Categories DataKit routes under /v1/write/ (others get datakit.invalidCategory).
const CATEGORIES = new Set(['metric', 'network', 'keyevent', 'object', 'custom_object', 'logging', 'tracing', 'rum', 'security', 'profiling']);
const DEFAULT_MAX_BODY = 64 * 1024 * 1024;

const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);
const inflateRaw = promisify(zlib.inflateRaw);
const brotli = promisify(zlib.brotliDecompress);

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpFailure(413, 'datakit.requestEntityTooLarge', `body larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

async function decode(raw: Buffer, encoding: string | undefined, limit: number): Promise<string> {
  const opts = { maxOutputLength: limit };
  let buf: Buffer;
  const enc = (encoding ?? 'identity').trim().toLowerCase();
  try {
    switch (enc) {
      case '':
      case 'identity':
        buf = raw;
        break;
      case 'gzip':
      case 'x-gzip':
        buf = await gunzip(raw, opts);
        break;
      case 'deflate':
        // RFC 9110 says zlib-wrapped, but some clients send raw deflate.
        buf = await inflate(raw, opts).catch(() => inflateRaw(raw, opts));
        break;
      case 'br':
        buf = await brotli(raw, opts);
        break;
      default:
        throw new HttpFailure(415, 'datakit.unsupportedEncoding', `Content-Encoding ${enc} is not supported by this receiver`);
    }
  } catch (err) {
    if (err instanceof HttpFailure) throw err;
    throw new HttpFailure(400, 'datakit.invalidBody', `cannot decode ${enc} body: ${(err as Error).message}`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    throw new HttpFailure(400, 'datakit.invalidLinePoint', 'body is not valid UTF-8');
  }
}

function formatUptime(ms: number): string {
  // Go's time.Duration style, as DataKit prints it.
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${m}m${sec}s` : m > 0 ? `${m}m${sec}s` : `${sec}s`;
}

export async function startReceiver(opts: ReceiverOptions = {}): Promise<Receiver> {
  const host = opts.host ?? '127.0.0.1';
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const log = opts.log ?? (() => undefined);
  const startedAt = Date.now();
  const writes: ReceivedWrite[] = [];
  const lastErrors: ReceivedLastError[] = [];
  let responder: Responder | undefined;

  function send(res: http.ServerResponse, status: number, body?: string | object, headers: Record<string, string> = {}): void {
    const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
    const h: Record<string, string> = { ...headers };
    if (typeof body === 'object' && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
      h['content-type'] = 'application/json';
    }
    res.writeHead(status, h);
    res.end(text);
  }

  async function forced(req: http.IncomingMessage, res: http.ServerResponse, r: ResponderRequest): Promise<ForcedResponse | undefined> {
    if (!responder) return undefined;
    const f = await responder(r);
    if (!f) return undefined;
    if (f.delayMs) await new Promise((resolve) => setTimeout(resolve, f.delayMs));
    if (f.hangUp) {
      req.socket.destroy();
      return f;
    }
    send(res, f.status, f.body, f.headers);
    return f;
  }

  async function handleWrite(req: http.IncomingMessage, res: http.ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const category = path.slice('/v1/write/'.length);
    const input = query.get('input') ?? 'datakit-http';
    const precision = query.get('precision') ?? 'n';
    let body: string;
    try {
      body = await decode(await readBody(req, limit), req.headers['content-encoding'], limit);
    } catch (err) {
      const e = err as Error;
      const status = e instanceof HttpFailure ? e.status : 500;
      writes.push({ url: req.url ?? path, category, input, precision, body: '', points: [], receivedAt: new Date(), status, error: e.message });
      throw err;
    }

    let points: ParsedPoint[] | undefined;
    let failure: HttpFailure | undefined;
    if (!CATEGORIES.has(category)) {
      failure = new HttpFailure(400, 'datakit.invalidCategory', `invalid URL "${path}"`);
    } else if (body.length === 0) {
      failure = new HttpFailure(400, 'datakit.emptyBody', 'empty body');
    } else {
      try {
        points = parseLines(body);
        if (points.length === 0) failure = new HttpFailure(400, 'datakit.noPoints', 'no points');
      } catch (err) {
        failure = new HttpFailure(400, 'datakit.invalidLinePoint', (err as Error).message);
      }
    }

    const url = req.url ?? path;
    const w: ReceivedWrite = { url, category, input, precision, body, points: [], receivedAt: new Date(), status: 200 };
    const f = await forced(req, res, { method: 'POST', url, path, query, headers: req.headers, body, points });
    if (f) {
      w.status = f.hangUp ? 0 : f.status;
      if (w.status === 200 && points && !failure) w.points = points;
      writes.push(w);
      if (w.status === 200 && !failure) opts.onWrite?.(w);
      return;
    }
    if (failure) {
      w.status = failure.status;
      w.error = failure.message;
      writes.push(w);
      log(`rejected write ${category} input=${input}: HTTP ${failure.status} ${failure.errorCode}: ${failure.message}`);
      send(res, failure.status, { error_code: failure.errorCode, message: failure.message });
      return;
    }
    w.points = points ?? [];
    writes.push(w);
    opts.onWrite?.(w);
    send(res, 200);
  }

  async function handleLastError(req: http.IncomingMessage, res: http.ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const body = await decode(await readBody(req, limit), req.headers['content-encoding'], limit);
    if (await forced(req, res, { method: 'POST', url: req.url ?? path, path, query, headers: req.headers, body })) return;
    let j: unknown;
    try {
      j = JSON.parse(body);
    } catch {
      throw new HttpFailure(400, 'datakit.invalidJSON', 'body is not JSON');
    }
    const o = (j && typeof j === 'object' ? j : {}) as Record<string, unknown>;
    if (typeof o.input !== 'string' || typeof o.err_content !== 'string') {
      throw new HttpFailure(400, 'datakit.invalidJSON', 'expected {"input":"...","source":"...","err_content":"..."}');
    }
    const e: ReceivedLastError = {
      input: o.input,
      source: typeof o.source === 'string' ? o.source : '',
      errContent: o.err_content,
      receivedAt: new Date(),
    };
    lastErrors.push(e);
    log(`last error from ${e.input}: ${e.errContent}`);
    send(res, 200);
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://receiver');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    try {
      if (path.startsWith('/v1/write/')) {
        if (method !== 'POST') throw new HttpFailure(405, 'datakit.methodNotAllowed', `${method} not allowed`);
        await handleWrite(req, res, path, url.searchParams);
      } else if (path === '/v1/ping') {
        if (method !== 'GET') throw new HttpFailure(405, 'datakit.methodNotAllowed', `${method} not allowed`);
        req.resume();
        if (await forced(req, res, { method, url: req.url ?? path, path, query: url.searchParams, headers: req.headers, body: '' })) return;
        send(res, 200, { content: { version: 'receiver-0.1', uptime: formatUptime(Date.now() - startedAt), host: os.hostname(), commit: '' } });
      } else if (path === '/v1/lasterror') {
        if (method !== 'POST') throw new HttpFailure(405, 'datakit.methodNotAllowed', `${method} not allowed`);
        await handleLastError(req, res, path, url.searchParams);
      } else {
        req.resume();
        send(res, 404, '404 page not found\n', { 'content-type': 'text/plain; charset=utf-8' });
      }
    } catch (err) {
      const f = err instanceof HttpFailure ? err : new HttpFailure(500, 'datakit.internalError', (err as Error).message);
      log(`${method} ${path}: HTTP ${f.status} ${f.errorCode}: ${f.message}`);
      if (!res.headersSent && !res.destroyed) send(res, f.status, { error_code: f.errorCode, message: f.message });
    }
  }

  const server = http.createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;

  return {
    url: `http://${urlHost}:${port}`,
    host,
    port,
    writes,
    lastErrors,
    points(measurement?: string): ParsedPoint[] {
      const out: ParsedPoint[] = [];
      for (const w of writes) {
        if (w.status !== 200) continue;
        for (const p of w.points) if (measurement === undefined || p.measurement === measurement) out.push(p);
      }
      return out;
    },
    setResponder(fn: Responder | undefined): void {
      responder = fn;
    },
    clear(): void {
      writes.length = 0;
      lastErrors.length = 0;
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
