// A small stand-in for DataKit's HTTP API: the shared write path
// (../writeapi/writeapi.ts) in memory, for the quick start (see what the
// collector sends without installing DataKit) and for tests. `datakit-ebpf
// console` is the same write path with a store behind it.
// setResponder() lets a test force any answer (500, 429, a slow or dropped
// response) to exercise the uploader's failure handling.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ParsedPoint } from '../lineproto/parse';
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
  type WriteRequest,
} from '../writeapi/writeapi';

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

export async function startReceiver(opts: ReceiverOptions = {}): Promise<Receiver> {
  const host = opts.host ?? '127.0.0.1';
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const log = opts.log ?? (() => undefined);
  const startedAt = Date.now();
  const writes: ReceivedWrite[] = [];
  const lastErrors: ReceivedLastError[] = [];
  let responder: Responder | undefined;

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
    let w: WriteRequest;
    try {
      w = await readWrite(req, path, query, { limit });
    } catch (err) {
      const e = err as Error;
      const status = e instanceof HttpFailure ? e.status : 500;
      const category = path.slice('/v1/write/'.length);
      writes.push({ url: req.url ?? path, category, input: query.get('input') ?? 'datakit-http', precision: query.get('precision') ?? 'n', body: '', points: [], receivedAt: new Date(), status, error: e.message });
      throw err;
    }
    const { failure, points } = w;
    const rec: ReceivedWrite = { url: w.url, category: w.category, input: w.input, precision: w.precision, body: w.body, points: [], receivedAt: new Date(), status: 200 };
    const f = await forced(req, res, { method: 'POST', url: w.url, path, query, headers: req.headers, body: w.body, points });
    if (f) {
      rec.status = f.hangUp ? 0 : f.status;
      if (rec.status === 200 && points) rec.points = points;
      writes.push(rec);
      if (rec.status === 200 && !failure) opts.onWrite?.(rec);
      return;
    }
    if (failure) {
      rec.status = failure.status;
      rec.error = failure.message;
      writes.push(rec);
      log(`rejected write ${w.category} input=${w.input}: HTTP ${failure.status} ${failure.errorCode}: ${failure.message}`);
      sendFailure(res, failure);
      return;
    }
    rec.points = points ?? [];
    writes.push(rec);
    opts.onWrite?.(rec);
    send(res, 200);
  }

  async function handleLastError(req: http.IncomingMessage, res: http.ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const body = await decodeBody(await readBody(req, limit), req.headers['content-encoding'], limit);
    if (await forced(req, res, { method: 'POST', url: req.url ?? path, path, query, headers: req.headers, body })) return;
    const e: ReceivedLastError = { ...parseLastError(body), receivedAt: new Date() };
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
        requireMethod(req, 'POST');
        await handleWrite(req, res, path, url.searchParams);
      } else if (path === '/v1/ping') {
        requireMethod(req, 'GET');
        req.resume();
        if (await forced(req, res, { method, url: req.url ?? path, path, query: url.searchParams, headers: req.headers, body: '' })) return;
        send(res, 200, pingBody('receiver-0.1', startedAt));
      } else if (path === '/v1/lasterror') {
        requireMethod(req, 'POST');
        await handleLastError(req, res, path, url.searchParams);
      } else {
        req.resume();
        send(res, 404, '404 page not found\n', { 'content-type': 'text/plain; charset=utf-8' });
      }
    } catch (err) {
      const f = err instanceof HttpFailure ? err : new HttpFailure(500, 'datakit.internalError', (err as Error).message);
      log(`${method} ${path}: HTTP ${f.status} ${f.errorCode}: ${f.message}`);
      sendFailure(res, f);
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
