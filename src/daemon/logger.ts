// pino JSON logs to --log: a file (created with its directory) or stdout.
import path from 'node:path';
import fs from 'node:fs';
import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config/types';

export function createLogger(dest: string, level: LogLevel): Logger {
  const base = { name: 'datakit-ebpf' };
  if (dest === 'stdout') return pino({ level, base }, pino.destination({ dest: 1, sync: true }));
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  // sync writes: DataKit stops us with SIGKILL, and the last lines matter most.
  return pino({ level, base }, pino.destination({ dest, sync: true, append: true }));
}
