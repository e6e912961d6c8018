// pino JSON logs to --log: a file (created 0640 with parents any user can
// traverse, since the daemon reopens it after dropping root), stdout or
// stderr. A log file can be reopened (SIGHUP after logrotate moved it).
import path from 'node:path';
import fs from 'node:fs';
import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config/types';
import { CollectorError } from '../errors';
import { explain, makeDirs } from './workpaths';

/** Log files hold host and process names: not for every local user. */
const LOG_MODE = 0o640;

type Destination = ReturnType<typeof pino.destination>;

let fileDest: { file: string; dest: Destination } | undefined;

export function createLogger(dest: string, level: LogLevel): Logger {
  const base = { name: 'datakit-ebpf' };
  if (dest === 'stdout' || dest === 'stderr') {
    const d = pino.destination({ dest: dest === 'stdout' ? 1 : 2, sync: true });
    // A reader that went away (EPIPE) must not take the collector down; there is nowhere left to say so.
    d.on('error', () => undefined);
    return pino({ level, base }, d);
  }
  try {
    makeDirs(path.dirname(dest), 0o755);
    fs.closeSync(fs.openSync(dest, 'a', LOG_MODE));
  } catch (err) {
    throw new CollectorError('PATH_UNUSABLE', `log file ${dest} cannot be written: ${explain(dest, err)}; pass --log stdout or another --log file`, { cause: err });
  }
  // sync writes: DataKit stops us with SIGKILL, and the last lines matter most.
  const d = pino.destination({ dest, sync: true, append: true, mode: LOG_MODE });
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
    fs.closeSync(fs.openSync(file, 'a', LOG_MODE));
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
