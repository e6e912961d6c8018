// pino JSON logs to --log: a file (created with its directory), stdout or
// stderr. A log file can be reopened (SIGHUP after logrotate moved it).
import path from 'node:path';
import fs from 'node:fs';
import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config/types';

type Destination = ReturnType<typeof pino.destination>;

let fileDest: { file: string; dest: Destination } | undefined;

export function createLogger(dest: string, level: LogLevel): Logger {
  const base = { name: 'datakit-ebpf' };
  if (dest === 'stdout') return pino({ level, base }, pino.destination({ dest: 1, sync: true }));
  if (dest === 'stderr') return pino({ level, base }, pino.destination({ dest: 2, sync: true }));
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  // sync writes: DataKit stops us with SIGKILL, and the last lines matter most.
  const d = pino.destination({ dest, sync: true, append: true });
  // A failed write or reopen must never take the collector down.
  d.on('error', (err: Error) => process.stderr.write(`datakit-ebpf: log file ${dest}: ${err.message}\n`));
  fileDest = { file: dest, dest: d };
  return pino({ level, base }, d);
}

/**
 * Reopens the log file by name (logrotate moved it, or created a new one).
 * Returns an error message when the new file cannot be opened: logging then
 * continues into the old file.
 */
export function reopenLogFile(): { file?: string; error?: string } {
  if (!fileDest) return {};
  const { file, dest } = fileDest;
  try {
    // Probe first: a failed reopen inside pino's destination leaves listeners behind.
    fs.closeSync(fs.openSync(file, 'a', 0o640));
  } catch (err) {
    return { file, error: (err as Error).message };
  }
  try {
    dest.reopen();
  } catch (err) {
    return { file, error: (err as Error).message };
  }
  return { file };
}
