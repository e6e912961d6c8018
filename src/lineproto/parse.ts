// Strict line-protocol parser. It accepts what DataKit's parser (influxdb1-client
// `models`, via GuanceCloud/cliutils/point) accepts and yields the values DataKit
// would store, and it rejects sloppiness DataKit tolerates but our encoder never
// produces (leading or doubled spaces, CRLF, duplicate keys), so a test or the
// receiver catches encoder bugs instead of hiding them.
//
// Escaping follows DataKit, not the line-protocol v2 spec:
//   - measurement, tag keys/values and field keys: a delimiter (`,` ` ` and, outside
//     the measurement, `=`) is escaped when the byte before it is a backslash; the
//     pairs `\,` `\ ` `\=` (measurement: `\,` `\ `) unescape, every other backslash is
//     kept literally. So `\n` written by the encoder for a newline reads back as the
//     two characters backslash and n, exactly as DataKit stores it.
//   - string field values: `\"` and `\\` unescape, other backslashes stay; raw
//     newlines inside the quotes are part of the value.
//
// Integer fields (`123i`) become a number when they are safe integers, else a
// bigint, so tests can write `toBe(42)`; `fieldTypes` keeps the wire type, because
// `1i` and `1` (a float) both read as the number 1. Unsigned (`123u`) is accepted the
// same way. Timestamps are bigint in the unit the sender chose (precision is a
// query parameter, not part of the body).

export type ParsedFieldValue = number | bigint | string | boolean;
export type FieldType = 'int' | 'uint' | 'float' | 'string' | 'bool';

export interface ParsedPoint {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, ParsedFieldValue>;
  fieldTypes: Record<string, FieldType>;
  timestamp?: bigint;
}

export class LineProtocolError extends Error {
  constructor(
    readonly reason: string,
    /** 1-based line number in the body. */
    readonly line: number,
    /** 1-based column (UTF-16 units) where the problem was found. */
    readonly column: number,
    readonly text: string,
  ) {
    super(`line ${line}, column ${column}: ${reason}: ${JSON.stringify(text.length > 120 ? text.slice(0, 117) + '...' : text)}`);
    this.name = 'LineProtocolError';
  }
}

const LF = 10;
const CR = 13;
const TAB = 9;
const SP = 32;
const QUOTE = 34;
const HASH = 35;
const COMMA = 44;
const EQ = 61;
const BS = 92;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const INT_RE = /^-?[0-9]+$/;
const UINT_RE = /^[0-9]+$/;
const FLOAT_RE = /^-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const BOOLS: Record<string, boolean> = {
  t: true, T: true, true: true, True: true, TRUE: true,
  f: false, F: false, false: false, False: false, FALSE: false,
};

// Single pass, left to right: the same result as influxdb1-client's sequential
// bytes.Replace for each pair, because no replacement produces a backslash.
function unescape(raw: string, allowEq: boolean): string {
  if (raw.indexOf('\\') < 0) return raw;
  let out = '';
  let from = 0;
  for (let i = 0; i < raw.length - 1; i++) {
    if (raw.charCodeAt(i) !== BS) continue;
    const next = raw.charCodeAt(i + 1);
    if (next === COMMA || next === SP || (allowEq && next === EQ)) {
      out += raw.slice(from, i);
      from = i + 1; // keep the escaped char, drop the backslash
      i++;
    }
  }
  return out + raw.slice(from);
}

// Keys repeat in every line; a sliced key is a fresh string that V8 must
// internalize on each property access. Handing out one string per key name makes
// `key in tags` and the stores cheap (the hottest spot of the parser before).
const KEYS = new Map<string, string>();
const MAX_KEYS = 4096;
function internKey(k: string): string {
  const known = KEYS.get(k);
  if (known !== undefined) return known;
  if (KEYS.size < MAX_KEYS) KEYS.set(k, k);
  return k;
}

// Null-prototype records so a `__proto__` key is data, not a prototype change.
function record<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

class Parser {
  private i = 0;
  private line = 1;
  private lineStart = 0;
  private readonly n: number;

  constructor(private readonly s: string) {
    this.n = s.length;
  }

  /** Receives each point's series text (measurement and tags, as written). */
  seriesKeys?: string[];

  parseAll(ends?: number[]): ParsedPoint[] {
    const out: ParsedPoint[] = [];
    const { s, n } = this;
    while (this.i < n) {
      const c = s.charCodeAt(this.i);
      if (c === LF) {
        this.newline(this.i + 1);
        continue;
      }
      if (c === SP || c === TAB || c === CR) {
        // Blank lines are fine; whitespace before a point is not something we emit.
        let j = this.i;
        while (j < n && (s.charCodeAt(j) === SP || s.charCodeAt(j) === TAB || s.charCodeAt(j) === CR)) j++;
        if (j >= n || s.charCodeAt(j) === LF) {
          this.i = j;
          continue;
        }
        this.fail(c === CR ? 'stray carriage return' : 'leading whitespace');
      }
      if (c === HASH) {
        const j = s.indexOf('\n', this.i);
        this.i = j < 0 ? n : j;
        continue;
      }
      out.push(this.point());
      ends?.push(this.i < n ? this.i + 1 : n);
    }
    return out;
  }

  private newline(at: number): void {
    this.i = at;
    this.line++;
    this.lineStart = at;
  }

  private fail(reason: string, at = this.i): never {
    let end = this.s.indexOf('\n', this.lineStart);
    if (end < 0) end = this.n;
    throw new LineProtocolError(reason, this.line, at - this.lineStart + 1, this.s.slice(this.lineStart, end));
  }

  private point(): ParsedPoint {
    const { s, n } = this;
    const start = this.i;

    // measurement: up to an unescaped ',' or ' ' (hot loops scan with a local
    // index and store it back only where they stop)
    let i = this.i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === LF) {
        this.i = i;
        this.fail('missing fields');
      }
      if ((c === COMMA || c === SP) && !(i > 0 && s.charCodeAt(i - 1) === BS)) break;
      i++;
    }
    this.i = i;
    if (this.i >= n) this.fail('missing fields');
    if (this.i === start) this.fail('missing measurement');
    const measurement = unescape(s.slice(start, this.i), false);

    const tags = record<string>();
    while (s.charCodeAt(this.i) === COMMA) {
      this.i++;
      const key = this.key('tag key', 'missing tag value');
      const vStart = this.i;
      let j = vStart;
      while (j < n) {
        const c = s.charCodeAt(j);
        if (c === LF) break;
        if ((c === EQ || c === COMMA || c === SP) && !(j > 0 && s.charCodeAt(j - 1) === BS)) {
          if (c === EQ) {
            this.i = j;
            this.fail('unescaped "=" in tag value');
          }
          break;
        }
        j++;
      }
      this.i = j;
      if (this.i === vStart) this.fail('missing tag value');
      if (this.i >= n || s.charCodeAt(this.i) === LF) this.fail('missing fields');
      if (key in tags) this.fail(`duplicate tag key ${JSON.stringify(key)}`, vStart);
      tags[key] = unescape(s.slice(vStart, this.i), true);
    }

    this.seriesKeys?.push(s.slice(start, this.i));
    // exactly one space, then fields
    this.i++;
    if (this.i >= n || s.charCodeAt(this.i) === LF) this.fail('missing fields');
    if (s.charCodeAt(this.i) === SP) this.fail('more than one space before fields');

    const fields = record<ParsedFieldValue>();
    const fieldTypes = record<FieldType>();
    for (;;) {
      const keyAt = this.i;
      const key = this.key('field key', 'missing field value');
      if (key in fields) this.fail(`duplicate field key ${JSON.stringify(key)}`, keyAt);
      this.fieldValue(key, fields, fieldTypes);
      const c = this.i < n ? s.charCodeAt(this.i) : LF;
      if (c === COMMA) {
        this.i++;
        continue;
      }
      if (c === SP || c === LF) break;
      this.fail(c === CR ? 'stray carriage return (CRLF line ending?)' : 'unexpected character after field value');
    }

    const p: ParsedPoint = { measurement, tags, fields, fieldTypes };
    if (this.i < n && s.charCodeAt(this.i) === SP) {
      this.i++;
      const tStart = this.i;
      let e = s.indexOf('\n', tStart);
      if (e < 0) e = n;
      this.i = e;
      const tok = s.slice(tStart, this.i);
      if (tok.length === 0) this.fail('trailing space without timestamp', tStart);
      if (tok.charCodeAt(tok.length - 1) === CR) this.fail('stray carriage return (CRLF line ending?)', this.i - 1);
      if (!INT_RE.test(tok)) this.fail('bad timestamp', tStart);
      const ts = BigInt(tok);
      if (ts < INT64_MIN || ts > INT64_MAX) this.fail('timestamp outside int64', tStart);
      p.timestamp = ts;
    }
    return p;
  }

  // A key ends at an unescaped '='; an unescaped ',' or ' ' (or the end of the line) first is an error.
  private key(what: string, whenCut: string): string {
    const { s, n } = this;
    const start = this.i;
    let i = start;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === LF) break;
      if ((c === EQ || c === COMMA || c === SP) && !(i > 0 && s.charCodeAt(i - 1) === BS)) {
        if (c === EQ) break;
        this.i = i;
        this.fail(i === start ? `missing ${what}` : `unescaped ${c === SP ? 'space' : 'comma'} in ${what}`);
      }
      i++;
    }
    this.i = i;
    if (this.i >= n || s.charCodeAt(this.i) === LF) this.fail(this.i === start ? `missing ${what}` : whenCut);
    if (this.i === start) this.fail(`missing ${what}`);
    const key = internKey(unescape(s.slice(start, this.i), true));
    this.i++; // '='
    return key;
  }

  private fieldValue(key: string, fields: Record<string, ParsedFieldValue>, types: Record<string, FieldType>): void {
    const { s, n } = this;
    const start = this.i;
    if (start < n && s.charCodeAt(start) === QUOTE) {
      let out = '';
      let from = start + 1;
      let i = from;
      for (;;) {
        if (i >= n) this.fail('unterminated string field value', start);
        const c = s.charCodeAt(i);
        if (c === BS && i + 1 < n) {
          const next = s.charCodeAt(i + 1);
          if (next === QUOTE || next === BS) {
            out += s.slice(from, i);
            from = i + 1;
            i += 2;
            continue;
          }
        }
        if (c === QUOTE) break;
        if (c === LF) {
          // a raw newline inside quotes belongs to the value; keep line numbers right
          this.line++;
          this.lineStart = i + 1;
        }
        i++;
      }
      fields[key] = out + s.slice(from, i);
      types[key] = 'string';
      this.i = i + 1;
      return;
    }

    // The common case, an integer of up to 15 digits (`123i`), read as it is
    // scanned; anything else takes the general path below.
    const c0 = s.charCodeAt(start);
    if (c0 === 45 /* - */ || (c0 >= 48 && c0 <= 57)) {
      const d0 = c0 === 45 ? start + 1 : start;
      let j = d0;
      let v = 0;
      while (j < n) {
        const c = s.charCodeAt(j);
        if (c < 48 || c > 57) break;
        v = v * 10 + (c - 48);
        j++;
      }
      if (j > d0 && j - d0 <= 15 && s.charCodeAt(j) === 105 /* i */) {
        const after = j + 1 < n ? s.charCodeAt(j + 1) : LF;
        if (after === COMMA || after === SP || after === LF) {
          fields[key] = c0 === 45 ? -v + 0 : v; // + 0: "-0i" is 0
          types[key] = 'int';
          this.i = j + 1;
          return;
        }
      }
    }

    let i = start;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === COMMA || c === SP || c === LF || c === CR) break;
      i++;
    }
    this.i = i;
    const tok = s.slice(start, i);
    if (tok.length === 0) this.fail('missing field value', start);
    const last = tok.charCodeAt(tok.length - 1);
    const first = tok.charCodeAt(0);
    const numeric = first === 45 /* - */ || (first >= 48 && first <= 57);
    if (numeric && last === 105 /* i */ && tok.length > 1) {
      const digits = tok.slice(0, -1);
      if (!INT_RE.test(digits)) this.fail('invalid integer field value', start);
      types[key] = 'int';
      // Up to 15 digits is always a safe integer: no BigInt on the common path.
      if (digits.length <= (first === 45 ? 16 : 15)) {
        fields[key] = Number(digits) + 0; // + 0: "-0i" is 0, as through BigInt
        return;
      }
      const v = BigInt(digits);
      if (v < INT64_MIN || v > INT64_MAX) this.fail('integer field value outside int64', start);
      fields[key] = toNumberIfSafe(v);
      return;
    }
    if (numeric && last === 117 /* u */ && tok.length > 1) {
      const digits = tok.slice(0, -1);
      if (!UINT_RE.test(digits)) this.fail('invalid unsigned field value', start);
      const v = BigInt(digits);
      if (v > UINT64_MAX) this.fail('unsigned field value outside uint64', start);
      fields[key] = toNumberIfSafe(v);
      types[key] = 'uint';
      return;
    }
    const b = BOOLS[tok];
    if (b !== undefined && Object.prototype.hasOwnProperty.call(BOOLS, tok)) {
      fields[key] = b;
      types[key] = 'bool';
      return;
    }
    if (FLOAT_RE.test(tok)) {
      const v = Number(tok);
      if (!Number.isFinite(v)) this.fail('float field value out of range', start);
      fields[key] = v;
      types[key] = 'float';
      return;
    }
    this.fail('invalid field value', start);
  }
}

function toNumberIfSafe(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * Parses a line-protocol body; throws LineProtocolError on the first malformed
 * line. Blank and `#` comment lines are skipped. `ends`, if given, receives the
 * offset (UTF-16 units) just past each point's line and its newline: a string
 * field may hold a raw newline, so '\n' alone does not separate points.
 * `seriesKeys`, if given, receives each point's measurement and tags as written
 * (its series in wire form: the same tags in the same order give the same text).
 */
export function parseLines(body: string, ends?: number[], seriesKeys?: string[]): ParsedPoint[] {
  const p = new Parser(body);
  p.seriesKeys = seriesKeys;
  return p.parseAll(ends);
}
