// --dry-run (or --datakit-apiserver stdout): points are printed as the line
// protocol that would be POSTed, each interval's batch preceded by a comment
// naming the request, so the collector can be debugged without DataKit. Line
// protocol treats `#` lines as comments, so the output can be replayed with
// curl --data-binary as it is.
import type { Logger } from 'pino';
import { encodePoint } from '../lineproto/encode';
import type { Point } from '../lineproto/point';
import type { PointSink, WriteHooks, WriteReceipt } from './delivery';
import type { Category } from './uploader';

export class StdoutSink implements PointSink {
  readonly durable = false;
  private seq = 0;

  constructor(
    private readonly log: Logger,
    private readonly out: NodeJS.WritableStream = process.stdout,
  ) {
    log.info('dry run: printing line protocol to stdout instead of sending it to DataKit');
  }

  async write(category: Category, input: string, points: readonly Point[], hooks?: WriteHooks): Promise<WriteReceipt> {
    const lines: string[] = [];
    let rejected = 0;
    for (const p of points) {
      try {
        lines.push(encodePoint(p));
      } catch (err) {
        rejected++;
        this.log.error({ input, err: (err as Error).message }, 'a point cannot be encoded');
      }
    }
    if (lines.length === 0) return { queued: 0, rejected, lastSeq: 0 };
    hooks?.beforeAppend?.(this.seq + 1);
    this.seq += 1;
    this.out.write(`# POST /v1/write/${category}?input=${encodeURIComponent(input)}&precision=ns (${lines.length} points)\n${lines.join('\n')}\n`);
    return { queued: lines.length, rejected, lastSeq: this.seq };
  }

  committed(): boolean {
    return false;
  }
}
