// Delivers points to the DataKit API server (/v1/write/:category). Encoding and
// splitting into batches is kept apart from sending one batch (sendBatch) so the
// retry/backoff, gzip and disk-spool work planned next can wrap the sender
// without touching the batching.
//
// Contract with callers: write/ping/reportLastError never throw and never reject.
// Upstream delivery has no client timeout and drops a failed batch silently; ours
// bounds every phase of a request and logs each failure once, with the cause and
// what to do about it.

import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { Pool } from 'undici';
import type { Logger } from 'pino';
import type { Point } from '../lineproto/point';
import { encodePoint, LineBuffer } from '../lineproto/encode';

export type Category = 'network' | 'logging' | 'metric';

export interface UploaderOptions {
  /** e.g. `http://127.0.0.1:9529`; a missing scheme means http. A path prefix is kept. */
  baseUrl: string;
  logger: Logger;
  /** Points per POST (upstream sends 256). */
  maxBatchPoints?: number;
  /** Body bytes per POST; a single larger line is still sent, alone. */
  maxBatchBytes?: number;
  /** Bound for connecting, for the response headers and for each gap in the response body. */
  timeoutMs?: number;
}

export interface WriteResult {
  sentPoints: number;
  failedPoints: number;
  batches: number;
  failedBatches: number;
}

export type SendOutcome =
  | { kind: 'ok' }
  | { kind: 'http'; status: number; errorCode?: string; message?: string }
  | { kind: 'network'; error: Error };

export interface Batch {
  /** UTF-8 line protocol, newline-terminated. */
  body: Buffer;
  points: number;
  bytes: number;
  /** Byte offset just past each point's line: a string field may hold a raw newline, so '\n' is no point boundary. */
  ends: number[];
}

export interface EncodedBatches {
  batches: Batch[];
  /** Points that could not be encoded (each is a bug in the producer); they are not in any batch. */
  rejected: number;
  firstError?: Error;
}

const gzipAsync = promisify(zlib.gzip);

type Exchange = { kind: 'response'; status: number; text: string } | { kind: 'network'; error: Error };

const DEFAULT_MAX_POINTS = 256;
const DEFAULT_MAX_BYTES = 1 << 20;
const DEFAULT_TIMEOUT_MS = 10_000;
// Error bodies from DataKit are a short JSON object; never buffer more than this.
const MAX_RESPONSE_TEXT = 64 * 1024;
const FIX_HINT = 'is DataKit running? check --datakit-apiserver';
// Errors after which the other batches of the same write would fail the same way.
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);

/** Encodes points into newline-terminated bodies of at most maxPoints points and (unless one line alone is larger) maxBytes bytes. */
export function encodeBatches(points: readonly Point[], maxPoints: number, maxBytes: number): EncodedBatches {
  const batches: Batch[] = [];
  const lb = new LineBuffer(Math.min(maxBytes, points.length * 1024) + 4096);
  let rejected = 0;
  let firstError: Error | undefined;
  let count = 0;
  let ends: number[] = [];
  const cut = (n: number): void => {
    const body = lb.take(n);
    const inBatch = ends.filter((e) => e <= n);
    batches.push({ body, points: count, bytes: body.length, ends: inBatch });
    // What stays in the buffer starts the next batch.
    ends = ends.slice(inBatch.length).map((e) => e - n);
    count = 0;
  };
  for (const p of points) {
    let line: string;
    try {
      line = encodePoint(p);
    } catch (err) {
      rejected++;
      firstError ??= err as Error;
      continue;
    }
    if (count >= maxPoints) cut(lb.length);
    const before = lb.length;
    const n = lb.append(line);
    ends.push(before + n);
    if (count > 0 && before + n > maxBytes) cut(before); // this line starts the next batch
    count++;
  }
  if (count > 0) cut(lb.length);
  return { batches, rejected, firstError };
}

function errorCode(err: unknown): string | undefined {
  if (!err || typeof err !== 'object') return undefined;
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string') return e.code;
  // Node's happy-eyeballs connect reports an AggregateError per address family.
  if (Array.isArray(e.errors)) {
    for (const inner of e.errors) {
      const c = errorCode(inner);
      if (c) return c;
    }
  }
  return e.cause ? errorCode(e.cause) : undefined;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** DataKit answers errors as {"error_code":"datakit.xxx","message":"..."}; anything else is reported as text. */
function parseDataKitError(text: string): { errorCode?: string; message?: string } {
  const trimmed = text.trim();
  if (trimmed === '') return {};
  try {
    const j: unknown = JSON.parse(trimmed);
    if (j && typeof j === 'object') {
      const o = j as Record<string, unknown>;
      const errorCode = typeof o.error_code === 'string' ? o.error_code : undefined;
      const message = typeof o.message === 'string' ? o.message : undefined;
      if (errorCode !== undefined || message !== undefined) return { errorCode, message };
    }
  } catch {
    /* not JSON: fall through */
  }
  return { message: trimmed.length > 300 ? trimmed.slice(0, 297) + '...' : trimmed };
}

export class Uploader {
  private readonly pool: Pool;
  private readonly origin: string;
  private readonly pathPrefix: string;
  /** `&token=...` when the base URL carries DataKit's token parameter. */
  private readonly extraQuery: string;
  private readonly log: Logger;
  private readonly maxBatchPoints: number;
  private readonly maxBatchBytes: number;
  private readonly timeoutMs: number;
  private closing?: Promise<void>;
  private destroyed = false;
  private readonly inflight = new Set<Promise<unknown>>();

  constructor(opts: UploaderOptions) {
    const raw = /^[a-z][a-z0-9+.-]*:\/\//i.test(opts.baseUrl) ? opts.baseUrl : `http://${opts.baseUrl}`;
    const url = new URL(raw);
    this.origin = url.origin;
    this.pathPrefix = url.pathname.replace(/\/+$/, '');
    const token = url.searchParams.get('token');
    this.extraQuery = token ? `&token=${encodeURIComponent(token)}` : '';
    this.log = opts.logger;
    this.maxBatchPoints = Math.max(1, Math.floor(opts.maxBatchPoints ?? DEFAULT_MAX_POINTS));
    this.maxBatchBytes = Math.max(1, Math.floor(opts.maxBatchBytes ?? DEFAULT_MAX_BYTES));
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.pool = new Pool(this.origin, {
      // Batches of one write go out one after another; a few sockets cover
      // concurrent writes of different inputs plus ping/lasterror.
      connections: 4,
      connectTimeout: this.timeoutMs,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      // Long enough to reuse a socket across the batches of one write; shorter
      // than any sane server idle timeout, so we never POST on a socket the
      // server is closing (undici does not retry a POST).
      keepAliveTimeout: 10_000,
    });
  }

  /** The API server this uploader talks to, for messages. */
  get apiServer(): string {
    return this.origin + this.pathPrefix;
  }

  write(category: Category, input: string, points: readonly Point[]): Promise<WriteResult> {
    return this.track(this.doWrite(category, input, points));
  }

  private async doWrite(category: Category, input: string, points: readonly Point[]): Promise<WriteResult> {
    const result: WriteResult = { sentPoints: 0, failedPoints: 0, batches: 0, failedBatches: 0 };
    try {
      const { batches, rejected, firstError } = encodeBatches(points, this.maxBatchPoints, this.maxBatchBytes);
      if (rejected > 0) {
        result.failedPoints += rejected;
        this.log.error(
          { input, category, points: rejected, err: firstError?.message },
          `dropped ${rejected} ${input} point(s) that cannot be encoded as line protocol: ${firstError?.message}`,
        );
      }
      if (batches.length === 0) return result;
      result.batches = batches.length;

      if (this.closing || this.destroyed) {
        const n = batches.reduce((a, b) => a + b.points, 0);
        this.log.warn({ input, category, points: n }, `uploader is closed; dropped ${n} ${input} point(s)`);
        result.failedBatches = batches.length;
        result.failedPoints += n;
        return result;
      }

      const path = `${this.pathPrefix}/v1/write/${category}?input=${encodeURIComponent(input)}&precision=ns${this.extraQuery}`;
      for (let i = 0; i < batches.length; i++) {
        const b = batches[i];
        const outcome = await this.sendBatch(path, b.body);
        if (outcome.kind === 'ok') {
          result.sentPoints += b.points;
          continue;
        }
        result.failedBatches++;
        result.failedPoints += b.points;
        if (outcome.kind === 'http') {
          this.logHttpFailure(category, input, b.points, outcome);
          continue;
        }
        if (!UNREACHABLE.has(errorCode(outcome.error) ?? '')) {
          // e.g. a reset connection: the next batch gets a fresh one
          this.logNetworkFailure(category, input, b.points, outcome.error);
          continue;
        }
        // The server is unreachable: the remaining batches would each wait out
        // the same failure (up to timeoutMs apiece), so give up on this write.
        const rest = batches.slice(i + 1);
        const restPoints = rest.reduce((a, r) => a + r.points, 0);
        result.failedBatches += rest.length;
        result.failedPoints += restPoints;
        this.logNetworkFailure(category, input, b.points + restPoints, outcome.error);
        break;
      }
    } catch (err) {
      // Defensive: nothing above should throw, but write() must never reject.
      this.log.error({ input, category, err: asError(err).message }, `unexpected error while sending ${input} points: ${asError(err).message}`);
      result.failedPoints = points.length - result.sentPoints;
    }
    return result;
  }

  /** GET /v1/ping. */
  ping(): Promise<{ ok: boolean; version?: string; error?: string }> {
    return this.track(this.doPing());
  }

  private async doPing(): Promise<{ ok: boolean; version?: string; error?: string }> {
    const r = await this.exchange('GET', `${this.pathPrefix}/v1/ping`);
    if (r.kind === 'network') return { ok: false, error: this.describeNetworkError(r.error) };
    if (r.status < 200 || r.status >= 300) {
      const { errorCode, message } = parseDataKitError(r.text);
      return { ok: false, error: `HTTP ${r.status}${errorCode ? ` ${errorCode}` : ''}${message ? `: ${message}` : ''}` };
    }
    try {
      const j = JSON.parse(r.text) as { content?: { version?: unknown } };
      const v = j?.content?.version;
      return typeof v === 'string' ? { ok: true, version: v } : { ok: true };
    } catch {
      return { ok: true };
    }
  }

  /** POST /v1/lasterror, how an input tells DataKit it is broken. Resolves to whether DataKit accepted it. */
  reportLastError(input: string, errContent: string): Promise<boolean> {
    return this.track(this.doReportLastError(input, errContent));
  }

  private async doReportLastError(input: string, errContent: string): Promise<boolean> {
    const body = JSON.stringify({ input, source: '', err_content: errContent });
    const r = await this.exchange('POST', `${this.pathPrefix}/v1/lasterror`, body, { 'content-type': 'application/json' });
    if (r.kind === 'network') {
      this.log.warn({ input }, `could not report the last error to DataKit: ${this.describeNetworkError(r.error)}`);
      return false;
    }
    if (r.status < 200 || r.status >= 300) {
      const { errorCode, message } = parseDataKitError(r.text);
      this.log.warn(
        { input, status: r.status, error_code: errorCode },
        `DataKit refused the last-error report: HTTP ${r.status}${errorCode ? ` ${errorCode}` : ''}${message ? `: ${message}` : ''}`,
      );
      return false;
    }
    return true;
  }

  /**
   * Lets in-flight calls finish (every batch of a write already started, each
   * bounded by timeoutMs), then releases the sockets. Calls made after close()
   * send nothing. Idempotent.
   */
  close(): Promise<void> {
    if (this.destroyed) return Promise.resolve();
    this.closing ??= (async () => {
      while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
      if (!this.destroyed) await this.pool.close().catch(() => undefined);
    })();
    return this.closing;
  }

  /** Aborts in-flight requests and releases the sockets at once. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.pool.destroy().catch(() => undefined);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    p.finally(() => this.inflight.delete(p)).catch(() => undefined);
    return p;
  }

  /**
   * One attempt to POST an encoded line-protocol body, optionally gzipped;
   * never rejects. The retry policy and the spool (delivery.ts) wrap this.
   */
  post(category: string, input: string, body: Buffer, gzip = false, precision = 'ns'): Promise<SendOutcome> {
    const path = `${this.pathPrefix}/v1/write/${category}?input=${encodeURIComponent(input)}&precision=${encodeURIComponent(precision)}${this.extraQuery}`;
    return this.track(
      (async (): Promise<SendOutcome> => {
        if (this.closing || this.destroyed) return { kind: 'network', error: Object.assign(new Error('uploader closed'), { code: 'UND_ERR_CLOSED' }) };
        if (!gzip) return this.sendBatch(path, body);
        return this.sendBatch(path, await gzipAsync(body), { 'content-encoding': 'gzip' });
      })(),
    );
  }

  /** Describes a failed attempt in one line (cause and fix). */
  describe(o: Exclude<SendOutcome, { kind: 'ok' }>): string {
    if (o.kind === 'network') return this.describeNetworkError(o.error);
    const hint =
      o.status === 403
        ? ' (DataKit serves this API to non-loopback clients only if it is listed in public_apis under [http_api] in datakit.conf)'
        : o.status === 404
          ? ` (is ${this.apiServer} really DataKit's API server? check --datakit-apiserver)`
          : o.status === 429
            ? ' (DataKit is rate limiting its API)'
            : '';
    return `HTTP ${o.status}${o.errorCode ? ` ${o.errorCode}` : ''}${o.message ? `: ${o.message}` : ''}${hint}`;
  }

  /** One POST of one batch body; the unit a retry policy will wrap. */
  private async sendBatch(path: string, body: Buffer, headers?: Record<string, string>): Promise<SendOutcome> {
    const r = await this.exchange('POST', path, body, headers);
    if (r.kind === 'network') return r;
    if (r.status >= 200 && r.status < 300) return { kind: 'ok' };
    return { kind: 'http', status: r.status, ...parseDataKitError(r.text) };
  }

  private async exchange(method: 'GET' | 'POST', path: string, body?: string | Buffer, headers?: Record<string, string>): Promise<Exchange> {
    try {
      const res = await this.pool.request({ method, path, body, headers });
      if (res.statusCode >= 200 && res.statusCode < 300 && method === 'POST') {
        await res.body.dump({ limit: MAX_RESPONSE_TEXT });
        return { kind: 'response', status: res.statusCode, text: '' };
      }
      return { kind: 'response', status: res.statusCode, text: await readCapped(res.body) };
    } catch (err) {
      return { kind: 'network', error: asError(err) };
    }
  }

  private logHttpFailure(category: Category, input: string, points: number, o: Extract<SendOutcome, { kind: 'http' }>): void {
    // 4xx other than 429 means our request or our data is wrong and retrying will not help.
    const level = o.status >= 400 && o.status < 500 && o.status !== 429 ? 'error' : 'warn';
    // DataKit's message may quote a point; a logging point is what someone typed.
    const shown = category === 'logging' && o.message !== undefined ? { ...o, message: '(not logged for logging points)' } : o;
    this.log[level](
      { input, category, status: o.status, error_code: o.errorCode, dk_message: shown.message, points },
      `DataKit rejected ${points} ${input} point(s): ${this.describe(shown)}`,
    );
  }

  private logNetworkFailure(category: Category, input: string, points: number, err: Error): void {
    this.log.error(
      { input, category, points, code: errorCode(err) },
      `dropped ${points} ${input} point(s): ${this.describeNetworkError(err)}`,
    );
  }

  private describeNetworkError(err: Error): string {
    const code = errorCode(err);
    const where = `DataKit API server ${this.apiServer}`;
    switch (code) {
      case 'UND_ERR_CLOSED':
      case 'UND_ERR_DESTROYED':
        return `the uploader was shut down before the request to ${where} finished`;
      case 'ECONNREFUSED':
        return `cannot connect to ${where} (connection refused): ${FIX_HINT}`;
      case 'UND_ERR_CONNECT_TIMEOUT':
        return `connecting to ${where} timed out after ${this.timeoutMs}ms: ${FIX_HINT}`;
      case 'UND_ERR_HEADERS_TIMEOUT':
      case 'UND_ERR_BODY_TIMEOUT':
        return `${where} did not answer within ${this.timeoutMs}ms (is it overloaded?): ${FIX_HINT}`;
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return `cannot resolve the host of ${where}: ${FIX_HINT}`;
      default: {
        const msg = err.message || (err instanceof AggregateError ? err.errors.map((e) => asError(e).message).join('; ') : String(err));
        return `request to ${where} failed (${code ?? err.name}: ${msg}): ${FIX_HINT}`;
      }
    }
  }
}

async function readCapped(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const room = MAX_RESPONSE_TEXT - size;
    chunks.push(chunk.length > room ? chunk.subarray(0, room) : chunk);
    size += Math.min(chunk.length, room);
    if (size >= MAX_RESPONSE_TEXT) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}
