// Turns the command line DataKit (or a person) gives us into a CollectorConfig.
//
// Precedence, highest first:
//   1. a flag on the real command line;
//   2. the --config ebpf.conf: its keys, then the flags in its `args` (DataKit
//      appends key-derived flags after `args`, and the last flag wins there);
//   3. the environment: ENV_HOSTNAME from the conf's `envs`, then from our own
//      environment (DataKit sets it from datakit.conf), blank meaning unset;
//   4. upstream's defaults.
// Tags merge instead of replacing: conf `args` --tags, then [inputs.ebpf.tags],
// then command-line --tags, a later source winning per key.
//
// Compatibility is the point of this module: DataKit versions pass flags that
// upstream never knew (`--res-net`, `--trace-allprocess`) and new ones keep
// appearing, so anything we do not implement is a warning, never a crash.
// Commander stops recognising options after the first unknown one, so unknown
// flags are removed before commander sees the arguments.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { CollectorError, isCollectorError } from '../errors';
import { readEbpfConf } from './ebpfconf';
import { CollectorConfig, LogLevel, Plugin } from './types';
import {
  parseApiServer,
  parseBool,
  parseByteSize,
  parseInterval,
  parseLogLevel,
  parseLogTarget,
  parseNonEmpty,
  parsePlugins,
  parsePort,
  parseTags,
  quote,
  splitList,
} from './values';

export type ParsedCommand = { kind: 'run'; config: CollectorConfig } | { kind: 'exit'; code: number; output: string };

export const DEFAULTS = {
  datakitApiServer: '0.0.0.0:9529',
  intervalMs: 60_000,
  log: '/usr/local/datakit/externals/datakit-ebpf.log',
  logLevel: 'info' as LogLevel,
  service: 'ebpf',
  enabled: ['ebpf-net'] as Plugin[],
  ephemeralPort: 0,
  ipv6Disabled: false,
  includeLoopback: false,
  stateDir: '/usr/local/datakit/externals/datakit-ebpf.state',
  spoolMaxBytes: 256 * 1024 * 1024,
  gzip: true,
} as const;

// ------------------------------------------------------------- flag table

type Group = 'datakit' | 'collect' | 'process' | 'compat';

const GROUP_HEADINGS: Record<Group, string> = {
  datakit: 'DataKit connection:',
  collect: 'Collection:',
  process: 'Logging and process:',
  compat: 'Accepted for DataKit compatibility (not implemented, a warning each):',
};

interface FlagSpec {
  /** Long flag as written, e.g. `--interval`. */
  flag: string;
  /** Commander's value syntax: `<x>` required, `[x]` optional. */
  arg: string;
  help: string;
  group: Group;
  /** Spelling variants that share the same setting, hidden from help. */
  aliases?: string[];
}

const FLAGS: FlagSpec[] = [
  { flag: '--datakit-apiserver', arg: '<addr>', group: 'datakit', help: 'DataKit API server: host:port, [ipv6]:port or http(s):// URL (default: 0.0.0.0:9529, dialled as 127.0.0.1)' },
  { flag: '--hostname', arg: '<name>', group: 'datakit', help: 'value of the host tag (default: $ENV_HOSTNAME, else the OS host name)' },
  { flag: '--service', arg: '<name>', group: 'datakit', help: 'value of the service tag (default: ebpf)' },
  { flag: '--tags', arg: '<k=v;...>', group: 'datakit', help: 'extra tags, pairs separated by ";" or ","; repeatable' },
  { flag: '--enabled', arg: '<plugins>', group: 'collect', help: 'plugins to run, comma-separated: ebpf-net, ebpf-bash; repeatable (default: ebpf-net)' },
  { flag: '--interval', arg: '<duration>', group: 'collect', help: 'flush interval, a Go duration such as 10s or 1m30s, at least 1s (default: 60s)' },
  { flag: '--ephemeral-port', arg: '<port>', group: 'collect', aliases: ['--ephemeral_port'], help: 'client ports >= this collapse to "*"; 0 collapses all (default: 0; alias --ephemeral_port)' },
  { flag: '--ipv6-disabled', arg: '[bool]', group: 'collect', help: 'ignore IPv6 traffic (default: false)' },
  { flag: '--include-loopback', arg: '[bool]', group: 'collect', help: 'also report loopback-to-loopback flows, which upstream drops (default: false)' },
  { flag: '--log', arg: '<path>', group: 'process', help: `log file, or "stdout" (default: ${DEFAULTS.log})` },
  { flag: '--log-level', arg: '<level>', group: 'process', help: 'trace, debug, info, warn, error or fatal (default: info)' },
  { flag: '--pidfile', arg: '<path>', group: 'process', help: 'write our pid to this file' },
  { flag: '--config', arg: '<file>', group: 'process', help: 'read settings from a DataKit ebpf.conf; command-line flags win over it' },
  { flag: '--state-dir', arg: '<dir>', group: 'process', help: `spool of undelivered points and counter read-marks (default: ${DEFAULTS.stateDir})` },
  { flag: '--spool-max-bytes', arg: '<size>', group: 'datakit', help: 'bound of the on-disk spool, e.g. 256M; when full the oldest points are dropped and counted (default: 256M)' },
  { flag: '--gzip', arg: '[bool]', group: 'datakit', help: 'gzip request bodies to DataKit (default: true; --gzip=false to turn off)' },
  { flag: '--pprof-host', arg: '<host>', group: 'process', help: 'serve /metrics and /status on this address (DataKit passes it; default: off unless --pprof-port)' },
  { flag: '--pprof-port', arg: '<port>', group: 'process', help: 'serve /metrics and /status on this port (DataKit passes 6061)' },
];

// Every flag DataKit has been seen to pass that we do not implement. All take
// an optional value: DataKit passes some bare (`--trace-allprocess`), some
// with a value (`--res-net 10Mi`), and versions have differed.
const COMPAT_FLAGS = [
  '--l7net-enabled',
  '--l7net-disabled',
  '--netlog-metric',
  '--netlog-log',
  '--netlog-blacklist',
  '--trace-server',
  '--trace-allprocess',
  '--trace-name-list',
  '--trace-name-blacklist',
  '--trace-name-whitelist',
  '--trace-env-list',
  '--trace-env-blacklist',
  '--trace-env-whitelist',
  '--trace-port-blacklist',
  '--trace-port-whitelist',
  '--conv-to-ddtrace',
  '--res-net',
  '--res-cpu',
  '--res-mem',
  '--res-bandwidth',
  '--res-pid',
  '--res-net-host',
  '--sampling-rate',
  '--sampling-rate-pts-per-min',
  '--sampling-rate-ptsperminute',
  '--workload-labels',
  '--workload-label-prefix',
  '--apm-trace',
  '--k8s-info',
  '--ebpf-trace',
  '--bpf-net-l4log',
  '--bpf-net-l7log',
];

for (const flag of COMPAT_FLAGS) {
  FLAGS.push({ flag, arg: '[value]', group: 'compat', help: '' });
}

export function flagNotImplementedWarning(flag: string): string {
  return `flag ${flag} is accepted for DataKit compatibility but not implemented; ignored`;
}

function unknownFlagWarning(flag: string): string {
  return `unknown flag ${flag} ignored (a newer DataKit may pass flags this collector does not know)`;
}

// ------------------------------------------------------- commander program

interface Occurrence {
  /** Canonical flag (aliases resolved), e.g. `--ephemeral-port`. */
  flag: string;
  /** The spelling used, for messages. */
  as: string;
  /** The value, or true for a bare optional-value flag. */
  value: string | true;
}

const HELP_WIDTH = 100;

function buildProgram(record: (o: Occurrence) => void): { program: Command; out: () => string } {
  let out = '';
  const program = new Command('datakit-ebpf')
    .usage('[run] [options]')
    .description(
      "Network flow collector for DataKit, a drop-in replacement for DataKit's datakit-ebpf.\n" +
        'DataKit starts it as `datakit-ebpf run --datakit-apiserver 0.0.0.0:9529 ...` from conf.d/host/ebpf.conf.',
    )
    .version(`datakit-ebpf ${packageVersion()}`, '--version', 'print the version and exit')
    .helpOption('-h, --help', 'print this help and exit')
    .allowExcessArguments(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => {
        out += s;
      },
      writeErr: () => {},
      outputError: () => {},
      getOutHelpWidth: () => HELP_WIDTH,
      getErrHelpWidth: () => HELP_WIDTH,
      getOutHasColors: () => false,
      getErrHasColors: () => false,
    })
    .addHelpText(
      'after',
      '\nPrecedence: command-line flag > --config file (keys, then its args) > ENV_HOSTNAME > default.\n' +
        'Unknown flags are ignored with a warning so newer DataKit versions cannot stop the collector.\n',
    );

  for (const spec of FLAGS) {
    for (const spelling of [spec.flag, ...(spec.aliases ?? [])]) {
      const opt = new Option(`${spelling} ${spec.arg}`, spec.help).helpGroup(GROUP_HEADINGS[spec.group]);
      if (spelling !== spec.flag) opt.hideHelp();
      program.addOption(opt);
      // Listening to the raw events keeps the order across aliases and the
      // exact text, which commander's merged option values would lose.
      program.on(`option:${opt.name()}`, (val: string | null | undefined) => {
        record({ flag: spec.flag, as: spelling, value: val ?? true });
      });
    }
  }
  return { program, out: () => out };
}

let cachedVersion: string | undefined;

/** Our package.json version, found by walking up so it works from src/ and dist/src/. */
export function packageVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  cachedVersion = '0.0.0-unknown';
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(fs.readFileSync(nodePath.join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'datakit-ebpf' && typeof pkg.version === 'string') {
        cachedVersion = pkg.version;
        break;
      }
    } catch {
      // not here; keep walking up
    }
    dir = nodePath.dirname(dir);
  }
  return cachedVersion;
}

// ------------------------------------------------------- argv screening

type Source = { kind: 'cli' } | { kind: 'conf'; where: string };

interface Screened {
  args: string[];
  warnings: string[];
}

function isOptionLike(tok: string): boolean {
  return tok.length > 1 && tok[0] === '-' && !/^-(\d+|\d*\.\d+)(e[+-]?\d+)?$/.test(tok);
}

/**
 * Drops what commander must not see: unknown flags (with the value that
 * follows them, if any), stray arguments, and in a conf's `args` the flags
 * that make no sense there. Value-taking known flags keep their value token
 * exactly as commander would take it, so a value is never misread as a flag.
 */
function screen(argv: string[], source: Source): Screened {
  const specs = new Map<string, FlagSpec>();
  for (const spec of FLAGS) for (const s of [spec.flag, ...(spec.aliases ?? [])]) specs.set(s, spec);
  const exitFlags = new Set(['-h', '--help', '--version']);
  const args: string[] = [];
  const warnings: string[] = [];
  const inConf = source.kind === 'conf' ? ` in ${source.where}` : '';

  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i] as string;
    if (tok === '--') {
      if (i + 1 < argv.length) warnings.push(`arguments after "--"${inConf} ignored`);
      break;
    }
    if (!isOptionLike(tok)) {
      warnings.push(`unexpected argument ${quote(tok)}${inConf} ignored`);
      continue;
    }
    const eq = tok.startsWith('--') ? tok.indexOf('=') : -1;
    const name = eq > 0 ? tok.slice(0, eq) : tok;
    const next = argv[i + 1];
    const nextIsValue = next !== undefined && !isOptionLike(next);

    if (exitFlags.has(name)) {
      if (source.kind === 'conf') warnings.push(`flag ${name}${inConf} ignored`);
      else args.push(tok);
      continue;
    }
    const spec = specs.get(name);
    if (spec === undefined || (source.kind === 'conf' && spec.flag === '--config')) {
      warnings.push(spec ? `flag ${name}${inConf} ignored` : unknownFlagWarning(name));
      // An unknown flag's following non-flag token can only be its value:
      // this command takes no positional arguments.
      if (eq < 0 && (spec ? next !== undefined : nextIsValue)) i++;
      continue;
    }
    args.push(tok);
    if (eq > 0) continue;
    if (spec.arg.startsWith('<') && next !== undefined) {
      args.push(next);
      i++;
    } else if (spec.arg.startsWith('[') && nextIsValue) {
      args.push(next as string);
      i++;
    }
  }
  return { args, warnings };
}

// -------------------------------------------------------- flags -> values

/** Settings one source (command line or conf `args`) gave; absent = not given. */
interface Layer {
  apiServer?: { url: string; connectUrl: string };
  hostname?: string;
  intervalMs?: number;
  log?: string;
  logLevel?: LogLevel;
  service?: string;
  pidfile?: string;
  tags: Record<string, string>;
  enabled?: Plugin[];
  ephemeralPort?: number;
  ipv6Disabled?: boolean;
  includeLoopback?: boolean;
  l7netEnabled?: string[];
  pprofHost?: string;
  pprofPort?: number;
  config?: string;
  stateDir?: string;
  spoolMaxBytes?: number;
  gzip?: boolean;
}

type FlagsResult = { exit: { code: number; output: string } } | { layer: Layer; warnings: string[] };

function parseFlags(argv: string[], source: Source): FlagsResult {
  const { args, warnings } = screen(stripRun(argv), source);
  const seen: Occurrence[] = [];
  const { program, out } = buildProgram((o) => seen.push(o));
  try {
    program.parse(args, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') {
        return { exit: { code: err.exitCode, output: out() } };
      }
      throw commanderToConfigError(err);
    }
    throw err;
  }
  const layer: Layer = { tags: {} };
  for (const o of seen) applyFlag(layer, o, warnings);
  return { layer, warnings };
}

// DataKit prepends `run`; older DataKit did not. `help` is the other verb
// people type out of habit.
function stripRun(argv: string[]): string[] {
  if (argv[0] === 'run') return argv.slice(1);
  if (argv[0] === 'help') return ['--help', ...argv.slice(1)];
  return argv;
}

function commanderToConfigError(err: CommanderError): CollectorError {
  // Only a value-taking flag at the very end can get here: screening already
  // removed unknown flags and stray arguments.
  const m = /option '(--?[\w-]+)[^']*' argument missing/.exec(err.message);
  const msg = m
    ? `${m[1]}: missing value; expected ${FLAGS.find((f) => f.flag === m[1] || f.aliases?.includes(m[1] as string))?.arg ?? 'a value'} after it`
    : err.message.replace(/^error:\s*/, '').split('\n')[0] ?? err.message;
  return new CollectorError('CONFIG_INVALID', msg, { cause: err });
}

function applyFlag(layer: Layer, o: Occurrence, warnings: string[]): void {
  const raw = o.value;
  const subject = `${o.as} ${quote(raw === true ? '' : raw)}`;
  // A value-taking flag can only arrive bare if it is optional-value.
  const text = (): string => {
    if (raw === true) throw new CollectorError('CONFIG_INVALID', `${o.as}: missing value`);
    return raw;
  };
  switch (o.flag) {
    case '--datakit-apiserver':
      layer.apiServer = parseApiServer(text(), subject);
      return;
    case '--hostname': {
      // Blank means "not given": the next source decides, as for ENV_HOSTNAME.
      const h = text().trim();
      if (h !== '') layer.hostname = h;
      return;
    }
    case '--interval':
      layer.intervalMs = parseInterval(text(), subject);
      return;
    case '--log':
      layer.log = parseLogTarget(text(), subject);
      return;
    case '--log-level':
      layer.logLevel = parseLogLevel(text(), subject);
      return;
    case '--service':
      layer.service = parseNonEmpty(text(), subject, 'service name');
      return;
    case '--pidfile':
      layer.pidfile = parseNonEmpty(text(), subject, 'file path');
      return;
    case '--tags':
      Object.assign(layer.tags, parseTags(text(), subject, warnings));
      return;
    case '--enabled': {
      const items = splitList(text());
      if (items.length === 0) return;
      const plugins = parsePlugins(items, subject, warnings);
      layer.enabled = [...(layer.enabled ?? []), ...plugins.filter((p) => !layer.enabled?.includes(p))];
      return;
    }
    case '--ephemeral-port':
      layer.ephemeralPort = parsePort(text(), subject);
      return;
    case '--ipv6-disabled':
      layer.ipv6Disabled = parseBool(raw, subject);
      return;
    case '--include-loopback':
      layer.includeLoopback = parseBool(raw, subject);
      return;
    case '--config':
      layer.config = parseNonEmpty(text(), subject, 'file path');
      return;
    case '--state-dir':
      layer.stateDir = parseNonEmpty(text(), subject, 'directory');
      return;
    case '--spool-max-bytes':
      layer.spoolMaxBytes = parseByteSize(text(), subject);
      return;
    case '--gzip':
      layer.gzip = parseBool(raw, subject);
      return;
    case '--pprof-host':
      layer.pprofHost = parseNonEmpty(text(), subject, 'host');
      return;
    case '--pprof-port':
      // DataKit always passes it; a bad value costs the status endpoint, never collection.
      try {
        layer.pprofPort = parsePort(text(), subject);
      } catch (err) {
        warnings.push(`${(err as Error).message}; the /metrics endpoint is off`);
      }
      return;
  }
  // The rest are compatibility flags: record what is cheap to keep for the
  // day they are implemented, but never fail on their values.
  warnings.push(flagNotImplementedWarning(o.as));
  if (raw === true) return;
  if (o.flag === '--l7net-enabled') {
    layer.l7netEnabled = [...(layer.l7netEnabled ?? []), ...splitList(raw)];
  }
}

// ----------------------------------------------------------------- merge

/**
 * @param argv the arguments after the program name (`process.argv.slice(2)`).
 * @param env where ENV_HOSTNAME is looked up.
 * @throws CollectorError CONFIG_INVALID for a bad value, CONFIG_FILE for an
 *   unreadable or malformed --config file.
 */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): ParsedCommand {
  const cli = parseFlags(argv, { kind: 'cli' });
  if ('exit' in cli) return { kind: 'exit', ...cli.exit };

  const warnings: string[] = [];
  let conf: ReturnType<typeof readEbpfConf> | undefined;
  let confArgs: Layer = { tags: {} };
  let confArgsWarnings: string[] = [];
  if (cli.layer.config !== undefined) {
    conf = readEbpfConf(cli.layer.config);
    warnings.push(...conf.warnings);
    const where = `${conf.path}${conf.argsLine ? `:${conf.argsLine}` : ''}: args`;
    try {
      const parsed = parseFlags(conf.args, { kind: 'conf', where });
      if ('layer' in parsed) {
        confArgs = parsed.layer;
        confArgsWarnings = parsed.warnings;
      }
    } catch (err) {
      if (isCollectorError(err, 'CONFIG_INVALID')) {
        throw new CollectorError('CONFIG_INVALID', `${where}: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }
  warnings.push(...confArgsWarnings, ...cli.warnings);

  const c = cli.layer;
  const a = confArgs;
  const k = conf;
  const apiServer = c.apiServer ?? a.apiServer ?? parseApiServer(DEFAULTS.datakitApiServer, 'default');

  const config: CollectorConfig = {
    datakitApiServer: apiServer.url,
    datakitConnectUrl: apiServer.connectUrl,
    hostname:
      c.hostname ??
      a.hostname ??
      nonBlank(k?.envs.ENV_HOSTNAME) ??
      nonBlank(env.ENV_HOSTNAME) ??
      os.hostname(),
    intervalMs: c.intervalMs ?? k?.intervalMs ?? a.intervalMs ?? DEFAULTS.intervalMs,
    log: c.log ?? a.log ?? DEFAULTS.log,
    logLevel: c.logLevel ?? a.logLevel ?? DEFAULTS.logLevel,
    service: c.service ?? a.service ?? DEFAULTS.service,
    tags: { ...a.tags, ...(k?.tags ?? {}), ...c.tags },
    enabled: c.enabled ?? k?.enabled ?? a.enabled ?? [...DEFAULTS.enabled],
    ephemeralPort: c.ephemeralPort ?? k?.ephemeralPort ?? a.ephemeralPort ?? DEFAULTS.ephemeralPort,
    ipv6Disabled: c.ipv6Disabled ?? k?.ipv6Disabled ?? a.ipv6Disabled ?? DEFAULTS.ipv6Disabled,
    includeLoopback: c.includeLoopback ?? a.includeLoopback ?? DEFAULTS.includeLoopback,
    l7netEnabled: c.l7netEnabled ?? k?.l7netEnabled ?? a.l7netEnabled ?? [],
    stateDir: c.stateDir ?? a.stateDir ?? DEFAULTS.stateDir,
    spoolMaxBytes: c.spoolMaxBytes ?? a.spoolMaxBytes ?? DEFAULTS.spoolMaxBytes,
    gzip: c.gzip ?? a.gzip ?? DEFAULTS.gzip,
    warnings: [...new Set(warnings)],
  };
  const pidfile = c.pidfile ?? a.pidfile;
  if (pidfile !== undefined) config.pidfile = pidfile;
  const pprofHost = c.pprofHost ?? k?.pprofHost ?? a.pprofHost;
  if (pprofHost !== undefined && pprofHost !== '') config.pprofHost = pprofHost;
  const pprofPort = c.pprofPort ?? k?.pprofPort ?? a.pprofPort;
  if (pprofPort !== undefined) config.pprofPort = pprofPort;
  if (conf) config.configFile = conf.path;
  return { kind: 'run', config };
}

function nonBlank(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}
