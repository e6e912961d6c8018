// Builders shared by the netflow unit tests.

/** 16 bytes in network order from IPv4 text (first 4 bytes) or IPv6 text (with an optional dotted tail). */
export function ipBytes(text: string): Buffer {
  const out = Buffer.alloc(16);
  if (!text.includes(':')) {
    text.split('.').forEach((p, i) => (out[i] = Number(p)));
    return out;
  }
  let s = text;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const r = rest === undefined ? [] : rest ? rest.split(':') : [];
  const groups = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  if (groups.length !== 8) throw new Error(`bad IPv6 text ${text}`);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
