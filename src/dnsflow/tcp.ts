// DNS over TCP (RFC 7766): each message is prefixed by its 2-byte length and
// may span segments, or share one. Segments arrive as captured at the socket
// (retransmissions included, ingress possibly out of order) with at most
// DKE_DNS_PAYLOAD_MAX bytes of each, so this follows every stream by sequence
// number: bytes already seen are skipped, bytes not captured leave a hole in
// the message (the parser reads what came before it), and a hole that hides a
// length prefix loses the stream, which is then ignored until it goes idle.
// Streams and message buffers are bounded; what does not fit is counted.

export interface TcpDnsMessage {
  /** The message's bytes up to its end or its first hole. */
  message: Buffer;
  /** Some of the message's bytes were not captured. */
  holes: boolean;
  /** Kernel time of the segment that carried its first byte. */
  firstNs: bigint;
  /** Kernel time of the segment that carried its last byte. */
  lastNs: bigint;
}

export interface TcpSegment {
  /** The stream: one direction of one connection. */
  key: string;
  seq: number;
  /** Payload bytes on the wire; `data` is the captured prefix of them. */
  wireLen: number;
  data: Buffer;
  ktimeNs: bigint;
}

interface Stream {
  /** Sequence number of the next byte to consume. */
  next: number;
  /** Length-prefix bytes read so far (0, 1), or 2 when reading a body. */
  prefixGot: number;
  prefixHigh: number;
  msgLen: number;
  got: number;
  chunks: Buffer[];
  stored: number;
  holes: boolean;
  firstNs: bigint;
  lastNs: bigint;
  lost: boolean;
}

export interface TcpDnsOptions {
  maxStreams: number;
  /** Bytes kept of one message; the parser needs the header and the answers. */
  maxMessageBytes: number;
  /** A stream without a segment for this long is forgotten. */
  idleNs: bigint;
}

export const TCP_DNS_DEFAULTS: TcpDnsOptions = { maxStreams: 1024, maxMessageBytes: 4096, idleNs: 30_000_000_000n };

/** Signed distance a - b in 32-bit sequence space. */
function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

export class TcpDnsStreams {
  private readonly streams = new Map<string, Stream>();
  /** Segments of new streams dropped because the table was full. */
  shed = 0;
  /** Streams given up after a hole hid a message boundary. */
  lost = 0;

  constructor(private readonly opts: TcpDnsOptions = TCP_DNS_DEFAULTS) {}

  get size(): number {
    return this.streams.size;
  }

  /** The messages this segment completes. */
  push(seg: TcpSegment): TcpDnsMessage[] {
    let s = this.streams.get(seg.key);
    if (!s) {
      if (this.streams.size >= this.opts.maxStreams) {
        this.expire(seg.ktimeNs);
        if (this.streams.size >= this.opts.maxStreams) {
          this.shed++;
          return [];
        }
      }
      // The first data of a DNS connection is a length prefix.
      s = { next: seg.seq, prefixGot: 0, prefixHigh: 0, msgLen: 0, got: 0, chunks: [], stored: 0, holes: false, firstNs: 0n, lastNs: 0n, lost: false };
      this.streams.set(seg.key, s);
    }
    s.lastNs = seg.ktimeNs;
    if (s.lost) return [];
    const out: TcpDnsMessage[] = [];
    const captured = Math.min(seg.data.length, seg.wireLen);
    let skip = seqDiff(s.next, seg.seq);
    if (skip < 0) {
      // Bytes between what we have and this segment never came (or come later, out of order).
      this.consumeHole(s, -skip, seg.ktimeNs, out);
      skip = 0;
    }
    if (skip >= seg.wireLen) return out; // a retransmission of bytes already consumed
    if (skip < captured) this.consumeData(s, seg.data.subarray(skip, captured), seg.ktimeNs, out);
    const unknown = seg.wireLen - Math.max(skip, captured);
    if (unknown > 0) this.consumeHole(s, unknown, seg.ktimeNs, out);
    return out;
  }

  private consumeData(s: Stream, data: Buffer, ktimeNs: bigint, out: TcpDnsMessage[]): void {
    let i = 0;
    while (i < data.length && !s.lost) {
      if (s.prefixGot < 2) {
        if (s.prefixGot === 0) {
          s.prefixHigh = data[i]!;
          s.prefixGot = 1;
          s.firstNs = ktimeNs;
        } else {
          s.msgLen = (s.prefixHigh << 8) | data[i]!;
          s.prefixGot = 2;
          s.got = 0;
          if (s.msgLen === 0) this.reset(s); // an empty message: nothing to parse
        }
        i++;
        s.next = (s.next + 1) | 0;
        continue;
      }
      const n = Math.min(s.msgLen - s.got, data.length - i);
      if (!s.holes && s.stored < this.opts.maxMessageBytes) {
        const keep = Math.min(n, this.opts.maxMessageBytes - s.stored);
        s.chunks.push(Buffer.from(data.subarray(i, i + keep)));
        s.stored += keep;
      }
      s.got += n;
      i += n;
      s.next = (s.next + n) | 0;
      if (s.got === s.msgLen) this.complete(s, ktimeNs, out);
    }
  }

  private consumeHole(s: Stream, count: number, ktimeNs: bigint, out: TcpDnsMessage[]): void {
    if (s.prefixGot < 2) {
      this.loseStream(s);
      return;
    }
    const n = Math.min(s.msgLen - s.got, count);
    s.got += n;
    s.holes = true;
    s.next = (s.next + n) | 0;
    if (s.got === s.msgLen) this.complete(s, ktimeNs, out);
    if (count > n) this.loseStream(s); // the hole runs on past the next length prefix
  }

  private complete(s: Stream, ktimeNs: bigint, out: TcpDnsMessage[]): void {
    out.push({ message: Buffer.concat(s.chunks), holes: s.holes, firstNs: s.firstNs, lastNs: ktimeNs });
    this.reset(s);
  }

  private reset(s: Stream): void {
    s.prefixGot = 0;
    s.msgLen = 0;
    s.got = 0;
    s.chunks = [];
    s.stored = 0;
    s.holes = false;
  }

  private loseStream(s: Stream): void {
    if (!s.lost) this.lost++;
    s.lost = true;
    s.chunks = [];
  }

  /** Forgets streams idle since before `nowNs - idleNs`. */
  expire(nowNs: bigint): void {
    const cutoff = nowNs - this.opts.idleNs;
    for (const [k, s] of this.streams) if (s.lastNs < cutoff) this.streams.delete(k);
  }
}
