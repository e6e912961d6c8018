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
import { closest } from './suggest';
import type { RedactPreset } from '../bash/redact';
import { CollectorConfig, LogLevel, Plugin } from './types';
import {
  invalid,
  parseApiServer,
  parseBool,
  parseByteSize,
  parseDnsPorts,
  parseDnsTimeout,
  parseInterval,
  parseLogLevel,
  parseLogTarget,
  parseNonEmpty,
  parsePlugins,
  parseRedactPresetList,
  parseRedactRegex,
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
  dnsPorts: [53] as readonly number[],
  dnsTimeoutMs: 6000,
  stateDir: '/usr/local/datakit/externals/datakit-ebpf.state',
  spoolMaxBytes: 256 * 1024 * 1024,
  gzip: true,
  pinRoot: '/sys/fs/bpf/datakit-ebpf',
  uploadTimeoutMs: 10_000,
} as const;

// ------------------------------------------------------------- flag table

type Group = 'datakit' | 'tags' | 'collect' | 'logging' | 'process' | 'status' | 'compat';

// In the order --help shows them: what people look for first comes first.
const GROUP_HEADINGS: Record<Group, string> = {
  datakit: 'Sending to DataKit:',
  tags: 'Tags on every point:',
  collect: 'What to collect:',
  logging: 'Logging:',
  process: 'Service, files and privileges:',
  status: 'Status endpoint:',
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
  { flag: '--dry-run', arg: '[bool]', group: 'datakit', help: 'print the line protocol that would be sent to stdout instead of sending it (also: --datakit-apiserver stdout)' },
  { flag: '--hostname', arg: '<name>', group: 'tags', help: 'value of the host tag (default: $ENV_HOSTNAME, else the OS host name)' },
  { flag: '--service', arg: '<name>', group: 'tags', help: 'value of the service tag (default: ebpf)' },
  { flag: '--tags', arg: '<k=v;...>', group: 'tags', help: 'extra tags, pairs separated by ";" or ","; repeatable' },
  { flag: '--enabled', arg: '<plugins>', group: 'collect', help: 'plugins to run, comma-separated: ebpf-net, ebpf-bash; repeatable (default: ebpf-net)' },
  { flag: '--interval', arg: '<duration>', group: 'collect', help: 'flush interval, a Go duration such as 10s or 1m30s, at least 1s (default: 60s)' },
  { flag: '--ephemeral-port', arg: '<port>', group: 'collect', aliases: ['--ephemeral_port'], help: 'client ports >= this collapse to "*"; 0 collapses all (default: 0; alias --ephemeral_port)' },
  { flag: '--ipv6-disabled', arg: '[bool]', group: 'collect', help: 'ignore IPv6 traffic (default: false)' },
  { flag: '--dns-ports', arg: '<ports>', group: 'collect', help: 'dnsflow: resolver ports to watch, comma-separated, at most 8; "off" turns dnsflow off (default: 53)' },
  { flag: '--dns-timeout', arg: '<duration>', group: 'collect', help: 'dnsflow: a query unanswered this long is reported with rcode -1, 100ms to 5m (default: 6s)' },
  { flag: '--include-loopback', arg: '[bool]', group: 'collect', help: 'also report loopback-to-loopback flows, which upstream drops (default: false)' },
  { flag: '--bash-path', arg: '<paths>', group: 'collect', help: 'ebpf-bash: bash binaries to audit, comma-separated; repeatable (default: /bin/bash and /usr/bin/bash)' },
  { flag: '--bash-redact', arg: '<presets>', group: 'collect', help: 'ebpf-bash: mask secrets in commands before they leave the collector; presets password, authorization, aws, url, or all; none clears (default: none)' },
  { flag: '--bash-redact-regex', arg: '<regex>', group: 'collect', help: 'ebpf-bash: also mask what this pattern matches (only its capture groups, if it has any); /re/i for flags; repeatable' },
  { flag: '--log', arg: '<path>', group: 'logging', help: `log file (reopened on SIGHUP), or "stdout" for the journal (default: ${DEFAULTS.log})` },
  { flag: '--log-level', arg: '<level>', group: 'logging', help: 'trace, debug, info, warn, error or fatal (default: info)' },
  { flag: '--pidfile', arg: '<path>', group: 'process', help: 'write our pid to this file; removed (or emptied) at exit' },
  { flag: '--user', arg: '<name>', group: 'process', help: 'user the daemon switches to once its privileges are set up; only the eBPF loader children keep the BPF capabilities; root or "" keeps root (default: datakit-ebpf if it exists, else nobody)' },
  { flag: '--config', arg: '<file>', group: 'process', help: 'read settings from a DataKit ebpf.conf; command-line flags win over it' },
  { flag: '--state-dir', arg: '<dir>', group: 'process', help: `spool of undelivered points and counter read-marks (default: ${DEFAULTS.stateDir})` },
  { flag: '--spool-max-bytes', arg: '<size>', group: 'datakit', help: 'bound of the on-disk spool, e.g. 256M; when full the oldest points are dropped and counted (default: 256M)' },
  { flag: '--pin-root', arg: '<dir>', group: 'process', help: `bpffs directory where counters are pinned so they survive restarts; "off" to not pin (default: ${DEFAULTS.pinRoot})` },
  { flag: '--upload-timeout', arg: '<duration>', group: 'datakit', help: 'bound for connecting to DataKit and for each answer; a timed-out batch is retried (default: 10s)' },
  { flag: '--gzip', arg: '[bool]', group: 'datakit', help: 'gzip request bodies to DataKit (default: true; --gzip=false to turn off)' },
  { flag: '--pprof-host', arg: '<host>', group: 'status', help: 'serve /metrics and /status on this address (DataKit passes it; default: off unless --pprof-port)' },
  { flag: '--pprof-port', arg: '<port>', group: 'status', help: 'serve /metrics and /status on this port (DataKit passes 6061)' },
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
  const near = flag.startsWith('--') ? closest(flag, FLAGS.flatMap((f) => [f.flag, ...(f.aliases ?? [])])) : undefined;
  return `unknown flag ${flag} ignored (${near ? `did you mean ${near}? ` : ''}a newer DataKit may pass flags this collector does not know)`;
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
    .usage('[run] [options]  |  check-config <ebpf.conf>')
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
      `\n${GROUP_HEADINGS.compat}\n${wrap(COMPAT_FLAGS.join(', '), HELP_WIDTH - 2, '  ')}\n` +
        '\nCommands:\n' +
        '  run [options]              collect and send (the default; DataKit passes "run")\n' +
        '  check-config <ebpf.conf>   report every problem in a config file; exit 0 when clean, 2 otherwise\n' +
        '  console [options]          the local network console: write API, store and web page (console --help)\n' +
        '\nPrecedence: command-line flag > --config file (keys, then its args) > ENV_HOSTNAME > default.\n' +
        'Unknown flags are ignored with a warning so newer DataKit versions cannot stop the collector.\n' +
        'Signals: SIGTERM/SIGINT stop after a last flush, SIGHUP reopens the log file.\n',
    );

  const groupOrder = Object.keys(GROUP_HEADINGS);
  const ordered = [...FLAGS].sort((x, y) => groupOrder.indexOf(x.group) - groupOrder.indexOf(y.group));
  for (const spec of ordered) {
    for (const spelling of [spec.flag, ...(spec.aliases ?? [])]) {
      const opt = new Option(`${spelling} ${spec.arg}`, spec.help).helpGroup(GROUP_HEADINGS[spec.group]);
      // Compatibility flags are listed in one paragraph after the real ones.
      if (spelling !== spec.flag || spec.group === 'compat') opt.hideHelp();
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

function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(indent + line);
  return lines.join('\n');
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
  user?: string;
  dryRun?: boolean;
  tags: Record<string, string>;
  enabled?: Plugin[];
  ephemeralPort?: number;
  ipv6Disabled?: boolean;
  includeLoopback?: boolean;
  dnsPorts?: number[];
  dnsTimeoutMs?: number;
  bashPaths?: string[];
  bashRedact?: RedactPreset[];
  bashRedactRegex?: string[];
  l7netEnabled?: string[];
  pprofHost?: string;
  pprofPort?: number;
  config?: string;
  stateDir?: string;
  spoolMaxBytes?: number;
  gzip?: boolean;
  pinRoot?: string;
  uploadTimeoutMs?: number;
}

type FlagsResult = { exit: { code: number; output: string } } | { layer: Layer; warnings: string[] };

/**
 * @param errors when given, a bad flag value is collected here instead of
 *   thrown, and parsing goes on (check-config reports them all).
 */
function parseFlags(argv: string[], source: Source, errors?: { occurrence: Occurrence; error: CollectorError }[]): FlagsResult {
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
  for (const o of seen) {
    try {
      applyFlag(layer, o, warnings);
    } catch (err) {
      if (!errors || !isCollectorError(err)) throw err;
      errors.push({ occurrence: o, error: err });
    }
  }
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
      if (text().trim().toLowerCase() === 'stdout') layer.dryRun = true;
      else layer.apiServer = parseApiServer(text(), subject);
      return;
    case '--dry-run':
      layer.dryRun = parseBool(raw, subject);
      return;
    case '--user':
      layer.user = raw === true ? '' : raw.trim();
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
    case '--dns-ports':
      layer.dnsPorts = parseDnsPorts(text(), subject);
      return;
    case '--dns-timeout':
      layer.dnsTimeoutMs = parseDnsTimeout(text(), subject);
      return;
    case '--bash-path': {
      const paths = splitList(text());
      if (paths.length === 0) throw invalid(subject, 'expected a path to a bash binary such as /usr/bin/bash');
      layer.bashPaths = [...(layer.bashPaths ?? []), ...paths.filter((p) => !layer.bashPaths?.includes(p))];
      return;
    }
    case '--bash-redact':
      layer.bashRedact = parseRedactPresetList(splitList(text()), subject, layer.bashRedact);
      return;
    case '--bash-redact-regex':
      layer.bashRedactRegex = [...(layer.bashRedactRegex ?? []), parseRedactRegex(text(), subject)];
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
    case '--upload-timeout':
      layer.uploadTimeoutMs = parseInterval(text(), subject);
      return;
    case '--pin-root': {
      const v = text().trim();
      if (v !== 'off' && v !== '' && !v.startsWith('/sys/fs/bpf/')) throw invalid(subject, 'expected a directory under /sys/fs/bpf/ or "off"');
      layer.pinRoot = v === 'off' ? '' : v;
      return;
    }
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
    log: c.log ?? a.log ?? installedDefault(env, 'datakit-ebpf.log', DEFAULTS.log),
    logLevel: c.logLevel ?? a.logLevel ?? DEFAULTS.logLevel,
    service: c.service ?? a.service ?? DEFAULTS.service,
    tags: { ...a.tags, ...(k?.tags ?? {}), ...c.tags },
    enabled: c.enabled ?? k?.enabled ?? a.enabled ?? [...DEFAULTS.enabled],
    ephemeralPort: c.ephemeralPort ?? k?.ephemeralPort ?? a.ephemeralPort ?? DEFAULTS.ephemeralPort,
    ipv6Disabled: c.ipv6Disabled ?? k?.ipv6Disabled ?? a.ipv6Disabled ?? DEFAULTS.ipv6Disabled,
    includeLoopback: c.includeLoopback ?? a.includeLoopback ?? DEFAULTS.includeLoopback,
    dnsPorts: c.dnsPorts ?? a.dnsPorts ?? [...DEFAULTS.dnsPorts],
    dnsTimeoutMs: c.dnsTimeoutMs ?? a.dnsTimeoutMs ?? DEFAULTS.dnsTimeoutMs,
    bashPaths: c.bashPaths ?? k?.bashPaths ?? a.bashPaths ?? [],
    bashRedact: c.bashRedact ?? k?.bashRedact ?? a.bashRedact ?? [],
    bashRedactRegex: c.bashRedactRegex ?? k?.bashRedactRegex ?? a.bashRedactRegex ?? [],
    l7netEnabled: c.l7netEnabled ?? k?.l7netEnabled ?? a.l7netEnabled ?? [],
    stateDir: c.stateDir ?? a.stateDir ?? installedDefault(env, 'datakit-ebpf.state', DEFAULTS.stateDir),
    spoolMaxBytes: c.spoolMaxBytes ?? a.spoolMaxBytes ?? DEFAULTS.spoolMaxBytes,
    gzip: c.gzip ?? a.gzip ?? DEFAULTS.gzip,
    dryRun: c.dryRun ?? a.dryRun ?? false,
    pinRoot: c.pinRoot ?? a.pinRoot ?? DEFAULTS.pinRoot,
    uploadTimeoutMs: c.uploadTimeoutMs ?? a.uploadTimeoutMs ?? DEFAULTS.uploadTimeoutMs,
    warnings: [...new Set(warnings)],
  };
  const pidfile = c.pidfile ?? a.pidfile;
  if (pidfile !== undefined) config.pidfile = pidfile;
  const user = c.user ?? a.user;
  if (user !== undefined) config.user = user;
  const pprofHost = c.pprofHost ?? k?.pprofHost ?? a.pprofHost;
  if (pprofHost !== undefined && pprofHost !== '') config.pprofHost = pprofHost;
  const pprofPort = c.pprofPort ?? k?.pprofPort ?? a.pprofPort;
  if (pprofPort !== undefined) config.pprofPort = pprofPort;
  if (conf) config.configFile = conf.path;
  return { kind: 'run', config };
}

/**
 * Upstream's log and state live in DataKit's `externals/` directory. The
 * installed launcher says where that is (DATAKIT_EBPF_EXTERNALS), so a DataKit
 * installed elsewhere, or a test's temporary install, keeps its files there.
 */
function installedDefault(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const dir = env.DATAKIT_EBPF_EXTERNALS?.trim();
  return dir ? nodePath.join(dir, name) : fallback;
}

export interface FlagProblem {
  severity: 'error' | 'warning' | 'note';
  /** The flag as written, when the problem is about one. */
  flag?: string;
  /** Its value, when the value is at fault. */
  value?: string;
  message: string;
}

/**
 * Every problem in a list of flags (an ebpf.conf `args`), for check-config:
 * bad values are errors, unknown flags warnings, inert ones notes.
 */
export function checkFlags(argv: string[], where: string): FlagProblem[] {
  const errors: { occurrence: Occurrence; error: CollectorError }[] = [];
  const problems: FlagProblem[] = [];
  let warnings: string[] = [];
  try {
    const r = parseFlags(argv, { kind: 'conf', where }, errors);
    if ('layer' in r) warnings = r.warnings;
  } catch (err) {
    if (!isCollectorError(err)) throw err;
    problems.push({ severity: 'error', message: err.message });
  }
  for (const { occurrence: o, error } of errors) {
    const p: FlagProblem = { severity: 'error', flag: o.as, message: error.message };
    if (o.value !== true) p.value = o.value;
    problems.push(p);
  }
  for (const w of warnings) {
    const unknown = /^unknown flag (\S+)/.exec(w);
    if (unknown) problems.push({ severity: 'warning', flag: unknown[1] as string, message: w });
    else problems.push({ severity: 'note', ...(/^flag (--\S+)/.exec(w) ? { flag: /^flag (--\S+)/.exec(w)![1] as string } : {}), message: w });
  }
  return problems;
}

function nonBlank(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}
