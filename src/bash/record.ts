// Decoder for the records of bpf/bash.h, by the layout generated from the
// header (src/loader/layout.generated.ts).
import { forEachRecord, readBigField, readField, type Frame } from '../loader/frames';
import { DKE_BASH_LINE_MAX, DKE_BASH_TRUNCATED, dke_bash_line } from '../loader/layout.generated';

export interface BashLineRecord {
  /** CLOCK_MONOTONIC nanoseconds when readline() returned. */
  ktimeNs: bigint;
  pid: number;
  uid: number;
  /** The line as typed, UTF-8 decoded (invalid bytes become U+FFFD). */
  line: string;
  /** The typed line was longer than DKE_BASH_LINE_MAX bytes and was cut. */
  truncated: boolean;
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

/** A DKE_FRAME_BASH_LINES frame: dke_bash_line records. */
export function decodeBashLines(frame: Frame): BashLineRecord[] {
  const L = dke_bash_line.fields;
  const buf = frame.payload;
  const out: BashLineRecord[] = [];
  forEachRecord(frame, dke_bash_line, (off) => {
    const len = Math.min(readField(buf, off, L.len), DKE_BASH_LINE_MAX);
    const truncated = (readField(buf, off, L.flags) & DKE_BASH_TRUNCATED) !== 0;
    const start = off + L.line.offset;
    const end = truncated ? completeUtf8End(buf, start, start + len) : start + len;
    out.push({
      ktimeNs: readBigField(buf, off, L.ktime_ns),
      pid: readField(buf, off, L.pid),
      uid: readField(buf, off, L.uid),
      line: buf.toString('utf8', start, end),
      truncated,
    });
  });
  return out;
}
