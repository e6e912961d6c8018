import { describe, expect, it } from 'vitest';
import { Point as OraclePoint } from '@influxdata/influxdb-client';
import { encodePoint, encodePoints, LineBuffer } from '../../src/lineproto/encode';
import { LineProtocolError, parseLines, type ParsedPoint } from '../../src/lineproto/parse';
import { float, Float, type FieldValue, type Point } from '../../src/lineproto/point';

// The oracle is @influxdata/influxdb-client's Point#toLineProtocol. Where our
// encoder deliberately differs, the test adjusts the oracle's input or checks us
// alone, and says why:
//   1. a tag value ending in backslashes: the oracle emits `v\` before the next
//      delimiter, which escapes the delimiter and breaks the line (DataKit then
//      rejects the whole batch); we drop the trailing backslashes. The oracle gets
//      the value already stripped.
//   2. bigint ints beyond 2^53: the oracle converts through a double and rounds;
//      we are exact. Random comparisons use bigints within the safe range.
//   3. empty keys, keys/measurement ending in a backslash, a measurement starting
//      with '#': the oracle skips the key or emits a broken line; we throw.
//   4. the oracle has no notion of "int from a JS number" vs float: we map our
//      FieldValue types onto its intField/floatField/... explicitly.

function oracle(p: Point): string | undefined {
  const o = new OraclePoint(p.measurement);
  for (const [k, v] of Object.entries(p.tags)) o.tag(k, v.replace(/\\+$/, ''));
  for (const [k, v] of Object.entries(p.fields)) {
    if (typeof v === 'number') o.intField(k, v);
    else if (typeof v === 'bigint') o.intField(k, Number(v));
    else if (typeof v === 'string') o.stringField(k, v);
    else if (typeof v === 'boolean') o.booleanField(k, v);
    else o.floatField(k, v.value);
  }
  o.timestamp(p.timestampNs.toString());
  return o.toLineProtocol();
}

const pt = (measurement: string, tags: Record<string, string>, fields: Record<string, FieldValue>, ts = 1700000000000000000n): Point => ({
  measurement,
  tags,
  fields,
  timestampNs: ts,
});

describe('encodePoint against the influxdb-client oracle', () => {
  const cases: Array<[string, Point]> = [
    [
      'a netflow point',
      pt(
        'netflow',
        { src_ip: '10.0.0.5', dst_ip: '93.184.216.34', src_port: '*', dst_port: '443', direction: 'outgoing', transport: 'tcp', process_name: 'curl' },
        { bytes_read: 5120, bytes_written: 300, retransmits: 0, rtt: 1200 },
      ),
    ],
    ['spaces', pt('my measurement', { 'tag key': 'tag value' }, { 'field key': 'string value with spaces' })],
    ['commas', pt('a,b', { 'k,1': 'v,1' }, { 'f,1': 1 })],
    ['equals signs', pt('a=b', { 'k=1': 'v=1' }, { 'f=1': 'x=y' })],
    ['double quotes', pt('q"m', { 'q"k': 'q"v' }, { 'q"f': 'say "hi"' })],
    ['backslashes inside', pt('b\\m', { 'b\\k': 'C:\\dir\\file', x: 'a\\,b' }, { 'b\\f': 'C:\\dir\\', g: '\\"' })],
    ['newlines, CR and tabs in names and tags', pt('m\nx\ty', { 'k\nk': 'v\r\nv', t: '\ttab' }, { 'f\nf': 1 })],
    ['newlines in a string field', pt('m', {}, { cmd: 'echo a\necho b\r\n' })],
    ['CJK', pt('网络', { 进程: '浏览器 进程', 域名: '例子.中国' }, { 字段: '值 "引号"', n: 1 })],
    ['emoji and combining marks', pt('m🚀', { 'k😀': 'v🎉,x', e: 'e\u0301' }, { 'f🔥': 'hot 🔥', g: true })],
    ['ints', pt('m', {}, { zero: 0, neg: -42, max: Number.MAX_SAFE_INTEGER, min: Number.MIN_SAFE_INTEGER, big: 123n, nbig: -5n })],
    ['bools', pt('m', {}, { yes: true, no: false })],
    ['floats', pt('m', {}, { a: float(1.5), b: float(-0.25), c: float(5), d: float(1e21), e: float(1.5e-7), f: float(Math.PI), g: float(Number.MAX_VALUE) })],
    ['empty tag values are omitted', pt('m', { a: '', b: 'x', c: '' }, { f: 1 })],
    ['negative and zero timestamps', pt('m', { a: 'b' }, { f: 1 }, -1234567890n)],
    ['zero timestamp', pt('m', {}, { f: 1 }, 0n)],
    ['trailing backslash in a tag value (oracle gets it stripped)', pt('m', { a: 'x\\', b: 'y\\\\', c: 'z' }, { f: 1 })],
    ['leading space and hash inside', pt(' m#', { ' k': ' v ' }, { ' f': ' s ' })],
  ];

  for (const [name, p] of cases) {
    it(name, () => {
      const ours = encodePoint(p);
      expect(ours).toBe(oracle(p));
      // only a string field value may carry a raw line break (inside its quotes)
      if (!Object.values(p.fields).some((v) => typeof v === 'string' && /[\r\n]/.test(v))) {
        expect(ours).not.toMatch(/[\r\n]/);
      }
    });
  }

  it('sorts tags and fields by key whatever the insertion order', () => {
    const a = encodePoint(pt('m', { z: '1', a: '2', m: '3' }, { y: 1, b: 2 }));
    const b = encodePoint(pt('m', { m: '3', z: '1', a: '2' }, { b: 2, y: 1 }));
    expect(a).toBe('m,a=2,m=3,z=1 b=2i,y=1i 1700000000000000000');
    expect(b).toBe(a);
  });

  it('writes the exact line for a simple point', () => {
    expect(encodePoint(pt('netflow', { host: 'h1', service: 'ebpf' }, { bytes_read: 10, ok: true, s: 'x' }, 5n))).toBe(
      'netflow,host=h1,service=ebpf bytes_read=10i,ok=T,s="x" 5',
    );
  });
});

describe('encodePoint where it deliberately differs from the oracle', () => {
  it('keeps all 64 bits of bigint ints (the oracle rounds through a double)', () => {
    const p = pt('m', {}, { max: 2n ** 63n - 1n, min: -(2n ** 63n), odd: 2n ** 60n + 1n });
    expect(encodePoint(p)).toBe('m max=9223372036854775807i,min=-9223372036854775808i,odd=1152921504606846977i 1700000000000000000');
    expect(() => oracle(pt('m', {}, { max: 2n ** 63n - 1n }))).toThrow();
  });

  it('drops trailing backslashes of a tag value and omits the tag if nothing is left', () => {
    expect(encodePoint(pt('m', { a: 'x\\', b: '\\\\', c: 'y' }, { f: 1 }))).toBe('m,a=x,c=y f=1i 1700000000000000000');
    // the oracle's line would read `a=x\,c=y` as one tag value
    const o = new OraclePoint('m').tag('a', 'x\\').tag('c', 'y').intField('f', 1).timestamp('1');
    expect(o.toLineProtocol()).toBe('m,a=x\\,c=y f=1i 1');
  });

  it.each([
    ['an empty measurement', pt('', {}, { f: 1 })],
    ['a measurement starting with #', pt('#m', {}, { f: 1 })],
    ['a measurement ending in a backslash', pt('m\\', {}, { f: 1 })],
    ['an empty tag key', pt('m', { '': 'v' }, { f: 1 })],
    ['a tag key ending in a backslash', pt('m', { 'k\\': 'v' }, { f: 1 })],
    ['an empty field key', pt('m', {}, { '': 1 })],
    ['a field key ending in a backslash', pt('m', {}, { 'f\\': 1 })],
    ['no fields', pt('m', { a: 'b' }, {})],
    ['a non-integer number', pt('m', {}, { f: 1.5 })],
    ['an unsafe integer number', pt('m', {}, { f: 2 ** 53 })],
    ['NaN', pt('m', {}, { f: NaN })],
    ['a bigint above int64', pt('m', {}, { f: 2n ** 63n })],
    ['a bigint below int64', pt('m', {}, { f: -(2n ** 63n) - 1n })],
    ['a non-finite float', pt('m', {}, { f: float(Infinity) })],
    ['a NaN float', pt('m', {}, { f: float(NaN) })],
    ['a null field', pt('m', {}, { f: null as unknown as FieldValue })],
    ['a non-string tag value', pt('m', { a: 1 as unknown as string }, { f: 1 })],
    ['a timestamp outside int64', pt('m', {}, { f: 1 }, 2n ** 63n)],
    ['a number timestamp', { ...pt('m', {}, { f: 1 }), timestampNs: 5 as unknown as bigint }],
  ])('throws TypeError for %s', (_name, p) => {
    expect(() => encodePoint(p)).toThrow(TypeError);
  });

  it('omits tags whose value is undefined (an optional tag left unset)', () => {
    expect(encodePoint(pt('m', { a: undefined as unknown as string, b: 'x' }, { f: 1 }))).toBe('m,b=x f=1i 1700000000000000000');
  });
});

describe('encodePoints', () => {
  it('terminates every line with a newline', () => {
    const body = encodePoints([pt('a', {}, { f: 1 }, 1n), pt('b', {}, { f: 2 }, 2n)]);
    expect(body).toBe('a f=1i 1\nb f=2i 2\n');
    expect(encodePoints([])).toBe('');
  });

  it('equals the lines of encodePoint joined, for a body far beyond the initial buffer, with non-ASCII text', () => {
    const points = Array.from({ length: 3000 }, (_, i) => pt('netflow', { process_name: i % 3 ? `进程-${i % 7}` : '🚀', dst_ip: `10.0.${i >> 8}.${i & 255}` }, { s: 'é'.repeat(i % 50), n: i }, BigInt(i)));
    expect(encodePoints(points)).toBe(points.map((p) => encodePoint(p) + '\n').join(''));
  });
});

describe('LineBuffer', () => {
  it('grows, counts UTF-8 bytes and hands out a prefix', () => {
    const lb = new LineBuffer(16);
    expect(lb.append('héllo')).toBe(7);
    expect(lb.append('x'.repeat(100))).toBe(101);
    expect(lb.length).toBe(108);
    expect(lb.take(7).toString()).toBe('héllo\n');
    expect(lb.length).toBe(101);
    expect(lb.bytes().toString()).toBe('x'.repeat(100) + '\n');
  });
});

describe('the memoised tag segments', () => {
  it('stay correct across many distinct values and keys (cache turnover)', () => {
    for (let i = 0; i < 6000; i++) {
      const p = pt('m', { [`k${i % 300}`]: `v ${i}`, fixed: i % 2 ? 'a,b' : 'a=b', tail: i % 5 ? 'x' : 'x\\' }, { f: i });
      expect(encodePoint(p)).toBe(oracle(p));
    }
  });

  it('re-validate a bad key on every use', () => {
    expect(() => encodePoint(pt('m', { 'k\\': 'v' }, { f: 1 }))).toThrow(TypeError);
    expect(() => encodePoint(pt('m', { 'k\\': 'v' }, { f: 1 }))).toThrow(TypeError);
  });
});

describe('parseLines', () => {
  it('parses tags, every field type and the timestamp', () => {
    const [p] = parseLines('netflow,host=h1,src_port=* bytes=10i,u=7u,r=1.5,e=1e+21,ok=T,no=false,s="a \\"q\\" \\\\ b" 1700000000000000000\n');
    expect(p.measurement).toBe('netflow');
    expect(p.tags).toEqual({ host: 'h1', src_port: '*' });
    expect(p.fields).toEqual({ bytes: 10, u: 7, r: 1.5, e: 1e21, ok: true, no: false, s: 'a "q" \\ b' });
    expect(p.fieldTypes).toEqual({ bytes: 'int', u: 'uint', r: 'float', e: 'float', ok: 'bool', no: 'bool', s: 'string' });
    expect(p.timestamp).toBe(1700000000000000000n);
  });

  it('reads ints as numbers when safe and as bigints otherwise; floats stay distinguishable', () => {
    const [p] = parseLines('m a=9007199254740991i,b=9007199254740992i,c=-9223372036854775808i,d=1,e=18446744073709551615u');
    expect(p.fields.a).toBe(9007199254740991);
    expect(p.fields.b).toBe(9007199254740992n);
    expect(p.fields.c).toBe(-(2n ** 63n));
    expect(p.fields.d).toBe(1);
    expect(p.fieldTypes.d).toBe('float');
    expect(p.fields.e).toBe(2n ** 64n - 1n);
    expect(p.timestamp).toBeUndefined();
  });

  it('skips blank and comment lines and counts lines for errors', () => {
    expect(parseLines('\n# a comment\n   \na f=1i\n\nb f=2i')).toHaveLength(2);
    try {
      parseLines('a f=1i\nb f=\n');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(LineProtocolError);
      expect((err as LineProtocolError).line).toBe(2);
      expect((err as LineProtocolError).message).toMatch(/^line 2, column \d+: missing field value/);
    }
  });

  it('unescapes like DataKit: \\, \\space \\= in keys and tag values, other backslashes literal', () => {
    const [p] = parseLines('m\\ 1\\,x,k\\ 1=v\\,1\\=2,p=C:\\dir\\x,n=a\\nb f\\=1=1i');
    expect(p.measurement).toBe('m 1,x');
    expect(p.tags).toEqual({ 'k 1': 'v,1=2', p: 'C:\\dir\\x', n: 'a\\nb' });
    expect(p.fields).toEqual({ 'f=1': 1 });
  });

  it('treats a delimiter after a backslash as escaped, as DataKit does (a\\\\,b is one value)', () => {
    const [p] = parseLines('m,k=a\\\\,b f=1i');
    expect(p.tags).toEqual({ k: 'a\\,b' });
  });

  it('keeps raw newlines inside string field values', () => {
    const pts = parseLines('m s="line1\nline2",t="x" 1\nn f=1i 2\n');
    expect(pts).toHaveLength(2);
    expect(pts[0].fields).toEqual({ s: 'line1\nline2', t: 'x' });
    expect(pts[1].measurement).toBe('n');
  });

  it('keeps __proto__ as an ordinary key', () => {
    const [p] = parseLines('m,__proto__=x __proto__=1i');
    expect(Object.keys(p.tags)).toEqual(['__proto__']);
    expect(p.tags.__proto__).toBe('x');
    expect(p.fields.__proto__).toBe(1);
  });

  it.each([
    ['cpu', 'missing fields'],
    ['cpu,host=a', 'missing fields'],
    ['cpu,host= f=1i', 'missing tag value'],
    ['cpu,=a f=1i', 'missing tag key'],
    ['cpu,host f=1i', 'unescaped space in tag key'],
    ['cpu,a=b=c f=1i', 'unescaped "=" in tag value'],
    ['cpu,a=1,a=2 f=1i', 'duplicate tag key'],
    [',a=b f=1i', 'missing measurement'],
    [' cpu f=1i', 'leading whitespace'],
    ['cpu  f=1i', 'more than one space'],
    ['cpu value', 'missing field value'],
    ['cpu f=', 'missing field value'],
    ['cpu f=,g=1i', 'missing field value'],
    ['cpu =1i', 'missing field key'],
    ['cpu a b=1i', 'unescaped space in field key'],
    ['cpu f=1i,f=2i', 'duplicate field key'],
    ['cpu f=1x', 'invalid field value'],
    ['cpu f=1.2i', 'invalid integer'],
    ['cpu f=-i', 'invalid integer'],
    ['cpu f=-1u', 'invalid unsigned'],
    ['cpu f=99999999999999999999i', 'outside int64'],
    ['cpu f=NaN', 'invalid field value'],
    ['cpu f=tru', 'invalid field value'],
    ['cpu f="abc', 'unterminated string'],
    ['cpu f="a"x', 'unexpected character after field value'],
    ['cpu f=1i 12a', 'bad timestamp'],
    ['cpu f=1i 1 2', 'bad timestamp'],
    ['cpu f=1i ', 'trailing space without timestamp'],
    ['cpu f=1i 99999999999999999999', 'timestamp outside int64'],
    ['cpu f=1i\r\n', 'carriage return'],
    ['cpu f=1i 5\r\n', 'carriage return'],
  ])('rejects %j (%s)', (line, reason) => {
    expect(() => parseLines(line)).toThrow(LineProtocolError);
    expect(() => parseLines(line)).toThrow(reason);
  });
});

// --- randomized property test -------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [
  ...'abcdefghijklmnopqrstuvwxyzABCXYZ0123456789_.-:/*#'.split(''),
  ' ', ',', '=', '"', '\\', '\n', '\r', '\t', "'",
  '网', '络', '流', '量', '进程', '🚀', '😀', 'é', 'e\u0301', 'ß', 'Ω',
];

function gen(seed: number) {
  const rnd = mulberry32(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(a: readonly T[]): T => a[int(a.length)];
  const str = (min: number, max: number): string => {
    let s = '';
    const n = min + int(max - min + 1);
    for (let i = 0; i < n; i++) s += rnd() < 0.6 ? pick(PIECES.slice(0, 36)) : pick(PIECES);
    return s;
  };
  // Names the encoder accepts (see difference 3 at the top).
  const name = (): string => {
    let s = str(1, 12);
    if (s.startsWith('#')) s = 'm' + s;
    if (s.endsWith('\\')) s += 'x';
    return s;
  };
  const fieldValue = (): FieldValue => {
    switch (int(6)) {
      case 0:
        return pick([0, 1, -1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, int(1e6) - 5e5, Math.floor((rnd() - 0.5) * 2 ** 53)]);
      case 1:
        return BigInt(Math.floor((rnd() - 0.5) * 2 ** 53));
      case 2: {
        const v = pick([rnd() * 1e6 - 5e5, (rnd() - 0.5) * 1e-300, (rnd() - 0.5) * 1e300, int(1000), rnd()]);
        return float(v === 0 ? 0 : v); // -0 prints as "0"
      }
      case 3:
        return str(0, 30);
      case 4:
        return rnd() < 0.5;
      default:
        return int(100000);
    }
  };
  return (): Point => {
    const tags: Record<string, string> = {};
    for (let i = int(6); i > 0; i--) tags[name()] = rnd() < 0.1 ? '' : str(1, 20);
    const fields: Record<string, FieldValue> = {};
    for (let i = 1 + int(5); i > 0; i--) fields[name()] = fieldValue();
    const ts = BigInt(Math.floor((rnd() - 0.3) * 2 ** 53)) * BigInt(1 + int(1000));
    return { measurement: name(), tags, fields, timestampNs: ts };
  };
}

// What DataKit (and our parser) reads back: `\n` `\r` `\t` in names and tags were
// written as two characters and stay two characters; tag values lose trailing
// backslashes (difference 1).
const visible = (s: string): string => s.replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t');

function expected(p: Point): ParsedPoint {
  const tags: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.tags)) {
    const stripped = v.replace(/\\+$/, '');
    if (stripped !== '') tags[visible(k)] = visible(stripped);
  }
  const fields: ParsedPoint['fields'] = {};
  const fieldTypes: ParsedPoint['fieldTypes'] = {};
  for (const [k, v] of Object.entries(p.fields)) {
    const key = visible(k);
    if (v instanceof Float) {
      fields[key] = v.value;
      fieldTypes[key] = 'float';
    } else if (typeof v === 'bigint' || typeof v === 'number') {
      fields[key] = typeof v === 'bigint' && (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) ? v : Number(v);
      fieldTypes[key] = 'int';
    } else {
      fields[key] = v;
      fieldTypes[key] = typeof v === 'string' ? 'string' : 'bool';
    }
  }
  return { measurement: visible(p.measurement), tags, fields, fieldTypes, timestamp: p.timestampNs };
}

describe('randomized: encoder vs oracle and round trip through the parser', () => {
  const N = 2000;
  const next = gen(0x5eed);
  const points = Array.from({ length: N }, next);

  it(`${N} random points encode exactly as the oracle does`, () => {
    let mismatches = 0;
    for (const p of points) {
      const ours = encodePoint(p);
      const theirs = oracle(p);
      if (ours !== theirs) {
        mismatches++;
        expect.soft(ours, JSON.stringify(p, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))).toBe(theirs);
      }
    }
    expect(mismatches).toBe(0);
  });

  it(`${N} random points survive encodePoints -> parseLines`, () => {
    const parsed = parseLines(encodePoints(points));
    expect(parsed).toHaveLength(N);
    for (let i = 0; i < N; i++) {
      // toEqual ignores prototypes, so the parser's null-prototype records compare fine
      expect(parsed[i]).toEqual(expected(points[i]));
    }
  });

  it('random bigints across the whole int64 range round-trip exactly', () => {
    const rnd = mulberry32(42);
    for (let i = 0; i < 500; i++) {
      const hi = BigInt(Math.floor(rnd() * 2 ** 32)) - 2n ** 31n;
      const v = (hi << 32n) | BigInt(Math.floor(rnd() * 2 ** 32));
      const [p] = parseLines(encodePoint(pt('m', {}, { v })));
      expect(BigInt(p.fields.v as number | bigint)).toBe(v);
    }
  });
});

describe('parser fast paths (kept exact)', () => {
  it('integers on both sides of the 15-digit fast path read as through BigInt', () => {
    const cases: [string, number | bigint][] = [
      ['-0i', 0],
      ['999999999999999i', 999_999_999_999_999],
      ['-999999999999999i', -999_999_999_999_999],
      ['9007199254740991i', Number.MAX_SAFE_INTEGER],
      ['9007199254740992i', 9007199254740992n],
      ['-9223372036854775808i', -(2n ** 63n)],
      ['007i', 7],
      ['0i', 0],
      ['-1i', -1],
    ];
    for (const [tok, want] of cases) {
      const [p] = parseLines(`m v=${tok}`);
      expect(p.fields.v, tok).toBe(want);
      expect(Object.is(p.fields.v, -0), tok).toBe(false);
    }
  });

  it('what only looks like an integer is refused as before', () => {
    expect(() => parseLines('m v=12ix')).toThrow(/invalid field value/);
    expect(() => parseLines('m v=-i')).toThrow(/invalid integer field value/);
    expect(() => parseLines('m v=1-2i')).toThrow(/invalid integer field value/);
    expect(() => parseLines('m v=12i\r\n')).toThrow(/carriage return/);
    expect(() => parseLines('m v=12i 1x')).toThrow(/bad timestamp/);
    expect(parseLines('m v=12i,w=3i 5')[0]).toMatchObject({ fields: { v: 12, w: 3 }, fieldTypes: { v: 'int', w: 'int' }, timestamp: 5n });
  });

  it('a key seen before and a new key in the same body both parse, with escapes', () => {
    const [a, b] = parseLines('m,k\\ 1=x,k2=y f=1i\nm,k2=z,k\\ 1=w f=2i');
    expect(a.tags).toEqual({ 'k 1': 'x', k2: 'y' });
    expect(b.tags).toEqual({ k2: 'z', 'k 1': 'w' });
    expect(() => parseLines('m,k2=a,k2=b f=1i')).toThrow(/duplicate tag key/);
  });
});

describe('parseLines outputs for the console', () => {
  it('ends and series keys: where each point ends, and its measurement and tags as written', () => {
    const body = 'm,b=2,a=1 f=1i 1\n\n# c\nm,a\\ x=1 s="x\ny" 2\nn f=1i';
    const ends: number[] = [];
    const keys: string[] = [];
    expect(parseLines(body, ends, keys)).toHaveLength(3);
    expect(keys).toEqual(['m,b=2,a=1', 'm,a\\ x=1', 'n']);
    expect(ends).toEqual([body.indexOf('\n') + 1, body.indexOf('2\n') + 2, body.length]);
  });
});
