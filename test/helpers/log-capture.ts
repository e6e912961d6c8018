// Shared by unit tests that assert on what a component logged.
import pino from 'pino';

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** A debug-level logger whose records land, parsed, in `lines` (pino writes one JSON line per record, synchronously). */
export function capture(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

/** Polls `cond` every 10 ms; throws naming `what` after `timeoutMs`. */
export async function waitUntil(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
