// A measurement point as the aggregators produce it and the encoder consumes it.
// Field typing is explicit because line protocol distinguishes 1i from 1:
//   number  -> int64 (must be a safe integer; every netflow/dnsflow field is one)
//   bigint  -> int64
//   Float   -> float64 (wrap with `float(x)`)
//   string  -> string field
//   boolean -> bool field
export class Float {
  constructor(readonly value: number) {}
}
export const float = (value: number): Float => new Float(value);

export type FieldValue = number | bigint | string | boolean | Float;

export interface Point {
  measurement: string;
  /** Tag values are strings; empty values are omitted by the encoder (line protocol forbids them). */
  tags: Record<string, string>;
  /** At least one field is required. */
  fields: Record<string, FieldValue>;
  /** Nanoseconds since the epoch. */
  timestampNs: bigint;
}
