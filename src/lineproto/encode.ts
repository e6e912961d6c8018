// InfluxDB line-protocol encoder for the points DataKit's /v1/write API accepts.
//
// Output matches @influxdata/influxdb-client's Point#toLineProtocol byte for byte
// (tests use it as an oracle), with these deliberate differences:
//   - ints are exact: a bigint keeps all 64 bits (the oracle goes through a double);
//   - a trailing backslash in a tag value is dropped: DataKit's parser (influxdb1-client
//     models) treats any byte after a backslash as escaped, so `v\` followed by the
//     delimiter would swallow the delimiter and DataKit rejects the whole batch. The
//     oracle emits the broken line. Dropping it keeps the point (process names come
//     from the kernel and a rogue `comm` must not hide a process's traffic);
//   - empty keys, a trailing backslash in a key or measurement, a measurement starting
//     with `#` (a comment line to the parser), and bad numbers throw TypeError instead of
//     being skipped or emitted broken: those come from our code, not from the kernel.
// Tags and fields are sorted by key (UTF-16 order, as the oracle does) so the output
// is deterministic whatever order the aggregators built the objects in.

import { Float, type FieldValue, type Point } from './point';

const BACKSLASH = 92;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// Replacement for each ASCII char that needs escaping in a context, or undefined.
// Newline, CR and tab become the two-character sequences `\n`, `\r`, `\t` (as the
// oracle does) so a hostile tag value can never start a new line.
type EscapeTable = (string | undefined)[];

function table(chars: Record<string, string>): EscapeTable {
  const t: EscapeTable = new Array(128).fill(undefined);
  for (const [c, rep] of Object.entries(chars)) t[c.charCodeAt(0)] = rep;
  return t;
}

const CONTROL = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
const MEASUREMENT_ESC = table({ ',': '\\,', ' ': '\\ ', ...CONTROL });
const KEY_ESC = table({ ',': '\\,', ' ': '\\ ', '=': '\\=', ...CONTROL }); // tag keys/values, field keys

// Scans once; allocates only when something needs escaping (the common case for
// IPs, ports and fixed key names is to return the input unchanged).
function escapeWith(s: string, esc: EscapeTable): string {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 128 && esc[c] !== undefined) return escapeFrom(s, i, esc);
  }
  return s;
}

function escapeFrom(s: string, first: number, esc: EscapeTable): string {
  let out = s.slice(0, first);
  let from = first;
  const n = s.length;
  for (let i = first; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 128) {
      const rep = esc[c];
      if (rep !== undefined) {
        out += s.slice(from, i) + rep;
        from = i + 1;
      }
    }
  }
  return from < n ? out + s.slice(from) : out;
}

function escapeStringValue(s: string): string {
  const n = s.length;
  let i = 0;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 34 || c === BACKSLASH) break;
  }
  if (i === n) return '"' + s + '"';
  let out = '"' + s.slice(0, i);
  let from = i;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 34 || c === BACKSLASH) {
      out += s.slice(from, i) + '\\';
      from = i; // the char itself is copied with the next slice
    }
  }
  return out + s.slice(from) + '"';
}

function endsWithBackslash(s: string): boolean {
  return s.charCodeAt(s.length - 1) === BACKSLASH;
}

function encodeName(s: unknown, what: string, esc: EscapeTable): string {
  if (typeof s !== 'string' || s.length === 0) {
    throw new TypeError(`line protocol: ${what} must be a non-empty string`);
  }
  if (endsWithBackslash(s)) {
    throw new TypeError(`line protocol: ${what} ${JSON.stringify(s)} ends with a backslash, which would escape the delimiter after it`);
  }
  return escapeWith(s, esc);
}

function encodeTagValue(v: unknown, key: string): string {
  if (typeof v !== 'string') {
    throw new TypeError(`line protocol: tag ${JSON.stringify(key)} must be a string, got ${typeof v}`);
  }
  let end = v.length;
  while (end > 0 && v.charCodeAt(end - 1) === BACKSLASH) end--;
  return escapeWith(end === v.length ? v : v.slice(0, end), KEY_ESC);
}

function encodeFieldValue(v: FieldValue, key: string): string {
  switch (typeof v) {
    case 'number':
      if (!Number.isSafeInteger(v)) {
        throw new TypeError(`line protocol: field ${JSON.stringify(key)} = ${v} is not a safe integer; wrap floats with float(x) and pass large ints as bigint`);
      }
      return v + 'i';
    case 'bigint':
      if (v < INT64_MIN || v > INT64_MAX) {
        throw new TypeError(`line protocol: field ${JSON.stringify(key)} = ${v} is outside int64`);
      }
      return v + 'i';
    case 'string':
      return escapeStringValue(v);
    case 'boolean':
      return v ? 'T' : 'F';
    default:
      if (v instanceof Float) {
        if (!Number.isFinite(v.value)) {
          throw new TypeError(`line protocol: field ${JSON.stringify(key)} = ${v.value} is not a finite float`);
        }
        return String(v.value);
      }
      throw new TypeError(`line protocol: field ${JSON.stringify(key)} has unsupported type ${v === null ? 'null' : typeof v}`);
  }
}

// Netflow tag values repeat across points and intervals (host, service, ports,
// process names, IPs of busy peers), so the encoded `,key=value` segment is
// memoised per key. That removes most of the per-point garbage, which dominates
// the cost of encoding large batches. Bounded: a full map is dropped and refilled.
const SEGMENT_CACHE_PER_KEY = 2048;
const MAX_CACHED_TAG_KEYS = 256;
const segments = new Map<string, Map<string, string>>();

function tagSegment(k: string, v: string): string {
  let byValue = segments.get(k);
  if (byValue === undefined) {
    encodeName(k, 'tag key', KEY_ESC); // validate before caching anything under k
    if (segments.size >= MAX_CACHED_TAG_KEYS) segments.clear();
    byValue = new Map();
    segments.set(k, byValue);
  }
  let seg = byValue.get(v);
  if (seg === undefined) {
    const ev = encodeTagValue(v, k);
    seg = ev === '' ? '' : ',' + encodeName(k, 'tag key', KEY_ESC) + '=' + ev; // '' : was only backslashes
    if (byValue.size >= SEGMENT_CACHE_PER_KEY) byValue.clear();
    byValue.set(v, seg);
  }
  return seg;
}

// Object.keys already returns a fresh array; aggregators usually build objects in
// sorted order, so check before paying for a sort.
function sortedKeys(o: object): string[] {
  const keys = Object.keys(o);
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1] > keys[i]) return keys.sort();
  }
  return keys;
}

/** One line of line protocol for `p`, without the trailing newline. Throws TypeError on a point that cannot be encoded. */
export function encodePoint(p: Point): string {
  const m = p.measurement;
  if (typeof m === 'string' && m.charCodeAt(0) === 35 /* # */) {
    throw new TypeError(`line protocol: measurement ${JSON.stringify(m)} starts with '#', which makes the line a comment`);
  }
  let line = encodeName(m, 'measurement', MEASUREMENT_ESC);

  const tags = p.tags;
  if (tags !== undefined && tags !== null) {
    const keys = sortedKeys(tags);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      const v = tags[k];
      // Line protocol has no empty tag values; undefined is an optional tag left unset.
      if (v === '' || v === undefined) continue;
      line += tagSegment(k, v);
    }
  }

  const fields = p.fields;
  const fkeys = fields ? sortedKeys(fields) : [];
  if (fkeys.length === 0) {
    throw new TypeError(`line protocol: point ${JSON.stringify(m)} has no fields`);
  }
  line += ' ';
  for (let i = 0; i < fkeys.length; i++) {
    const k = fkeys[i];
    if (i > 0) line += ',';
    line += encodeName(k, 'field key', KEY_ESC) + '=' + encodeFieldValue(fields[k], k);
  }

  const ts = p.timestampNs;
  if (typeof ts !== 'bigint' || ts < INT64_MIN || ts > INT64_MAX) {
    throw new TypeError(`line protocol: timestampNs of ${JSON.stringify(m)} must be a bigint within int64, got ${String(ts)}`);
  }
  return line + ' ' + ts;
}

/**
 * Appends newline-terminated lines as UTF-8 to a growable Buffer. Large bodies
 * are built off the V8 heap on purpose: a string body of more than ~128 KiB
 * lands in V8's large-object space, and allocating those while the aggregators
 * hold a big heap costs several times more than encoding the points did.
 */
export class LineBuffer {
  private buf: Buffer;
  private len = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(256, initialBytes));
  }

  /** Bytes written so far. */
  get length(): number {
    return this.len;
  }

  /** Appends `line` and a newline; returns the bytes added. */
  append(line: string): number {
    // UTF-16 length * 3 bounds the UTF-8 length; +1 for the newline
    const need = line.length * 3 + 1;
    if (this.len + need > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + need));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    const n = this.buf.write(line, this.len, 'utf8') + 1;
    this.buf[this.len + n - 1] = 10;
    this.len += n;
    return n;
  }

  /** The bytes written (a view, valid until the next append). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.len);
  }

  /** Removes and returns (as an exact-size copy) the first `n` bytes; the rest moves to the front. */
  take(n: number): Buffer {
    const out = Buffer.from(this.buf.subarray(0, n));
    this.buf.copy(this.buf, 0, n, this.len);
    this.len -= n;
    return out;
  }
}

/** Newline-terminated lines for all points; throws on the first point that cannot be encoded. */
export function encodePoints(points: readonly Point[]): string {
  if (points.length === 0) return '';
  const out = new LineBuffer(points.length * 512);
  for (let i = 0; i < points.length; i++) out.append(encodePoint(points[i]));
  return out.bytes().toString('utf8');
}
