// Every option of the collector, defined once: its flag and other spellings,
// its ebpf.conf key, how a value is parsed and checked, its default, where
// --help lists it, and what check-config notes or suggests about it. Derived
// from these tables: the command line (cli.ts), the ebpf.conf reader
// (ebpfconf.ts), --help and the README's flag table (help.ts), check-config
// (check.ts) and the CollectorConfig type (types.ts). Adding an option is one
// entry in OPTIONS (or ACCEPTED, for one that changes nothing).
//
// The same parse serves a flag on the command line, a flag in an ebpf.conf
// `args` and the ebpf.conf key: a value means the same wherever it is written.
// Precedence, highest first: command line, ebpf.conf key, ebpf.conf `args`,
// default (cli.ts explains why).

import * as os from 'node:os';
import * as nodePath from 'node:path';
import type { RedactPreset } from '../bash/redact';
import { addressFix, closest, intervalFix } from './suggest';
import { PLUGINS, type LogLevel, type Plugin } from './types';
import {
  DATAKIT_ONLY_PLUGINS,
  flagNotImplementedWarning,
  formatDuration,
  invalid,
  keyNotImplementedWarning,
  LOG_LEVELS,
  parseApiServer,
  parseBool,
  parseByteSize,
  parseCount,
  parseDnsPorts,
  parseDnsTimeout,
  parseDurationBetween,
  parseInterval,
  parseLogLevel,
  parseLogTarget,
  parseNonEmpty,
  parsePlugins,
  parsePort,
  parseRedactPresetList,
  parseRedactRegex,
  parseTags,
  quote,
  splitList,
} from './values';

// ------------------------------------------------------------------ shape

/** --help groups, in the order --help shows them: what people look for first comes first. */
export const GROUP_HEADINGS = {
  datakit: 'Sending to DataKit:',
  tags: 'Tags on every point:',
  collect: 'What to collect:',
  logging: 'Logging:',
  process: 'Service, files and privileges:',
  status: 'Status endpoint:',
  compat: 'Accepted for DataKit compatibility (not implemented, a warning each):',
} as const;
export type Group = keyof typeof GROUP_HEADINGS;

/** One ebpf.conf value, with type checks whose errors name file:line and key (src/config/ebpfconf.ts). */
export interface ConfValue {
  readonly key: string;
  /** The value as TOML parsed it. */
  readonly raw: unknown;
  string(expected: string): string;
  bool(): boolean;
  integer(expected: string): number;
  strings(expected: string): string[];
  /** The [inputs.ebpf.tags] table: string values, blanks dropped with a warning. */
  tags(): Record<string, string>;
  /** Accepted but without effect: logged by the daemon, notes in check-config. */
  readonly warnings: string[];
}

export interface ConfKey<T> {
  /** The key inside [[inputs.ebpf]]. */
  name: string;
  /** How the README shows it, when not `name = ...` (a table). */
  shown?: string;
  /**
   * Turns the TOML value into the option's value, undefined for "not set".
   * `parse` is the option's own parse, its errors naming file:line, key and `text`.
   */
  read(v: ConfValue, parse: (text: string) => T | undefined): T | undefined;
}

export interface ParseContext<T> {
  /** `--interval "0.5s"` or `ebpf.conf:7: key "interval" value "0.5s"`: what an error starts with. */
  subject: string;
  /** The spelling used (`--ephemeral_port`) or the key. */
  as: string;
  /** What this source (command line, `args`, key) gave so far: repeatable flags add to it. */
  prev: T | undefined;
  /** Accepted-but-ignored findings, one line each. */
  warnings: string[];
  /** Sets another option in the same source (`--datakit-apiserver stdout` means `--dry-run`). */
  set(option: string, value: unknown): void;
}

export interface DefaultContext {
  env: NodeJS.ProcessEnv;
  /** `envs` of the --config file, if one was read. */
  confEnvs: Record<string, string>;
  /** Another option's resolved value. */
  value(option: string): unknown;
}

/** Something worth knowing about a value that is accepted: a check-config note, a start-up warning. */
export interface Note {
  message: string;
  suggestion?: string;
}

export interface OptionSpec<T> {
  /** Long flag as written, e.g. `--interval`. */
  flag: string;
  /** Other spellings of the same flag, hidden from --help (DataKit's `--ephemeral_port`). */
  aliases?: readonly string[];
  /** Commander's value syntax: `<x>` required, `[x]` optional (then `bare` is what a bare flag means). */
  arg: string;
  bare?: string;
  group: Group;
  /** --help text; the default, key and aliases are added from the fields below. */
  help: string;
  /** The default as --help and the README say it. */
  defaultText?: string;
  /** Without one, the CollectorConfig field is optional. */
  default?(ctx: DefaultContext): T;
  /** Text -> value, throwing CONFIG_INVALID naming `ctx.subject`; undefined leaves the source's value as it was. */
  parse(text: string, ctx: ParseContext<T>): T | undefined;
  key?: ConfKey<T>;
  /** Sources merge instead of the highest winning (tags: per key). */
  combine?(higher: T, lower: T): T;
  /** A note on an accepted value; `name` is the flag or key it was given as. */
  note?(value: T, name: string): Note | undefined;
  /** check-config's fix for a bad value; `write(x)` spells x as the flag or key was written. */
  suggest?(value: string, write: (text: string) => string, message: string): string | undefined;
  /** Refused inside an ebpf.conf `args` (--config). */
  cliOnly?: true;
}

type WithDefault<T> = OptionSpec<T> & { default(ctx: DefaultContext): T };

function option<T>(spec: WithDefault<T>): WithDefault<T>;
function option<T>(spec: OptionSpec<T>): OptionSpec<T>;
function option<T>(spec: OptionSpec<T>): OptionSpec<T> {
  return spec;
}

// ---------------------------------------------------------------- helpers

const BOOL = { arg: '[bool]', bare: 'true', parse: (text: string, c: ParseContext<boolean>) => parseBool(text, c.subject) };

/** A key holding a string that the option's parse reads like the flag's value. */
const textKey = (name: string, expected: string) => ({
  name,
  read: <T>(v: ConfValue, parse: (text: string) => T | undefined) => parse(v.string(expected)),
});

/** A TOML integer; `unset` is DataKit's own "not set" value for the key. */
const integerKey = (name: string, expected: string, unset?: number) => ({
  name,
  read: <T>(v: ConfValue, parse: (text: string) => T | undefined) => {
    const n = v.integer(expected);
    return n === unset ? undefined : parse(String(n));
  },
});

const boolKey = (name: string): ConfKey<boolean> => ({ name, read: (v) => v.bool() });

/** A repeatable flag: this occurrence's items after the earlier ones, without duplicates. */
function addUnique<T>(prev: readonly T[] | undefined, items: readonly T[]): T[] {
  const out = [...(prev ?? [])];
  for (const item of items) if (!out.includes(item)) out.push(item);
  return out;
}

function nonBlank(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}

/**
 * Upstream's log and state live in DataKit's `externals/` directory. The
 * installed launcher says where that is (DATAKIT_EBPF_EXTERNALS), so a DataKit
 * installed elsewhere, or a test's temporary install, keeps its files there.
 */
function installedDefault(env: NodeJS.ProcessEnv, name: string): string {
  const dir = env.DATAKIT_EBPF_EXTERNALS?.trim() || '/usr/local/datakit/externals';
  return nodePath.join(dir, name);
}

/** Upstream raises a shorter interval to this; Guance bills per point. */
export const UPSTREAM_MIN_INTERVAL_MS = 60_000;
export const DEFAULT_MAX_FLOWS = 10_000;
const MAX_MAX_FLOWS = 10_000_000;
const MIN_ORPHAN_TIMEOUT_MS = 10_000;
const MAX_ORPHAN_TIMEOUT_MS = 7 * 24 * 3600_000;

// ------------------------------------------------------------------ table

/** Options that land in CollectorConfig under their name here. */
export const OPTIONS = {
  /** Base URL of the DataKit API server, normalised: `http://host:port` (or https). */
  datakitApiServer: option<string>({
    flag: '--datakit-apiserver',
    arg: '<addr>',
    group: 'datakit',
    help: 'DataKit API server: host:port, [ipv6]:port or http(s):// URL, which may carry ?token=... (sent with every write, masked in logs; e.g. a console on another host); "stdout" is --dry-run',
    defaultText: '0.0.0.0:9529, dialled as 127.0.0.1',
    default: () => parseApiServer('0.0.0.0:9529', 'default'),
    parse(text, c) {
      if (text.trim().toLowerCase() !== 'stdout') return parseApiServer(text, c.subject);
      c.set('dryRun', true);
      return undefined;
    },
    suggest: addressFix,
  }),
  /** Print line protocol to stdout instead of sending it (--dry-run, --datakit-apiserver stdout). */
  dryRun: option<boolean>({
    flag: '--dry-run',
    ...BOOL,
    group: 'datakit',
    help: 'print the line protocol that would be sent to stdout instead of sending it',
    defaultText: 'false',
    default: () => false,
  }),
  /** Bound of the on-disk spool; the oldest batches are dropped (and counted) beyond it. */
  spoolMaxBytes: option<number>({
    flag: '--spool-max-bytes',
    arg: '<size>',
    group: 'datakit',
    help: 'bound of the on-disk spool, e.g. 256M; when full the oldest points are dropped and counted',
    defaultText: '256M',
    default: () => 256 * 1024 * 1024,
    parse: (text, c) => parseByteSize(text, c.subject),
  }),
  /** Bound for connecting to DataKit and for each of its answers. */
  uploadTimeoutMs: option<number>({
    flag: '--upload-timeout',
    arg: '<duration>',
    group: 'datakit',
    help: 'bound for connecting to DataKit and for each answer; a timed-out batch is retried',
    defaultText: '10s',
    default: () => 10_000,
    parse: (text, c) => parseInterval(text, c.subject),
  }),
  /** gzip request bodies (DataKit accepts Content-Encoding: gzip). */
  gzip: option<boolean>({
    flag: '--gzip',
    ...BOOL,
    group: 'datakit',
    help: 'gzip request bodies to DataKit; --gzip=false turns it off',
    defaultText: 'true',
    default: () => true,
  }),

  /** `host` tag value: --hostname > ENV_HOSTNAME (the conf's envs, then ours) > os.hostname(). */
  hostname: option<string>({
    flag: '--hostname',
    arg: '<name>',
    group: 'tags',
    help: 'value of the host tag',
    defaultText: '$ENV_HOSTNAME, else the OS host name',
    default: (c) => nonBlank(c.confEnvs.ENV_HOSTNAME) ?? nonBlank(c.env.ENV_HOSTNAME) ?? os.hostname(),
    // Blank means "not given": the next source decides, as for ENV_HOSTNAME.
    parse: (text) => nonBlank(text),
  }),
  /** `service` tag value. */
  service: option<string>({
    flag: '--service',
    arg: '<name>',
    group: 'tags',
    help: 'value of the service tag',
    defaultText: 'ebpf',
    default: () => 'ebpf',
    parse: (text, c) => parseNonEmpty(text, c.subject, 'service name'),
  }),
  /** Extra tags added to every point: conf `args` --tags, then [inputs.ebpf.tags], then command-line --tags, the later winning per key. */
  tags: option<Record<string, string>>({
    flag: '--tags',
    arg: '<k=v;...>',
    group: 'tags',
    help: 'extra tags, pairs separated by ";" or ","; repeatable',
    default: () => ({}),
    parse: (text, c) => ({ ...c.prev, ...parseTags(text, c.subject, c.warnings) }),
    key: { name: 'tags', shown: '[inputs.ebpf.tags]', read: (v) => v.tags() },
    combine: (higher, lower) => ({ ...lower, ...higher }),
  }),

  /** Plugins to run, in the order given. */
  enabled: option<Plugin[]>({
    flag: '--enabled',
    arg: '<plugins>',
    group: 'collect',
    help: `plugins to run, comma-separated: ${PLUGINS.join(', ')}; repeatable`,
    defaultText: 'ebpf-net',
    default: () => ['ebpf-net'],
    parse(text, c) {
      const items = splitList(text);
      return items.length === 0 ? undefined : addUnique(c.prev, parsePlugins(items, c.subject, c.warnings));
    },
    key: {
      name: 'enabled_plugins',
      // Empty: DataKit falls back to ebpf-net.
      read(v, parse) {
        const items = v.strings('an array of strings such as ["ebpf-net"]');
        return items.length === 0 ? undefined : parse(items.join(','));
      },
    },
    suggest(value, _write, message) {
      const bad = /unknown plugin ("(?:[^"\\]|\\.)*")/.exec(message);
      const word = bad ? (JSON.parse(bad[1] as string) as string) : value;
      const near = closest(word.trim(), [...PLUGINS, ...DATAKIT_ONLY_PLUGINS]);
      return near ? `did you mean ${quote(near)}?` : `use one of ${PLUGINS.map((x) => quote(x)).join(', ')}`;
    },
  }),
  /** Flush interval in milliseconds (>= 1000); below 60 s a start-up warning says what it costs. */
  intervalMs: option<number>({
    flag: '--interval',
    arg: '<duration>',
    group: 'collect',
    help: 'flush interval, a Go duration such as 10s or 1m30s, at least 1s; below 60s (upstream raises it to 60s) more points are sent, with a warning',
    defaultText: '60s',
    default: () => 60_000,
    parse: (text, c) => parseInterval(text, c.subject),
    key: textKey('interval', 'a duration string such as "60s"'),
    note(ms, name) {
      if (ms >= UPSTREAM_MIN_INTERVAL_MS) return undefined;
      const factor = Math.round((UPSTREAM_MIN_INTERVAL_MS / ms) * 10) / 10;
      return {
        message: `${name} ${formatDuration(ms)} sends ${factor}x the points upstream's 60 s floor would; Guance bills per point`,
        suggestion: `${name.startsWith('--') ? `${name} 60s` : `${name} = "60s"`} sends what upstream sends`,
      };
    },
    suggest: intervalFix,
  }),
  /** Client ports >= this collapse to `*` (0 collapses every client port, as upstream). */
  ephemeralPort: option<number>({
    flag: '--ephemeral-port',
    aliases: ['--ephemeral_port'],
    arg: '<port>',
    group: 'collect',
    help: 'client ports >= this collapse to "*"; 0 collapses all',
    defaultText: '0',
    default: () => 0,
    parse: (text, c) => parsePort(text, c.subject),
    // -1 is DataKit's own "not set" default for this key.
    key: integerKey('ephemeral_port', 'an integer port from 0 to 65535', -1),
    suggest: () => 'use a port from 0 to 65535, or remove the key',
  }),
  /** Flow keys per interval and measurement before the smallest fold into `*` points; 0 = no cap. */
  maxFlows: option<number>({
    flag: '--max-flows',
    arg: '<count>',
    group: 'collect',
    help: 'flow keys per interval and measurement; beyond it the smallest flows fold into one point per direction, transport and family, with addresses, ports and process as "*"; 0: no cap',
    defaultText: String(DEFAULT_MAX_FLOWS),
    default: () => DEFAULT_MAX_FLOWS,
    parse: (text, c) => parseCount(text, c.subject, MAX_MAX_FLOWS, `an integer from 0 (no cap) to ${MAX_MAX_FLOWS} such as ${DEFAULT_MAX_FLOWS}`),
    key: integerKey('max_flows', `an integer from 0 to ${MAX_MAX_FLOWS}`),
    note: (n, name) =>
      n === 0
        ? { message: `${name} 0 puts no cap on flow keys: a port scan or many UDP peers become as many points; Guance bills per point`, suggestion: `remove it for the default ${DEFAULT_MAX_FLOWS}` }
        : undefined,
    suggest: () => `write a count such as ${DEFAULT_MAX_FLOWS}, or 0 for no cap`,
  }),
  /** Per-connection state not seen for this long is dropped (its close was missed). */
  orphanTimeoutMs: option<number>({
    flag: '--orphan-timeout',
    arg: '<duration>',
    group: 'collect',
    help: `when no collector has read the kernel side for this long (it was SIGKILLed for good), its programs stop working until one starts again; ${formatDuration(MIN_ORPHAN_TIMEOUT_MS)} to ${formatDuration(MAX_ORPHAN_TIMEOUT_MS)}`,
    defaultText: 'the larger of 10m and 10 intervals',
    default: (c) => Math.max(10 * 60_000, 10 * (c.value('intervalMs') as number)),
    parse: (text, c) => parseDurationBetween(text, c.subject, MIN_ORPHAN_TIMEOUT_MS, MAX_ORPHAN_TIMEOUT_MS, '10m'),
    key: textKey('orphan_timeout', 'a duration string such as "10m"'),
    suggest: (_value, write) => `write a Go duration from 10s to 168h: ${write('10m')}`,
  }),
  /** dnsflow: resolver ports (at most 8); empty = dnsflow off. */
  dnsPorts: option<number[]>({
    flag: '--dns-ports',
    arg: '<ports>',
    group: 'collect',
    help: 'dnsflow: resolver ports to watch, comma-separated, at most 8; "off" turns dnsflow off',
    defaultText: '53',
    default: () => [53],
    parse: (text, c) => parseDnsPorts(text, c.subject),
  }),
  /** dnsflow: a query unanswered this long counts as a timeout (rcode -1). */
  dnsTimeoutMs: option<number>({
    flag: '--dns-timeout',
    arg: '<duration>',
    group: 'collect',
    help: 'dnsflow: a query unanswered this long is reported with rcode -1, 100ms to 5m',
    defaultText: '6s',
    default: () => 6000,
    parse: (text, c) => parseDnsTimeout(text, c.subject),
  }),
  /** Emit loopback-to-loopback flows (upstream drops them). */
  includeLoopback: option<boolean>({
    flag: '--include-loopback',
    ...BOOL,
    group: 'collect',
    help: 'also report loopback-to-loopback flows, which upstream drops',
    defaultText: 'false',
    default: () => false,
  }),
  /** ebpf-bash: bash binaries to probe; empty = /bin/bash, /usr/bin/bash and the bash of each container, found as it runs. */
  bashPaths: option<string[]>({
    flag: '--bash-path',
    arg: '<paths>',
    group: 'collect',
    help: 'ebpf-bash: audit exactly these bash binaries, comma-separated (containers\' shells are then not searched for); repeatable',
    defaultText: '/bin/bash, /usr/bin/bash and each container\'s bash',
    default: () => [],
    parse(text, c) {
      const paths = splitList(text);
      if (paths.length === 0) throw invalid(c.subject, 'expected a path to a bash binary such as /usr/bin/bash');
      return addUnique(c.prev, paths);
    },
    key: {
      name: 'bash_path',
      read(v) {
        // One path or a list: a single string is what people write first.
        const items = typeof v.raw === 'string' ? [v.raw] : v.strings('a path or an array of paths such as ["/usr/bin/bash"]');
        const paths = items.map((p) => p.trim()).filter((p) => p !== '');
        return paths.length > 0 ? paths : undefined;
      },
    },
  }),
  /** ebpf-bash: redaction presets (src/bash/redact.ts); empty = no preset. */
  bashRedact: option<RedactPreset[]>({
    flag: '--bash-redact',
    arg: '<presets>',
    group: 'collect',
    help: 'ebpf-bash: mask secrets in commands before they leave the collector; presets password, authorization, aws, url, or all; none clears',
    defaultText: 'none',
    default: () => [],
    parse: (text, c) => parseRedactPresetList(splitList(text), c.subject, c.prev),
    key: { name: 'bash_redact', read: (v, parse) => parse(v.strings('an array of preset names such as ["password", "aws"]').join(',')) },
  }),
  /** ebpf-bash: the user's own redaction patterns (`re` or `/re/flags`), already checked to compile. */
  bashRedactRegex: option<string[]>({
    flag: '--bash-redact-regex',
    arg: '<regex>',
    group: 'collect',
    help: 'ebpf-bash: also mask what this pattern matches (only its capture groups, if it has any); /re/i for flags; repeatable',
    default: () => [],
    // One pattern per flag: a pattern may contain commas.
    parse: (text, c) => [...(c.prev ?? []), parseRedactRegex(text, c.subject)],
    key: {
      name: 'bash_redact_regex',
      read: (v, parse) => v.strings("an array of patterns such as ['token=(\\S+)']").flatMap((re) => parse(re) ?? []),
    },
  }),

  /** Log destination: a file path or the literal 'stdout'. */
  log: option<string>({
    flag: '--log',
    arg: '<path>',
    group: 'logging',
    help: 'log file (reopened on SIGHUP), or "stdout" for the journal',
    defaultText: installedDefault({}, 'datakit-ebpf.log'),
    default: (c) => installedDefault(c.env, 'datakit-ebpf.log'),
    parse: (text, c) => parseLogTarget(text, c.subject),
  }),
  /** Lowest level logged. */
  logLevel: option<LogLevel>({
    flag: '--log-level',
    arg: '<level>',
    group: 'logging',
    help: `${LOG_LEVELS.slice(0, -1).join(', ')} or ${LOG_LEVELS.at(-1)}`,
    defaultText: 'info',
    default: () => 'info',
    parse: (text, c) => parseLogLevel(text, c.subject),
    suggest(value) {
      const near = closest(value.trim(), LOG_LEVELS);
      return near ? `did you mean ${near}?` : `use one of ${LOG_LEVELS.join(', ')}`;
    },
  }),

  /** Our pid goes here; removed (or emptied) at exit. */
  pidfile: option<string>({
    flag: '--pidfile',
    arg: '<path>',
    group: 'process',
    help: 'write our pid to this file; removed (or emptied) at exit',
    parse: (text, c) => parseNonEmpty(text, c.subject, 'file path'),
  }),
  /**
   * --user as given: the daemon switches to it before forking the loaders
   * (src/daemon/privileges.ts). Undefined: datakit-ebpf if it exists, else
   * nobody; '' or 'root': stay root.
   */
  user: option<string>({
    flag: '--user',
    arg: '<name>',
    group: 'process',
    help: 'user the daemon switches to once its privileges are set up; only the eBPF loaders keep the BPF capabilities; root or "" keeps root',
    defaultText: 'datakit-ebpf if it exists, else nobody',
    parse: (text) => text.trim(),
  }),
  /** Path of the ebpf.conf that was read, if any. */
  configFile: option<string>({
    flag: '--config',
    arg: '<file>',
    group: 'process',
    help: 'read settings from a DataKit ebpf.conf; command-line flags win over it',
    parse: (text, c) => parseNonEmpty(text, c.subject, 'file path'),
    cliOnly: true,
  }),
  /** Spool of undelivered batches and the log of which netflow collect is durable. */
  stateDir: option<string>({
    flag: '--state-dir',
    arg: '<dir>',
    group: 'process',
    help: 'spool of undelivered points and the record of which collect reached it',
    defaultText: installedDefault({}, 'datakit-ebpf.state'),
    default: (c) => installedDefault(c.env, 'datakit-ebpf.state'),
    parse: (text, c) => parseNonEmpty(text, c.subject, 'directory'),
  }),
  /** bpffs directory for pinned maps and links; '' = do not pin. */
  pinRoot: option<string>({
    flag: '--pin-root',
    arg: '<dir>',
    group: 'process',
    help: 'bpffs directory where counters are pinned so they survive restarts; "off" to not pin',
    defaultText: '/sys/fs/bpf/datakit-ebpf',
    default: () => '/sys/fs/bpf/datakit-ebpf',
    parse(text, c) {
      const v = text.trim();
      if (v !== 'off' && v !== '' && !v.startsWith('/sys/fs/bpf/')) throw invalid(c.subject, 'expected a directory under /sys/fs/bpf/ or "off"');
      return v === 'off' ? '' : v;
    },
  }),

  /** Status endpoint (/metrics, /status) address; 127.0.0.1 when only the port is given. */
  pprofHost: option<string>({
    flag: '--pprof-host',
    arg: '<host>',
    group: 'status',
    help: 'serve /metrics and /status on this address; DataKit passes it',
    defaultText: 'off unless --pprof-port',
    parse: (text, c) => parseNonEmpty(text, c.subject, 'host'),
    key: {
      name: 'pprof_host',
      read: (v) => v.string('a string') || undefined,
    },
  }),
  /** Status endpoint port; undefined = no status endpoint. */
  pprofPort: option<number>({
    flag: '--pprof-port',
    arg: '<port>',
    group: 'status',
    help: 'serve /metrics and /status on this port; DataKit passes 6061',
    parse(text, c) {
      // DataKit always passes it; a bad value costs the status endpoint, never collection.
      try {
        return parsePort(text, c.subject);
      } catch (err) {
        c.warnings.push(`${(err as Error).message}; the /metrics endpoint is off`);
        return undefined;
      }
    },
    key: {
      name: 'pprof_port',
      read(v) {
        // DataKit declares this key as a string; a bare integer is as clear.
        const s = typeof v.raw === 'number' ? String(v.raw) : v.string('a port string such as "6061"');
        if (s === '') return undefined;
        try {
          return parsePort(s, v.key);
        } catch {
          v.warnings.push(`${v.key} = ${JSON.stringify(s)} is not a port; the /metrics endpoint is off`);
          return undefined;
        }
      },
    },
  }),

  /** DataKit's L7 list, kept for the day httpflow is implemented. */
  l7netEnabled: option<string[]>({
    flag: '--l7net-enabled',
    arg: '[value]',
    bare: '',
    group: 'compat',
    help: '',
    default: () => [],
    parse(text, c) {
      c.warnings.push(flagNotImplementedWarning(c.as));
      const items = splitList(text);
      return items.length === 0 ? undefined : [...(c.prev ?? []), ...items];
    },
    key: {
      name: 'l7net_enabled',
      read(v) {
        const items = v.strings('an array of strings such as ["httpflow"]');
        if (items.length > 0) v.warnings.push(keyNotImplementedWarning(v.key));
        return items;
      },
    },
  }),
};

// Every flag DataKit has been seen to pass that we do not implement. All take
// an optional value: DataKit passes some bare (`--trace-allprocess`), some
// with a value (`--res-net 10Mi`), and versions have differed.
const COMPAT_FLAGS = [
  '--l7net-disabled', '--netlog-metric', '--netlog-log', '--netlog-blacklist', '--trace-server', '--trace-allprocess',
  '--trace-name-list', '--trace-name-blacklist', '--trace-name-whitelist', '--trace-env-list', '--trace-env-blacklist',
  '--trace-env-whitelist', '--trace-port-blacklist', '--trace-port-whitelist', '--conv-to-ddtrace', '--res-net', '--res-cpu',
  '--res-mem', '--res-bandwidth', '--res-pid', '--res-net-host', '--sampling-rate', '--sampling-rate-pts-per-min',
  '--sampling-rate-ptsperminute', '--workload-labels', '--workload-label-prefix', '--apm-trace', '--k8s-info', '--ebpf-trace',
  '--bpf-net-l4log', '--bpf-net-l7log',
];

/**
 * Options that are accepted, checked and reported but change nothing: a
 * DataKit config must keep working, and a user should learn that the option
 * does nothing here rather than find out from the data.
 */
export const ACCEPTED: Record<string, OptionSpec<unknown>> = {
  // Upstream only skips its IPv6 offset guessing with it and still reports
  // IPv6 flows; dropping IPv6 here would silently lose them.
  ipv6Disabled: option<boolean>({
    flag: '--ipv6-disabled',
    ...BOOL,
    group: 'collect',
    help: 'accepted as upstream has it, no effect: IPv6 flows are still reported',
    defaultText: 'false',
    key: boolKey('ipv6_disabled'),
    note: (disabled, name) =>
      disabled
        ? { message: `${name} has no effect: IPv6 flows are still reported, as upstream does (it only skipped IPv6 offset guessing)`, suggestion: `remove ${name}` }
        : undefined,
  }),
  ...Object.fromEntries(
    COMPAT_FLAGS.map((flag) => [
      flag,
      option<never>({
        flag,
        arg: '[value]',
        bare: '',
        group: 'compat',
        help: '',
        parse(_text, c) {
          c.warnings.push(flagNotImplementedWarning(c.as));
          return undefined;
        },
      }),
    ]),
  ),
};

// Keys DataKit's ebpf input understands and turns into flags or environment
// for upstream; accepted so a DataKit-valid file stays valid (a note each).
export const DATAKIT_ONLY_KEYS: ReadonlySet<string> = new Set([
  'kubernetes_url', 'bearer_token', 'bearer_token_string', 'workload_labels', 'workload_label_prefix', 'netlog_blacklist',
  'netlog_metric_only', 'netlog_metric', 'netlog_log', 'l7net_disabled', 'trace_server', 'conv_to_ddtrace', 'trace_all_process',
  'trace_env_list', 'trace_env_blacklist', 'trace_name_list', 'trace_name_blacklist', 'cpu_limit', 'mem_limit', 'net_limit',
  'sampling_rate', 'sampling_rate_pts_per_min',
]);

// ---------------------------------------------------------------- lookups

export interface NamedOption {
  /** The CollectorConfig field (OPTIONS) or the ACCEPTED name. */
  name: string;
  spec: OptionSpec<unknown>;
}

/** Every option, OPTIONS first, each in table order. */
export const ALL_OPTIONS: readonly NamedOption[] = [...Object.entries(OPTIONS), ...Object.entries(ACCEPTED)].map(([name, spec]) => ({
  name,
  spec: spec as OptionSpec<unknown>,
}));

/** By every spelling of the flag. */
export const BY_FLAG: ReadonlyMap<string, NamedOption> = new Map(ALL_OPTIONS.flatMap((o) => [o.spec.flag, ...(o.spec.aliases ?? [])].map((f) => [f, o] as const)));

/** By ebpf.conf key. */
export const BY_KEY: ReadonlyMap<string, NamedOption> = new Map(ALL_OPTIONS.flatMap((o) => (o.spec.key ? [[o.spec.key.name, o] as const] : [])));

/** Every flag spelling, for "did you mean". */
export const FLAG_SPELLINGS: readonly string[] = [...BY_FLAG.keys()];

// ------------------------------------------------------------ the type

type Options = typeof OPTIONS;
type ValueOf<O> = O extends { parse(...args: never[]): infer R } ? Exclude<R, undefined> : never;
type Values = { [K in keyof Options]: ValueOf<Options[K]> };
type Defaulted = { [K in keyof Options]: Options[K] extends { default(ctx: DefaultContext): unknown } ? K : never }[keyof Options];

/** What OPTIONS put into CollectorConfig: a field per entry, optional when it has no default. */
export type OptionValues = Pick<Values, Defaulted> & Partial<Omit<Values, Defaulted>>;

/** One source's values (command line, ebpf.conf keys, its `args`), by option name; absent = not given. */
export type OptionLayer = Partial<Values> & { ipv6Disabled?: boolean };
