// The one DataKit-compatible write path: what /v1/write/:category, /v1/ping and
// /v1/lasterror accept and how they answer, shared by the quick-start receiver
// (records and prints what arrives) and the console (stores and forwards it).
// Bodies go through the strict parser, so this is pickier than DataKit about line
// protocol, never laxer. Callers own routing and what happens to accepted points.

import type http from 'node:http';
import os from 'node:os';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { parseLines, type ParsedPoint } from '../lineproto/parse';

/** Categories DataKit routes under /v1/write/ (others get datakit.invalidCategory). */
export const CATEGORIES: ReadonlySet<string> = new Set(['metric', 'network', 'keyevent', 'object', 'custom_object', 'logging', 'tracing', 'rum', 'security', 'profiling']);
export const DEFAULT_MAX_BODY = 64 * 1024 * 1024;
const PRECISIONS = new Set(['n', 'ns', 'u', 'us', 'ms', 's', 'm', 'h']);

const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);
const inflateRaw = promisify(zlib.inflateRaw);
const brotli = promisify(zlib.brotliDecompress);

/** A request that gets DataKit's error JSON: `{"error_code":"datakit.x","message":"..."}`. */
export class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string,
  ) {
    super(message);
    this.name = 'HttpFailure';
  }
}

/** Reads a request body, refusing (413) more than `limit` bytes. */
export async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) {
    req.resume();
    throw new HttpFailure(413, 'datakit.requestEntityTooLarge', `body larger than ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      req.resume();
      throw new HttpFailure(413, 'datakit.requestEntityTooLarge', `body larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Undoes Content-Encoding (gzip, deflate, br) and checks UTF-8; the decoded size is bounded too. */
export async function decodeBody(raw: Buffer, encoding: string | undefined, limit: number): Promise<string> {
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
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new HttpFailure(413, 'datakit.requestEntityTooLarge', `decoded body larger than ${limit} bytes`);
    }
    throw new HttpFailure(400, 'datakit.invalidBody', `cannot decode ${enc} body: ${(err as Error).message}`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    throw new HttpFailure(400, 'datakit.invalidLinePoint', 'body is not valid UTF-8');
  }
}

/** A write request as received, before the caller decides what to do with it. */
export interface WriteRequest {
  /** The request target as sent, e.g. `/v1/write/network?input=ebpf-net%2Fnetflow&precision=ns`. */
  url: string;
  category: string;
  input: string;
  /** As sent (`n` when absent). */
  precision: string;
  /** The decoded body; '' when it could not be read or decoded. */
  body: string;
  /** Parsed points, when the body is acceptable. */
  points?: ParsedPoint[];
  /** Why DataKit would refuse it, if it would. */
  failure?: HttpFailure;
}

/**
 * Reads and checks one POST /v1/write/:category. A body that cannot be read or
 * decoded throws HttpFailure (nothing to show of it); a decoded body that is
 * not acceptable comes back with `failure` set, so a caller can still record it.
 * `parse: false` leaves the line protocol to the caller (the console parses in
 * worker threads); everything else is checked here.
 */
export async function readWrite(req: http.IncomingMessage, path: string, query: URLSearchParams, opts: { limit?: number; parse?: boolean } = {}): Promise<WriteRequest> {
  const limit = opts.limit ?? DEFAULT_MAX_BODY;
  const category = path.slice(path.indexOf('/v1/write/') + '/v1/write/'.length);
  const input = query.get('input') ?? 'datakit-http';
  const precision = query.get('precision') ?? 'n';
  const w: WriteRequest = { url: req.url ?? path, category, input, precision, body: '' };
  w.body = await decodeBody(await readBody(req, limit), req.headers['content-encoding'], limit);
  if (!CATEGORIES.has(category)) {
    w.failure = new HttpFailure(400, 'datakit.invalidCategory', `invalid URL "${path}"`);
  } else if (!PRECISIONS.has(precision)) {
    w.failure = new HttpFailure(400, 'datakit.invalidPrecision', `invalid precision "${precision}"; expected n, u, ms, s, m or h`);
  } else if (w.body.length === 0) {
    w.failure = new HttpFailure(400, 'datakit.emptyBody', 'empty body');
  } else if (opts.parse !== false) {
    try {
      w.points = parseLines(w.body);
      if (w.points.length === 0) w.failure = new HttpFailure(400, 'datakit.noPoints', 'no points');
    } catch (err) {
      w.failure = new HttpFailure(400, 'datakit.invalidLinePoint', (err as Error).message);
    }
  }
  if (w.failure) w.points = undefined;
  return w;
}

const NS_PER: Record<string, bigint> = { n: 1n, ns: 1n, u: 1_000n, us: 1_000n, ms: 1_000_000n, s: 1_000_000_000n, m: 60_000_000_000n, h: 3_600_000_000_000n };

/** A point's time in Unix milliseconds under the request's precision; `nowMs` when it has none. */
export function pointTimeMs(p: ParsedPoint, precision: string, nowMs: number): number {
  if (p.timestamp === undefined) return nowMs;
  if (precision === 'ms') return Number(p.timestamp);
  const ns = p.timestamp * (NS_PER[precision] ?? 1n);
  return Number(ns / 1_000_000n);
}

/** A last-error report as DataKit takes it: `{"input":"ebpf","source":"","err_content":"..."}`. */
export interface LastErrorReport {
  input: string;
  source: string;
  errContent: string;
}

export function parseLastError(body: string): LastErrorReport {
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
  return { input: o.input, source: typeof o.source === 'string' ? o.source : '', errContent: o.err_content };
}

/** GET /v1/ping's body, as DataKit sends it. */
export function pingBody(version: string, startedAt: number): object {
  return { content: { version, uptime: formatUptime(Date.now() - startedAt), host: os.hostname(), commit: '' } };
}

/** Go's time.Duration style, as DataKit prints it. */
export function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${m}m${sec}s` : m > 0 ? `${m}m${sec}s` : `${sec}s`;
}

/** Sends a status with a string (as is) or an object (as JSON). */
export function send(res: http.ServerResponse, status: number, body?: string | object | Buffer, headers: Record<string, string> = {}): void {
  const h: Record<string, string> = { ...headers };
  const isObject = typeof body === 'object' && !Buffer.isBuffer(body);
  if (isObject && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
  res.writeHead(status, h);
  res.end(body === undefined ? '' : isObject ? JSON.stringify(body) : body);
}

export function sendFailure(res: http.ServerResponse, f: HttpFailure): void {
  if (!res.headersSent && !res.destroyed) send(res, f.status, { error_code: f.errorCode, message: f.message });
}

/** 405 unless the method is the one this route takes. */
export function requireMethod(req: http.IncomingMessage, method: string): void {
  if ((req.method ?? 'GET') !== method) throw new HttpFailure(405, 'datakit.methodNotAllowed', `${req.method} not allowed`);
}
