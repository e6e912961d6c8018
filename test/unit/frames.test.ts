// The loader <-> daemon frames, daemon side (src/loader/frames.ts): splitting
// a byte stream into frames, refusing another build's frames, and reading
// records by the generated layouts.
import { describe, expect, it } from 'vitest';
import {
  encodeCollectCmd,
  encodeFrame,
  encodeStopCmd,
  fieldBytes,
  forEachRecord,
  FrameReader,
  readBigField,
  readField,
  readString,
  type Frame,
} from '../../src/loader/frames';
import {
  DKE_CMD_COLLECT,
  DKE_COLLECT_DNS,
  DKE_FRAME_FLOWS,
  DKE_FRAME_LOG,
  DKE_FRAME_MAGIC,
  DKE_FRAME_TELEMETRY,
  dke_collect_cmd,
  dke_flow_delta,
  dke_frame,
  dke_stop_cmd,
  dke_telemetry_rec,
} from '../../src/loader/layout.generated';
import { fill, frameOf, record } from '../helpers/records';

function readAll(chunks: Buffer[]): Frame[] {
  const r = new FrameReader();
  const out: Frame[] = [];
  for (const c of chunks) r.push(c, (f) => out.push({ ...f, payload: Buffer.from(f.payload) }));
  return out;
}

const telemetry = (name: string, value: number): Buffer => record(dke_telemetry_rec, { name, value });

describe('FrameReader', () => {
  const log = Buffer.from(JSON.stringify({ level: 'info', msg: 'hello' }));
  const recs = Buffer.concat([telemetry('flow_map_full', 3), telemetry('dns_packets', 2 ** 40)]);
  const stream = Buffer.concat([encodeFrame(DKE_FRAME_LOG, log), encodeFrame(DKE_FRAME_TELEMETRY, recs, 2), encodeFrame(DKE_FRAME_FLOWS)]);
  const want: Frame[] = [
    { type: DKE_FRAME_LOG, count: 0, payload: log },
    { type: DKE_FRAME_TELEMETRY, count: 2, payload: recs },
    { type: DKE_FRAME_FLOWS, count: 0, payload: Buffer.alloc(0) },
  ];

  it('reads several frames from one chunk, an empty payload included', () => {
    expect(readAll([stream])).toEqual(want);
  });

  it('gives the same frames however the stream is cut, a header cut in half included', () => {
    for (let i = 1; i < stream.length; i++) {
      expect(readAll([stream.subarray(0, i), stream.subarray(i)]), `cut at ${i}`).toEqual(want);
    }
    expect(readAll([...stream].map((b) => Buffer.from([b])))).toEqual(want);
  });

  it('holds a frame back until its payload is complete', () => {
    const r = new FrameReader();
    const seen: number[] = [];
    r.push(stream.subarray(0, dke_frame.size + log.length - 1), (f) => seen.push(f.type));
    expect(seen).toEqual([]);
    r.push(stream.subarray(dke_frame.size + log.length - 1, dke_frame.size + log.length), (f) => seen.push(f.type));
    expect(seen).toEqual([DKE_FRAME_LOG]);
  });

  it('throws a clear error at a frame of another version', () => {
    const other = encodeFrame(DKE_FRAME_LOG, log);
    other.writeUInt32LE(DKE_FRAME_MAGIC + 1, dke_frame.fields.magic.offset);
    expect(() => readAll([other])).toThrow(`dke-loader sent a frame of another version (magic 0x${(DKE_FRAME_MAGIC + 1).toString(16)}): the loader and the daemon come from different builds; reinstall`);
    // Also after good frames, once the bad header is whole.
    const r = new FrameReader();
    const types: number[] = [];
    expect(() => r.push(Buffer.concat([encodeFrame(DKE_FRAME_FLOWS), other]), (f) => types.push(f.type))).toThrow(/another version/);
    expect(types).toEqual([DKE_FRAME_FLOWS]);
  });
});

describe('encodeFrame and the commands', () => {
  it('writes the header the generated layout describes', () => {
    const payload = Buffer.from('abc');
    const b = encodeFrame(DKE_CMD_COLLECT, payload, 7);
    const H = dke_frame.fields;
    expect(b.length).toBe(dke_frame.size + 3);
    expect([readField(b, 0, H.magic), readField(b, 0, H.type), readField(b, 0, H.len), readField(b, 0, H.count)]).toEqual([DKE_FRAME_MAGIC, DKE_CMD_COLLECT, 3, 7]);
    expect(b.subarray(dke_frame.size).toString()).toBe('abc');
  });

  it('encodes collect and stop commands', () => {
    const c = encodeCollectCmd(2n ** 63n + 9n, DKE_COLLECT_DNS);
    expect(c.length).toBe(dke_collect_cmd.size);
    expect(readBigField(c, 0, dke_collect_cmd.fields.seq)).toBe(2n ** 63n + 9n);
    expect(readField(c, 0, dke_collect_cmd.fields.what)).toBe(DKE_COLLECT_DNS);
    expect(readField(encodeStopCmd(true), 0, dke_stop_cmd.fields.unpin)).toBe(1);
    expect(readField(encodeStopCmd(false), 0, dke_stop_cmd.fields.unpin)).toBe(0);
  });
});

describe('records', () => {
  it('forEachRecord visits each record at its offset', () => {
    const f = frameOf(DKE_FRAME_TELEMETRY, dke_telemetry_rec, [telemetry('a', 1), telemetry('bb', 2), telemetry('x'.repeat(24), 3)]);
    const got: [string, number][] = [];
    forEachRecord(f, dke_telemetry_rec, (r) => got.push([readString(f.payload, r, dke_telemetry_rec.fields.name), readField(f.payload, r, dke_telemetry_rec.fields.value)]));
    // A name that fills its field has no NUL: it ends at the field's end.
    expect(got).toEqual([
      ['a', 1],
      ['bb', 2],
      ['x'.repeat(24), 3],
    ]);
  });

  it('forEachRecord throws when the payload is not count records of the layout', () => {
    const one = telemetry('a', 1);
    const short: Frame = { type: DKE_FRAME_TELEMETRY, count: 2, payload: one };
    expect(() => forEachRecord(short, dke_telemetry_rec, () => {})).toThrow(`a frame of type ${DKE_FRAME_TELEMETRY} holds ${dke_telemetry_rec.size} bytes, not 2 records of ${dke_telemetry_rec.size}`);
    const visited: number[] = [];
    const wrongLayout: Frame = { type: DKE_FRAME_FLOWS, count: 1, payload: one };
    expect(() => forEachRecord(wrongLayout, dke_flow_delta, (r) => visited.push(r))).toThrow(/holds 32 bytes, not 1 records of 128/);
    expect(visited).toEqual([]);
  });

  it('readField reads every width, u64 exactly below 2^53; fieldBytes is the field', () => {
    const b = Buffer.alloc(64, 0xff);
    const fields = { a: { offset: 0, size: 1 }, b: { offset: 1, size: 2 }, c: { offset: 3, size: 4 }, d: { offset: 8, size: 8 }, e: { offset: 16, size: 16 } };
    fill(b, 0, { size: 32, fields }, { a: 0x12, b: 0xbeef, c: 0xfffffffe, d: 2 ** 53 - 1, e: Buffer.from('0123456789abcdef') });
    expect([readField(b, 0, fields.a), readField(b, 0, fields.b), readField(b, 0, fields.c), readField(b, 0, fields.d)]).toEqual([0x12, 0xbeef, 0xfffffffe, 2 ** 53 - 1]);
    expect(fieldBytes(b, 0, fields.e).toString()).toBe('0123456789abcdef');
    expect(() => readField(b, 0, fields.e)).toThrow(/16 bytes is not a number/);
    // The same fields of a record further on.
    fill(b, 32, { size: 32, fields }, { c: 5 });
    expect(readField(b, 32, fields.c)).toBe(5);
  });
});
