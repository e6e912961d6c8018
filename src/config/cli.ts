// Turns the command line DataKit (or a person) gives us into a CollectorConfig.
// The options themselves (flags, keys, parsers, defaults) are the table in
// options.ts; this module runs the command line through it.
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
import * as nodePath from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { CollectorError, isCollectorError } from '../errors';
import { readEbpfConf } from './ebpfconf';
import { compatFlags, flagsMarkdown, helpText, inHelpOrder } from './help';
import { ALL_OPTIONS, BY_FLAG, FLAG_SPELLINGS, GROUP_HEADINGS, OPTIONS, type DefaultContext, type NamedOption, type OptionLayer } from './options';
import { closest } from './suggest';
import type { CollectorConfig } from './types';
import { dialUrl, displayUrl, flagNotImplementedWarning, quote } from './values';

export { flagNotImplementedWarning };

export type ParsedCommand = { kind: 'run'; config: CollectorConfig } | { kind: 'exit'; code: number; output: string };

function unknownFlagWarning(flag: string): string {
  const near = flag.startsWith('--') ? closest(flag, FLAG_SPELLINGS) : undefined;
  return `unknown flag ${flag} ignored (${near ? `did you mean ${near}? ` : ''}a newer DataKit may pass flags this collector does not know)`;
}

// ------------------------------------------------------- commander program

interface Occurrence {
  option: NamedOption;
  /** The spelling used, for messages. */
  as: string;
  /** The value, or true for a bare optional-value flag. */
  value: string | true;
}

const HELP_WIDTH = 100;

function buildProgram(record: (o: Occurrence) => void): { program: Command; out: () => string } {
  let out = '';
  const program = new Command('datakit-ebpf')
    .usage('[run] [options]  |  check-config <ebpf.conf>  |  cleanup')
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
      `\n${GROUP_HEADINGS.compat}\n${wrap(compatFlags().join(', '), HELP_WIDTH - 2, '  ')}\n` +
        '\nCommands:\n' +
        '  run [options]              collect and send (the default; DataKit passes "run")\n' +
        '  check-config <ebpf.conf>   report every problem in a config file; exit 0 when clean, 2 otherwise\n' +
        '  cleanup [--pin-root <dir>] remove every pinned BPF object of the collector (refused while one runs)\n' +
        '  help [--markdown]          this help; --markdown prints the README\'s flag table\n' +
        '  console [options]          the local network console: write API, store and web page (console --help)\n' +
        '\nPrecedence: command-line flag > --config file (keys, then its args) > ENV_HOSTNAME > default.\n' +
        'Unknown flags are ignored with a warning so newer DataKit versions cannot stop the collector.\n' +
        'Signals: SIGTERM/SIGINT stop after a last flush (a second one stops at once), SIGHUP reopens the log file.\n',
    );

  for (const option of inHelpOrder()) {
    const { spec } = option;
    for (const spelling of [spec.flag, ...(spec.aliases ?? [])]) {
      const opt = new Option(`${spelling} ${spec.arg}`, helpText(spec)).helpGroup(GROUP_HEADINGS[spec.group]);
      // Compatibility flags are listed in one paragraph after the real ones.
      if (spelling !== spec.flag || spec.group === 'compat') opt.hideHelp();
      program.addOption(opt);
      // Listening to the raw events keeps the order across aliases and the
      // exact text, which commander's merged option values would lose.
      program.on(`option:${opt.name()}`, (val: string | null | undefined) => {
        record({ option, as: spelling, value: val ?? true });
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
    const spec = BY_FLAG.get(name)?.spec;
    if (spec === undefined || (source.kind === 'conf' && spec.cliOnly)) {
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

type Parsed = { layer: OptionLayer; warnings: string[]; seen: Occurrence[] };
type FlagsResult = { exit: { code: number; output: string } } | Parsed;

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
  const layer: OptionLayer = {};
  for (const o of seen) {
    try {
      applyFlag(layer, o, warnings);
    } catch (err) {
      if (!errors || !isCollectorError(err)) throw err;
      errors.push({ occurrence: o, error: err });
    }
  }
  return { layer, warnings, seen };
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
    ? `${m[1]}: missing value; expected ${BY_FLAG.get(m[1] as string)?.spec.arg ?? 'a value'} after it`
    : err.message.replace(/^error:\s*/, '').split('\n')[0] ?? err.message;
  return new CollectorError('CONFIG_INVALID', msg, { cause: err });
}

function applyFlag(layer: OptionLayer, o: Occurrence, warnings: string[]): void {
  const { name, spec } = o.option;
  const values = layer as Record<string, unknown>;
  const text = o.value === true ? spec.bare : o.value;
  // Commander gives a `<x>` flag its value, so only a `[x]` flag arrives bare.
  if (text === undefined) throw new CollectorError('CONFIG_INVALID', `${o.as}: missing value`);
  const v = spec.parse(text, {
    subject: `${o.as} ${quote(o.value === true ? '' : o.value)}`,
    as: o.as,
    prev: values[name],
    warnings,
    set: (other, value) => {
      values[other] = value;
    },
  });
  if (v !== undefined) values[name] = v;
}

// ----------------------------------------------------------------- merge

/** One place values come from, highest precedence first. */
interface Layered {
  layer: OptionLayer;
  /** Values from ebpf.conf keys are named by their key in notes, the rest by their flag. */
  byKey: boolean;
}

/**
 * Every option's value: the highest source that gave one (or all of them
 * combined, for tags), else its default. Notes on values somebody gave (a
 * short interval, an inert flag) come back as warnings.
 */
function resolve(sources: readonly Layered[], ctx: Omit<DefaultContext, 'value'>): { value: (name: string) => unknown; notes: string[] } {
  const byName = new Map(ALL_OPTIONS.map((o) => [o.name, o]));
  const values = new Map<string, unknown>();
  const given = (name: string): Layered[] => sources.filter((s) => (s.layer as Record<string, unknown>)[name] !== undefined);
  const value = (name: string): unknown => {
    if (values.has(name)) return values.get(name);
    const { spec } = byName.get(name) as NamedOption;
    const vs = given(name).map((s) => (s.layer as Record<string, unknown>)[name]);
    const v = vs.length === 0 ? spec.default?.({ ...ctx, value }) : spec.combine ? vs.reduce((hi, lo) => spec.combine!(hi, lo)) : vs[0];
    values.set(name, v);
    return v;
  };
  const notes: string[] = [];
  for (const { name, spec } of ALL_OPTIONS) {
    const from = given(name)[0];
    const note = from && spec.note?.(value(name), from.byKey ? (spec.key?.name ?? spec.flag) : spec.flag);
    if (note) notes.push(note.message);
  }
  return { value, notes };
}

/**
 * @param argv the arguments after the program name (`process.argv.slice(2)`).
 * @param env where ENV_HOSTNAME is looked up.
 * @throws CollectorError CONFIG_INVALID for a bad value, CONFIG_FILE for an
 *   unreadable or malformed --config file.
 */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): ParsedCommand {
  if (argv[0] === 'help' && argv.includes('--markdown')) return { kind: 'exit', code: 0, output: flagsMarkdown() };
  const cli = parseFlags(argv, { kind: 'cli' });
  if ('exit' in cli) return { kind: 'exit', ...cli.exit };

  const warnings: string[] = [];
  let conf: ReturnType<typeof readEbpfConf> | undefined;
  let confArgs: Parsed = { layer: {}, warnings: [], seen: [] };
  if (cli.layer.configFile !== undefined) {
    conf = readEbpfConf(cli.layer.configFile);
    warnings.push(...conf.warnings);
    const where = `${conf.path}${conf.argsLine ? `:${conf.argsLine}` : ''}: args`;
    try {
      const parsed = parseFlags(conf.args, { kind: 'conf', where });
      if ('layer' in parsed) confArgs = parsed;
    } catch (err) {
      if (isCollectorError(err, 'CONFIG_INVALID')) {
        throw new CollectorError('CONFIG_INVALID', `${where}: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }
  warnings.push(...confArgs.warnings, ...cli.warnings);

  const sources: Layered[] = [
    { layer: cli.layer, byKey: false },
    { layer: conf ?? {}, byKey: true },
    { layer: confArgs.layer, byKey: false },
  ];
  const { value, notes } = resolve(sources, { env, confEnvs: conf?.envs ?? {} });
  const config: Record<string, unknown> = {};
  for (const name of Object.keys(OPTIONS)) {
    const v = value(name);
    if (v !== undefined) config[name] = v;
  }
  config.datakitConnectUrl = dialUrl(config.datakitApiServer as string);
  // What is shown of it (logs, status, check-config) never holds DataKit's token.
  config.datakitApiServer = displayUrl(config.datakitApiServer as string);
  config.ipv6Disabled = false;
  config.warnings = [...new Set([...warnings, ...notes])];
  return { kind: 'run', config: config as unknown as CollectorConfig };
}

export interface FlagProblem {
  severity: 'error' | 'warning' | 'note';
  /** The flag as written, when the problem is about one. */
  flag?: string;
  /** Its value, when the value is at fault. */
  value?: string;
  /** The option's name (options.ts), for a note on its value. */
  option?: string;
  message: string;
  suggestion?: string;
}

/**
 * Every problem in a list of flags (an ebpf.conf `args`), for check-config:
 * bad values are errors, unknown flags warnings, inert ones and notes on
 * accepted values notes.
 */
export function checkFlags(argv: string[], where: string): FlagProblem[] {
  const errors: { occurrence: Occurrence; error: CollectorError }[] = [];
  const problems: FlagProblem[] = [];
  let parsed: Parsed | undefined;
  try {
    const r = parseFlags(argv, { kind: 'conf', where }, errors);
    if ('layer' in r) parsed = r;
  } catch (err) {
    if (!isCollectorError(err)) throw err;
    problems.push({ severity: 'error', message: err.message });
  }
  for (const { occurrence: o, error } of errors) {
    const p: FlagProblem = { severity: 'error', flag: o.as, message: error.message };
    if (o.value !== true) p.value = o.value;
    problems.push(p);
  }
  for (const w of parsed?.warnings ?? []) {
    const unknown = /^unknown flag (\S+)/.exec(w);
    const flag = /^flag (--\S+)/.exec(w)?.[1];
    if (unknown) problems.push({ severity: 'warning', flag: unknown[1] as string, message: w });
    else problems.push({ severity: 'note', ...(flag ? { flag } : {}), message: w });
  }
  // A note on the value that counts: the option's last occurrence.
  for (const { name, spec } of ALL_OPTIONS) {
    const value = (parsed?.layer as Record<string, unknown> | undefined)?.[name];
    const last = parsed?.seen.filter((o) => o.option.name === name).at(-1);
    const note = value !== undefined && last ? spec.note?.(value, spec.flag) : undefined;
    if (!note || !last) continue;
    problems.push({ severity: 'note', flag: last.as, ...(last.value !== true ? { value: last.value } : {}), option: name, ...note });
  }
  return problems;
}
