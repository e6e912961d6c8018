#!/usr/bin/env node
// `datakit-ebpf`: parse flags (exit 2 with one line on bad input), set up the
// process (log, pidfile, privilege drop), run the daemon, and wire signals to
// its close()/destroy() in this one place. `check-config <file>` only checks;
// `console` runs the local network console (src/console/cli.ts).
import { checkConfigFile } from '../config/check';
import { parseCommandLine } from '../config/cli';
import { isCollectorError } from '../errors';
import { Daemon } from '../daemon/daemon';
import { createLogger, reopenLogFile } from '../daemon/logger';
import { Pidfile } from '../daemon/pidfile';
import { dropDaemonPrivileges } from '../daemon/privileges';

const CLOSE_TIMEOUT_MS = 15_000;

function checkConfig(args: string[]): number {
  const files = args.filter((a) => a !== '--');
  if (files.length !== 1 || files[0]!.startsWith('-')) {
    process.stderr.write('usage: datakit-ebpf check-config <ebpf.conf>\n');
    return 2;
  }
  const report = checkConfigFile(files[0]!);
  process.stdout.write(`${report.lines.join('\n')}\n`);
  return report.exitCode;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'check-config') return checkConfig(argv.slice(1));
  // Loaded on demand: the collector never loads the console's store.
  if (argv[0] === 'console') return (await import('../console/cli')).runConsole(argv.slice(1));
  let parsed;
  try {
    parsed = parseCommandLine(argv, process.env);
  } catch (err) {
    process.stderr.write(`datakit-ebpf: ${(err as Error).message}\n`);
    return 2;
  }
  if (parsed.kind === 'exit') {
    (parsed.code === 0 ? process.stdout : process.stderr).write(parsed.output.endsWith('\n') ? parsed.output : `${parsed.output}\n`);
    return parsed.code;
  }
  const config = parsed.config;
  // A dry run prints line protocol on stdout; its logs move out of the way.
  const log = createLogger(config.dryRun && config.log === 'stdout' ? 'stderr' : config.log, config.logLevel);

  // Both before the privilege drop: the pidfile's directory and the state
  // directory usually belong to root.
  let pidfile: Pidfile | undefined;
  const fail = (err: unknown): number => {
    const msg = (err as Error).message;
    log.fatal({ code: isCollectorError(err) ? err.code : undefined }, msg);
    process.stderr.write(`datakit-ebpf: ${msg}\n`);
    pidfile?.remove(log);
    return isCollectorError(err, 'CONFIG_INVALID') ? 2 : 1;
  };
  try {
    if (config.pidfile) pidfile = Pidfile.write(config.pidfile);
    dropDaemonPrivileges(config, log);
  } catch (err) {
    return fail(err);
  }

  const daemon = new Daemon(config, log);
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      daemon.destroy();
      pidfile?.remove(log);
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'stopping: flushing the current interval');
    const force = setTimeout(() => {
      log.error(`stop took longer than ${CLOSE_TIMEOUT_MS} ms; exiting without the last flush`);
      daemon.destroy();
      pidfile?.remove(log);
      process.exit(1);
    }, CLOSE_TIMEOUT_MS);
    force.unref();
    daemon.close().then(
      () => {
        pidfile?.remove(log);
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        pidfile?.remove(log);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // logrotate (without copytruncate) moves the file, then sends SIGHUP.
  process.on('SIGHUP', () => {
    const r = reopenLogFile();
    if (r.error) log.warn({ file: r.file, err: r.error }, `SIGHUP: cannot reopen the log file ${r.file} (${r.error}); still writing to the old one`);
    else log.info({ file: r.file ?? config.log }, r.file ? 'SIGHUP: log file reopened' : 'SIGHUP: logging to a stream, nothing to reopen');
  });
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception: exiting');
    daemon.destroy();
    pidfile?.remove(log);
    process.exit(1);
  });

  try {
    await daemon.start();
  } catch (err) {
    daemon.destroy();
    return fail(err);
  }
  return -1; // keep running
}

main().then((code) => {
  if (code >= 0) process.exit(code);
});
