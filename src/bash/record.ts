// Decoder for the records of bpf/bash.h. The offsets are written out once and
// checked against the ones the compiler gave the addon (assertBashLayout, run
// by the bash loader at start-up and by a unit test).

export const BASH_LAYOUT = {
  size: 4128,
  ktime_ns: 0,
  pid: 8,
  uid: 12,
  len: 16,
  flags: 20,
  line: 24,
  lineMax: 4096,
  flagTruncated: 1,
  telemetryMax: 4,
} as const;

/** Indexes of the kernel's bash_telemetry counters (enum dke_bash_telemetry). */
export const BASH_TELEMETRY = { lines: 0, ringbufFull: 1, readFailed: 2 } as const;

export interface BashLineRecord {
  /** CLOCK_MONOTONIC nanoseconds when readline() returned. */
  ktimeNs: bigint;
  pid: number;
  uid: number;
  /** The line as typed, UTF-8 decoded (invalid bytes become U+FFFD). */
  line: string;
  /** The typed line was longer than BASH_LAYOUT.lineMax bytes and was cut. */
  truncated: boolean;
}

/** Throws when the addon's compiled layout differs from the one decoded here. */
export function assertBashLayout(native: unknown): void {
  const got = native as Record<string, unknown> | undefined;
  const mismatches = Object.entries(BASH_LAYOUT)
    .filter(([k, v]) => got?.[k] !== v)
    .map(([k, v]) => `${k}: decoder ${v}, addon ${String(got?.[k])}`);
  if (mismatches.length > 0) {
    throw new Error(`record layout mismatch between bpf/bash.h and src/bash/record.ts: ${mismatches.join('; ')}`);
  }
}

/**
 * End of the last complete UTF-8 character in buf[start, end): a line cut at
 * a byte limit may end inside a multi-byte character, which would otherwise
 * decode as a replacement character.
 */
export function completeUtf8End(buf: Buffer, start: number, end: number): number {
  // A character is at most 4 bytes: look back for its lead byte.
  for (let i = end - 1; i >= Math.max(start, end - 4); i--) {
    const b = buf[i]!;
    if ((b & 0xc0) === 0x80) continue; // continuation byte
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return end - i >= need ? end : i;
  }
  return end;
}

/** Ring-buffer batches are concatenated dke_bash_line records. */
export function decodeBashLines(buf: Buffer): BashLineRecord[] {
  const L = BASH_LAYOUT;
  if (buf.length % L.size !== 0) {
    throw new Error(`truncated bash record batch: ${buf.length} bytes is not a multiple of ${L.size}`);
  }
  const out: BashLineRecord[] = [];
  for (let off = 0; off < buf.length; off += L.size) {
    const len = Math.min(buf.readUInt32LE(off + L.len), L.lineMax);
    const truncated = (buf.readUInt32LE(off + L.flags) & L.flagTruncated) !== 0;
    const start = off + L.line;
    const end = truncated ? completeUtf8End(buf, start, start + len) : start + len;
    out.push({
      ktimeNs: buf.readBigUInt64LE(off + L.ktime_ns),
      pid: buf.readUInt32LE(off + L.pid),
      uid: buf.readUInt32LE(off + L.uid),
      line: buf.toString('utf8', start, end),
      truncated,
    });
  }
  return out;
}
