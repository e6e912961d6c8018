#!/usr/bin/env node
// `datakit-ebpf`: parse flags (exit 2 with one line on bad input), run the
// daemon, wire signals to its close()/destroy() in this one place.
import { parseCommandLine } from '../config/cli';
import { isCollectorError } from '../errors';
import { Daemon } from '../daemon/daemon';
import { createLogger } from '../daemon/logger';

const CLOSE_TIMEOUT_MS = 15_000;

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`datakit-ebpf: ${(err as Error).message}\n`);
    return 2;
  }
  if (parsed.kind === 'exit') {
    (parsed.code === 0 ? process.stdout : process.stderr).write(parsed.output.endsWith('\n') ? parsed.output : `${parsed.output}\n`);
    return parsed.code;
  }
  const config = parsed.config;
  const log = createLogger(config.log, config.logLevel);
  const daemon = new Daemon(config, log);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      daemon.destroy();
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'stopping: flushing the current interval');
    const force = setTimeout(() => {
      log.error(`stop took longer than ${CLOSE_TIMEOUT_MS} ms; exiting without the last flush`);
      daemon.destroy();
      process.exit(1);
    }, CLOSE_TIMEOUT_MS);
    force.unref();
    daemon.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception: exiting');
    daemon.destroy();
    process.exit(1);
  });

  try {
    await daemon.start();
  } catch (err) {
    const msg = (err as Error).message;
    log.fatal({ code: isCollectorError(err) ? err.code : undefined }, msg);
    process.stderr.write(`datakit-ebpf: ${msg}\n`);
    daemon.destroy();
    return isCollectorError(err, 'CONFIG_INVALID') ? 2 : 1;
  }
  return -1; // keep running
}

main().then((code) => {
  if (code >= 0) process.exit(code);
});
