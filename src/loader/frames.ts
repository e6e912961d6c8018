// The loader <-> daemon wire format (native/frame.h), daemon side. Layouts
// and constants come from src/loader/layout.generated.ts (generated from the
// C headers' BTF): nothing here restates an offset.
import {
  DKE_FRAME_MAGIC,
  dke_collect_cmd,
  dke_frame,
  dke_stop_cmd,
  dke_telemetry_rec,
  type Field,
  type Layout,
} from './layout.generated';

export interface Frame {
  type: number;
  count: number;
  payload: Buffer;
}

const H = dke_frame.fields;

/** No frame is larger than this (the loader splits batches at 4 MiB). */
export const MAX_FRAME_BYTES = 64 << 20;

/**
 * Splits a byte stream into frames; throws on a frame that is not ours.
 * Chunks of a frame that is still incomplete are only collected, and joined
 * once it is whole: a large frame costs one copy, not one per chunk.
 */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Bytes the frame at the head of `pending` needs in all (0: header not read yet). */
  private need = 0;

  push(chunk: Buffer, onFrame: (f: Frame) => void): void {
    if (this.need > 0 && this.partBytes + chunk.length < this.need) {
      this.parts.push(chunk);
      this.partBytes += chunk.length;
      return;
    }
    this.pending = this.parts.length || this.pending.length ? Buffer.concat([...this.parts, chunk]) : chunk;
    this.parts = [];
    this.partBytes = 0;
    this.need = 0;
    let off = 0;
    while (this.pending.length - off >= dke_frame.size) {
      const magic = this.pending.readUInt32LE(off + H.magic.offset);
      if (magic !== DKE_FRAME_MAGIC) {
        throw new Error(`dke-loader sent a frame of another version (magic 0x${magic.toString(16)}): the loader and the daemon come from different builds; reinstall`);
      }
      const len = this.pending.readUInt32LE(off + H.len.offset);
      if (len > MAX_FRAME_BYTES) throw new Error(`dke-loader sent a frame of ${len} bytes (at most ${MAX_FRAME_BYTES}): the stream is corrupt`);
      if (this.pending.length - off - dke_frame.size < len) {
        this.need = dke_frame.size + len;
        break;
      }
      const start = off + dke_frame.size;
      onFrame({
        type: this.pending.readUInt16LE(off + H.type.offset),
        count: this.pending.readUInt32LE(off + H.count.offset),
        payload: this.pending.subarray(start, start + len),
      });
      off = start + len;
    }
    const rest = off === this.pending.length ? Buffer.alloc(0) : this.pending.subarray(off);
    this.pending = Buffer.alloc(0);
    if (rest.length) {
      // Kept as the first part; `need` counts from its start.
      this.parts = [rest];
      this.partBytes = rest.length;
    }
  }
}

export function encodeFrame(type: number, payload: Buffer = Buffer.alloc(0), count = 0): Buffer {
  const out = Buffer.alloc(dke_frame.size + payload.length);
  out.writeUInt32LE(DKE_FRAME_MAGIC, H.magic.offset);
  out.writeUInt16LE(type, H.type.offset);
  out.writeUInt32LE(payload.length, H.len.offset);
  out.writeUInt32LE(count, H.count.offset);
  payload.copy(out, dke_frame.size);
  return out;
}

export function encodeCollectCmd(seq: bigint, what: number): Buffer {
  const b = Buffer.alloc(dke_collect_cmd.size);
  writeField(b, 0, dke_collect_cmd.fields.seq, seq);
  writeField(b, 0, dke_collect_cmd.fields.what, what);
  return b;
}

export function encodeStopCmd(unpin: boolean): Buffer {
  const b = Buffer.alloc(dke_stop_cmd.size);
  writeField(b, 0, dke_stop_cmd.fields.unpin, unpin ? 1 : 0);
  return b;
}

/** An unsigned little-endian field of a record at `base` (u8..u64; u64 as a number, exact below 2^53). */
export function readField(buf: Buffer, base: number, f: Field): number {
  const o = base + f.offset;
  switch (f.size) {
    case 1:
      return buf[o]!;
    case 2:
      return buf.readUInt16LE(o);
    case 4:
      return buf.readUInt32LE(o);
    case 8:
      return Number(buf.readBigUInt64LE(o));
    default:
      throw new Error(`readField: a field of ${f.size} bytes is not a number`);
  }
}

export function readBigField(buf: Buffer, base: number, f: Field): bigint {
  return buf.readBigUInt64LE(base + f.offset);
}

export function writeField(buf: Buffer, base: number, f: Field, v: number | bigint): void {
  const o = base + f.offset;
  if (f.size === 8) buf.writeBigUInt64LE(BigInt(v), o);
  else if (f.size === 4) buf.writeUInt32LE(Number(v), o);
  else if (f.size === 2) buf.writeUInt16LE(Number(v), o);
  else buf[o] = Number(v);
}

/** A NUL-padded string field. */
export function readString(buf: Buffer, base: number, f: Field): string {
  const start = base + f.offset;
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end < 0 || end > start + f.size ? start + f.size : end);
}

/** The bytes of a field (addresses, nested structs), without copying. */
export function fieldBytes(buf: Buffer, base: number, f: Field): Buffer {
  return buf.subarray(base + f.offset, base + f.offset + f.size);
}

/** Calls `fn` with the base offset of each record of `layout` in a frame. */
export function forEachRecord(frame: Frame, layout: Layout, fn: (base: number) => void): void {
  if (frame.count * layout.size !== frame.payload.length) {
    throw new Error(`a frame of type ${frame.type} holds ${frame.payload.length} bytes, not ${frame.count} records of ${layout.size}`);
  }
  for (let i = 0; i < frame.count; i++) fn(i * layout.size);
}

/** A DKE_FRAME_TELEMETRY frame: counter name -> cumulative value. */
export function readTelemetry(frame: Frame): Map<string, number> {
  const F = dke_telemetry_rec.fields;
  const values = new Map<string, number>();
  forEachRecord(frame, dke_telemetry_rec, (r) => values.set(readString(frame.payload, r, F.name), readField(frame.payload, r, F.value)));
  return values;
}
