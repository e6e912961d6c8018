#!/usr/bin/env node
// `datakit-ebpf`: parse flags (exit 2 with one line on bad input), set up the
// process (log, pidfile, paths, the pin-root lock, privilege drop), run the
// daemon, and wire signals and fatal errors to its close()/destroy() in this
// one place. `check-config <file>` only checks; `cleanup` removes pins;
// `console` runs the local network console (src/console/cli.ts).
import type { Logger } from 'pino';
import { checkConfigFile } from '../config/check';
import { parseCommandLine } from '../config/cli';
import { Daemon } from '../daemon/daemon';
import { createLogger, reopenLogFile } from '../daemon/logger';
import { Pidfile } from '../daemon/pidfile';
import { PinRootLock } from '../daemon/pinlock';
import { applyDrop, planDrop, requireBpfPrivileges } from '../daemon/privileges';
import { checkLogReopen, checkPaths, explain, preparePaths } from '../daemon/workpaths';
import { CollectorError } from '../errors';
import { cleanup } from './cleanup';
import { Collector, exitCodeOf } from './lifecycle';

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

/** --pidfile, written as root; one line with the fix when it cannot be. */
function writePidfile(file: string): Pidfile {
  try {
    return Pidfile.write(file);
  } catch (err) {
    throw new CollectorError('PATH_UNUSABLE', `pidfile ${file} cannot be written: ${explain(file, err)}; pass another --pidfile`, { cause: err });
  }
}

async function main(): Promise<number> {
  // A reader that went away (EPIPE on a pipe) is no reason to crash.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  const argv = process.argv.slice(2);
  if (argv[0] === 'check-config') return checkConfig(argv.slice(1));
  if (argv[0] === 'cleanup') {
    return cleanup(
      argv.slice(1),
      (l) => process.stdout.write(`${l}\n`),
      (l) => process.stderr.write(`${l}\n`),
    );
  }
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
  let log: Logger;
  try {
    // A dry run prints line protocol on stdout; its logs move out of the way.
    log = createLogger(config.dryRun && config.log === 'stdout' ? 'stderr' : config.log, config.logLevel);
  } catch (err) {
    process.stderr.write(`datakit-ebpf: ${(err as Error).message}\n`);
    return exitCodeOf(err);
  }

  const c = new Collector(config, log);
  // Signals and last-resort handlers first: from here on every way out detaches.
  process.on('SIGTERM', (s) => c.onSignal(s));
  process.on('SIGINT', (s) => c.onSignal(s));
  // logrotate (without copytruncate) moves the file, then sends SIGHUP.
  process.on('SIGHUP', () => {
    const r = reopenLogFile();
    if (r.error) log.warn({ file: r.file, err: r.error }, `SIGHUP: cannot reopen the log file ${r.file} (${r.error}); still writing to the old one`);
    else log.info({ file: r.file ?? config.log }, r.file ? 'SIGHUP: log file reopened' : 'SIGHUP: logging to a stream, nothing to reopen');
  });
  process.on('uncaughtException', (err) => c.onFatal(err, 'uncaught exception'));
  process.on('unhandledRejection', (reason) => c.onFatal(reason, 'unhandled promise rejection'));

  try {
    // Before the privilege drop: the pidfile's directory, DataKit's externals/
    // and bpffs usually belong to root.
    requireBpfPrivileges();
    if (config.pidfile) c.pidfile = writePidfile(config.pidfile);
    const plan = planDrop(config, log);
    const owner = plan.kind === 'drop' && plan.switchUser ? plan.target : undefined;
    const { pinRoot, madePins } = preparePaths(config, owner, log);
    c.madePins = madePins;
    if (pinRoot) c.lock = await PinRootLock.acquire(config.pinRoot, { log });
    const outcome = applyDrop(plan, log);
    // As the user the daemon now is, before anything is attached.
    const user = outcome.kind === 'dropped' ? outcome.user : 'root';
    checkPaths(config, user);
    checkLogReopen(config, user, log);
  } catch (err) {
    return c.failStart(err);
  }

  const daemon = new Daemon(config, log, c.lock);
  c.daemon = daemon;
  try {
    await daemon.start();
  } catch (err) {
    return c.failStart(err);
  }
  return -1; // keep running
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`datakit-ebpf: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
