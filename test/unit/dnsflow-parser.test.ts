// The DNS wire-format parser: real message shapes, every malformation we
// could think of, and a property test feeding it random and mutated packets
// (it must never throw, never hang, and keep its output bounded).
import { describe, expect, it } from 'vitest';
import { MAX_ANSWERS, parseDnsMessage, rcodeName, readName, TYPE_A, TYPE_AAAA, TYPE_CNAME, type DnsMessage } from '../../src/dnsflow/parser';
import { buildMessage, rng } from '../helpers/dns-wire';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('parseDnsMessage', () => {
  it('reads a query as dig sends it (with an EDNS OPT record)', () => {
    // dig @10.201.3.2 www.dke.test, captured by the BPF program
    const m = parseDnsMessage(hex('a22e 0120 0001 0000 0000 0001 03777777 03646b65 0474657374 00 0001 0001 00 0029 04d0 00000000 000c 000a 0008 1122334455667788'))!;
    expect(m).toMatchObject({ id: 0xa22e, qr: false, opcode: 0, rcode: 0, qdcount: 1, arcount: 1, truncated: false });
    expect(m.questions).toEqual([{ name: 'www.dke.test', type: TYPE_A, class: 1 }]);
  });

  it('reads a compressed answer with a CNAME chain, A and AAAA records', () => {
    const buf = buildMessage({
      id: 7,
      qr: true,
      questions: [{ name: 'WWW.Example.com', type: TYPE_A }],
      answers: [
        { name: 'www.example.com', type: TYPE_CNAME, data: 'edge.example.net' },
        { name: 'edge.example.net', type: TYPE_A, ttl: 20, data: '93.184.216.34' },
        { name: 'edge.example.net', type: TYPE_AAAA, data: '2606:2800:220:1:248:1893:25c8:1946' },
        { name: 'edge.example.net', type: TYPE_AAAA, data: 'fd00:dea:3::2' },
      ],
    });
    expect(buf.length).toBeLessThan(140); // names were compressed
    const m = parseDnsMessage(buf)!;
    expect(m.qr).toBe(true);
    expect(m.questions[0]!.name).toBe('www.example.com');
    expect(m.answers.map((a) => [a.name, a.type, a.ttl, a.data])).toEqual([
      ['www.example.com', TYPE_CNAME, 300, 'edge.example.net'],
      ['edge.example.net', TYPE_A, 20, '93.184.216.34'],
      ['edge.example.net', TYPE_AAAA, 300, '2606:2800:220:1:248:1893:25c8:1946'],
      ['edge.example.net', TYPE_AAAA, 300, 'fd00:dea:3::2'],
    ]);
  });

  it('reads NXDOMAIN and the extended rcode of an OPT record', () => {
    expect(parseDnsMessage(buildMessage({ id: 1, qr: true, rcode: 3, questions: [{ name: 'nope.test', type: 1 }] }))!.rcode).toBe(3);
    // OPT TTL top byte 1 -> rcode 16 (BADVERS) = (1 << 4) | 0
    const opt = { name: '.', type: 41, ttl: 0x01000000, data: Buffer.alloc(0) };
    expect(parseDnsMessage(buildMessage({ id: 1, qr: true, questions: [{ name: 'a.test', type: 1 }], additional: [opt] }))!.rcode).toBe(16);
    expect(rcodeName(16)).toBe('BADVERS');
    expect(rcodeName(-1)).toBe('TIMEOUT');
    expect(rcodeName(3)).toBe('NXDOMAIN');
    expect(rcodeName(23)).toBe('RCODE23');
  });

  it('returns undefined for less than a header, and a flagged partial message for a cut one', () => {
    expect(parseDnsMessage(Buffer.alloc(0))).toBeUndefined();
    expect(parseDnsMessage(Buffer.alloc(11))).toBeUndefined();
    const full = buildMessage({ id: 9, qr: true, questions: [{ name: 'a.test', type: 1 }], answers: [{ name: 'a.test', type: 1, data: '10.0.0.1' }, { name: 'a.test', type: 1, data: '10.0.0.2' }] });
    const cut = parseDnsMessage(full.subarray(0, full.length - 3))!;
    expect(cut).toMatchObject({ id: 9, qr: true, truncated: true });
    expect(cut.answers.map((a) => a.data)).toEqual(['10.0.0.1']);
    expect(parseDnsMessage(full.subarray(0, 14))).toMatchObject({ id: 9, truncated: true, questions: [] });
  });

  it('stops at counts that promise more than the message holds', () => {
    const b = buildMessage({ id: 2, qr: true, questions: [{ name: 'a.test', type: 1 }], answers: [{ name: 'a.test', type: 1, data: '10.0.0.1' }] });
    b.writeUInt16BE(0xffff, 6); // ancount
    b.writeUInt16BE(0xffff, 10); // arcount
    const m = parseDnsMessage(b)!;
    expect(m.answers).toHaveLength(1);
    expect(m.truncated).toBe(true);
    b.writeUInt16BE(0xffff, 4); // qdcount
    expect(parseDnsMessage(b)!.truncated).toBe(true);
  });

  it('keeps at most MAX_ANSWERS answers', () => {
    const answers = Array.from({ length: 100 }, (_, i) => ({ name: 'pool.test', type: TYPE_A, data: `10.0.${i >> 8}.${i & 255}` }));
    const m = parseDnsMessage(buildMessage({ id: 3, qr: true, questions: [{ name: 'pool.test', type: 1 }], answers }))!;
    expect(m.answers).toHaveLength(MAX_ANSWERS);
    expect(m.truncated).toBe(false);
  });

  it('ignores an A record with the wrong rdata length and a CNAME whose target leaves its record', () => {
    const b = buildMessage({
      id: 4,
      qr: true,
      questions: [{ name: 'a.test', type: 1 }],
      answers: [
        { name: 'a.test', type: TYPE_A, data: Buffer.from([1, 2, 3]) },
        { name: 'a.test', type: TYPE_CNAME, data: Buffer.from([3, 0x61, 0x62, 0x63]) }, // no terminating zero inside rdata
        { name: 'a.test', type: TYPE_A, data: '10.1.1.1' },
      ],
      compress: false,
    });
    const m = parseDnsMessage(b)!;
    expect(m.answers.map((a) => a.data)).toEqual([undefined, undefined, '10.1.1.1']);
  });
});

describe('readName', () => {
  it('refuses compression pointers that loop or point forward', () => {
    // header, then at 12 a pointer to itself
    const self = Buffer.concat([Buffer.alloc(12), hex('c00c')]);
    expect(readName(self, 12)).toBeUndefined();
    // two pointers pointing at each other: 12 -> 14 (forward) refused
    const pair = Buffer.concat([Buffer.alloc(12), hex('c00e c00c')]);
    expect(readName(pair, 12)).toBeUndefined();
    expect(readName(pair, 14)).toBeUndefined();
    // label then a pointer back to the label's own start
    const back = Buffer.concat([Buffer.alloc(12), hex('0161 c00c')]);
    expect(readName(back, 12)).toBeUndefined();
  });

  it('follows a chain of backward pointers', () => {
    // 12: "test" root; 18: "b" -> 12; 22: "a" -> 18
    const b = Buffer.concat([Buffer.alloc(12), hex('04 74657374 00'), hex('01 62 c00c'), hex('01 61 c012')]);
    expect(readName(b, 22)).toEqual({ name: 'a.b.test', next: 26 });
  });

  it('caps names at 255 octets and refuses extended label types', () => {
    const label = Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)]);
    const ok = Buffer.concat([Buffer.alloc(12), label, label, label, Buffer.from([61]), Buffer.alloc(61, 0x61), Buffer.from([0])]);
    expect(readName(ok, 12)!.name.length).toBe(63 * 3 + 61 + 3);
    const tooLong = Buffer.concat([Buffer.alloc(12), label, label, label, label, Buffer.from([0])]);
    expect(readName(tooLong, 12)).toBeUndefined();
    expect(readName(Buffer.concat([Buffer.alloc(12), hex('41 00')]), 12)).toBeUndefined();
    expect(readName(Buffer.concat([Buffer.alloc(12), hex('81 00')]), 12)).toBeUndefined();
  });

  it('escapes bytes that are not printable, and dots inside a label', () => {
    const b = Buffer.concat([Buffer.alloc(12), hex('03 612e62 02 0a41 00')]);
    expect(readName(b, 12)!.name).toBe('a\\046b.\\010a');
    expect(readName(Buffer.concat([Buffer.alloc(12), hex('00')]), 12)!.name).toBe('.');
  });
});

/** What must hold for any input. */
function checkInvariants(buf: Buffer, m: DnsMessage | undefined): void {
  if (buf.length < 12) {
    expect(m).toBeUndefined();
    return;
  }
  expect(m).toBeDefined();
  expect(m!.questions.length).toBeLessThanOrEqual(4);
  expect(m!.answers.length).toBeLessThanOrEqual(MAX_ANSWERS);
  for (const n of [...m!.questions.map((q) => q.name), ...m!.answers.map((a) => a.name)]) {
    // 255 octets, each escaped as at most 4 characters
    expect(n.length).toBeLessThanOrEqual(255 * 4);
  }
}

describe('parser under random and mutated input (property test)', () => {
  const seeds = [
    buildMessage({ id: 1, questions: [{ name: 'www.dke.test', type: 1 }] }),
    buildMessage({
      id: 2,
      qr: true,
      questions: [{ name: 'www.example.com', type: 1 }],
      answers: [
        { name: 'www.example.com', type: TYPE_CNAME, data: 'a.b.example.net' },
        { name: 'a.b.example.net', type: TYPE_A, data: '1.2.3.4' },
        { name: 'a.b.example.net', type: TYPE_AAAA, data: 'fd00::1' },
      ],
      additional: [{ name: '.', type: 41, ttl: 0, data: Buffer.alloc(0) }],
    }),
    buildMessage({ id: 3, qr: true, rcode: 3, questions: [{ name: 'nope.test', type: 28 }] }),
  ];

  function mutate(r: () => number, base: Buffer): Buffer {
    const b = Buffer.from(base);
    const int = (n: number): number => Math.floor(r() * n);
    const edits = 1 + int(8);
    let out = b;
    for (let e = 0; e < edits; e++) {
      const kind = int(7);
      if (out.length === 0) break;
      if (kind === 0) out[int(out.length)] ^= 1 << int(8); // bit flip
      else if (kind === 1) out[int(out.length)] = int(256); // random byte
      else if (kind === 2) out = out.subarray(0, int(out.length + 1)); // truncate
      else if (kind === 3) out[int(out.length)] = 0xc0 | int(64); // plant a pointer
      else if (kind === 4 && out.length > 12) out.writeUInt16BE(int(65536), 4 + 2 * int(4)); // lie about a count
      else if (kind === 5) out = Buffer.concat([out, Buffer.from(Array.from({ length: int(64) }, () => int(256)))]);
      else {
        const i = int(out.length);
        const j = int(out.length);
        out = Buffer.concat([out.subarray(0, i), out.subarray(j)]); // splice
      }
    }
    return out;
  }

  it('never throws and keeps its output bounded (20,000 random, 60,000 mutated packets)', () => {
    const r = rng(0xd15ea5e);
    const start = performance.now();
    for (let i = 0; i < 20_000; i++) {
      const len = Math.floor(r() * 600);
      const buf = Buffer.from(Array.from({ length: len }, () => Math.floor(r() * 256)));
      checkInvariants(buf, parseDnsMessage(buf));
    }
    for (let i = 0; i < 60_000; i++) {
      const buf = mutate(r, seeds[i % seeds.length]!);
      const m = parseDnsMessage(buf);
      checkInvariants(buf, m);
      // Deterministic: the same bytes parse the same way.
      expect(parseDnsMessage(Buffer.from(buf))).toEqual(m);
    }
    // ~80k parses; generous so a slow CI machine passes, tight enough to catch a blow-up.
    expect(performance.now() - start).toBeLessThan(20_000);
  });

  it('handles the worst cases fast: a 64 KiB message of pointer chains and huge counts', () => {
    // Every 2 bytes a pointer to the previous pointer: each name walks back
    // through all of them, capped by the strictly-decreasing rule and the
    // 255-octet name limit.
    const b = Buffer.alloc(65535);
    b.writeUInt16BE(0xffff, 4);
    b.writeUInt16BE(0xffff, 6);
    b.writeUInt16BE(0xffff, 8);
    b.writeUInt16BE(0xffff, 10);
    b[12] = 1;
    b[13] = 0x61;
    b[14] = 0;
    for (let off = 15; off + 1 < b.length; off += 2) b.writeUInt16BE(0xc000 | (off - 2 < 16 ? 12 : off - 2), off);
    const t0 = performance.now();
    const m = parseDnsMessage(b);
    expect(performance.now() - t0).toBeLessThan(500);
    checkInvariants(b, m);
    expect(m!.truncated).toBe(true);
  });
});
