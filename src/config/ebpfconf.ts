// Reads DataKit's `conf.d/host/ebpf.conf`: the same file DataKit uses to
// launch us, so `--config` can point at it and a hand-run collector behaves
// like the one DataKit starts. Only reading and checking happens here: the
// keys of the options are in the option table (options.ts), and how the
// values rank against flags is decided in cli.ts.

import * as fs from 'node:fs';
import * as TOML from '@iarna/toml';
import { CollectorError, isCollectorError } from '../errors';
import { BY_KEY, DATAKIT_ONLY_KEYS, type ConfValue, type OptionLayer } from './options';
import { closest } from './suggest';
import { invalid, keyNotImplementedWarning, quote } from './values';

/** The wrapper DataKit reads, plus every option key's value by option name (OptionLayer). */
export type EbpfConfFile = OptionLayer & {
  /** The path as given, used as the prefix of every message about this file. */
  path: string;
  daemon?: boolean;
  name?: string;
  cmd?: string;
  /** Extra command-line flags, ranked below the real command line. */
  args: string[];
  /** 1-based line of `args`, so errors inside the flags can point at it. */
  argsLine?: number;
  /** `envs` entries split at the first `=`. */
  envs: Record<string, string>;
  tags: Record<string, string>;
  warnings: string[];
};

export const SECTION = 'inputs.ebpf';
const TAGS_SECTION = 'inputs.ebpf.tags';

// Keys of DataKit's external-input wrapper that only DataKit itself uses.
const DATAKIT_WRAPPER_KEYS = new Set(['election']);

/**
 * One thing wrong with an ebpf.conf, located. `check-config` prints them all;
 * the daemon stops at the first error and logs the warnings and notes.
 */
export interface ConfProblem {
  /** error: the daemon refuses the file; warning: it ignores something the user meant (a typo); note: accepted but inert. */
  severity: 'error' | 'warning' | 'note';
  /** 1-based; 0 when there is no better place than the file itself. */
  line: number;
  column: number;
  /** The key (or tag) at fault. */
  key?: string;
  /** The table of `key` when it is not [[inputs.ebpf]] itself (tags). */
  table?: string;
  /** The flag inside `args` at fault. */
  flag?: string;
  /** The offending value, as parsed. */
  value?: unknown;
  /** What is wrong, without position, expectation or fix. */
  message: string;
  /** What would have been right. */
  expected?: string;
  /** A likely fix (src/config/check.ts adds most of them). */
  suggestion?: string;
  /** For errors: what readEbpfConf throws, the daemon's one-line message. */
  error?: CollectorError;
}

export interface EbpfConfCheck {
  path: string;
  /** Positions in the file's text, for callers that locate more (check-config's `args`). */
  lines?: KeyLines;
  /** Undefined when the file cannot be read or parsed, or has no [[inputs.ebpf]]. */
  conf?: EbpfConfFile;
  problems: ConfProblem[];
}

// Keys of the external-input wrapper read here rather than by an option.
const WRAPPER_KEYS = ['daemon', 'name', 'cmd', 'args', 'envs'];

/** Keys this collector reads, for "did you mean": the wrapper's and the options'. */
export const KNOWN_KEYS: readonly string[] = [...WRAPPER_KEYS, ...BY_KEY.keys()];

/** Reads and checks the file, stopping at the first error (CONFIG_FILE or CONFIG_INVALID). */
export function readEbpfConf(path: string): EbpfConfFile {
  const r = checkEbpfConf(path);
  const first = r.problems.find((p) => p.severity === 'error');
  if (first?.error) throw first.error;
  return r.conf as EbpfConfFile;
}

/** Reads and checks the file, collecting every problem instead of stopping at the first. */
export function checkEbpfConf(path: string): EbpfConfCheck {
  const problems: ConfProblem[] = [];
  try {
    const lines: { value?: KeyLines } = {};
    const conf = parseEbpfConf(path, problems, lines);
    return { path, conf, problems, ...(lines.value ? { lines: lines.value } : {}) };
  } catch (err) {
    if (!isCollectorError(err)) throw err;
    problems.push(fileProblem(path, err));
    return { path, problems };
  }
}

/** A problem with the whole file (unreadable, bad TOML, no table): the message carries `path[:line[:col]]: `. */
function fileProblem(path: string, err: CollectorError): ConfProblem {
  const rest = err.message.startsWith(`${path}:`) ? err.message.slice(path.length + 1) : err.message;
  const m = /^(\d+)(?::(\d+))?: ([\s\S]*)$/.exec(rest);
  const message = m ? (m[3] as string) : rest.replace(/^\s+/, '');
  const [what, expected] = splitExpected(message);
  const p: ConfProblem = { severity: 'error', line: m ? Number(m[1]) : 0, column: m?.[2] ? Number(m[2]) : m ? 1 : 0, message: what, error: err };
  if (expected) p.expected = expected;
  const suggestion = (err as { suggestion?: string }).suggestion;
  if (suggestion) p.suggestion = suggestion;
  return p;
}

/** "x; expected y" or "expected y" -> [x, y]. */
function splitExpected(text: string): [string, string | undefined] {
  if (text.startsWith('expected ')) return ['', text.slice('expected '.length)];
  const i = text.lastIndexOf('; expected ');
  return i < 0 ? [text, undefined] : [text.slice(0, i), text.slice(i + '; expected '.length)];
}

/** Runs one key's checks; a CollectorError becomes a located problem and the next key is checked. */
function collect(problems: ConfProblem[], reader: KeyReader, key: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (!isCollectorError(err)) throw err;
    problems.push(reader.problemFrom(key, err));
  }
}

function parseEbpfConf(path: string, problems: ConfProblem[], out: { value?: KeyLines } = {}): EbpfConfFile {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    throw new CollectorError('CONFIG_FILE', `cannot read config file ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);

  let doc: TOML.JsonMap;
  try {
    doc = TOML.parse(text);
  } catch (err) {
    throw tomlSyntaxError(path, err);
  }

  const lines = new KeyLines(text);
  out.value = lines;
  const table = pickEbpfTable(doc, path, lines);
  const conf: EbpfConfFile = { path, args: [], envs: {}, tags: {}, warnings: [] };
  const reader = new KeyReader(path, lines, table, problems);

  for (const key of Object.keys(doc)) {
    if (key === 'inputs') continue;
    conf.warnings.push(`${path}: unknown top-level key or table ${quote(key)}; ignored`);
    const at = lines.locate('', key) ?? { line: lines.header(key) ?? 0, keyCol: 1 };
    problems.push({
      severity: 'warning',
      line: at.line,
      column: at.line ? at.keyCol : 0,
      key,
      message: `unknown top-level key or table ${quote(key)} is ignored`,
      expected: 'every setting inside [[inputs.ebpf]]',
      suggestion: KNOWN_KEYS.includes(key) ? `move ${key} below the [[inputs.ebpf]] line` : 'remove it',
    });
  }
  const inputs = doc.inputs as TOML.JsonMap;
  for (const key of Object.keys(inputs)) {
    if (key === 'ebpf') continue;
    conf.warnings.push(`${path}: table [inputs.${key}] is not for this collector; ignored`);
    const line = lines.header(`inputs.${key}`) ?? 0;
    problems.push({ severity: 'note', line, column: line ? 1 : 0, message: `table [inputs.${key}] is not for this collector and is ignored` });
  }

  for (const key of Object.keys(table)) collect(problems, reader, key, () => {
    switch (key) {
      case 'daemon':
        conf.daemon = reader.bool(key);
        return;
      case 'name':
        conf.name = reader.string(key, 'a string');
        return;
      case 'cmd':
        conf.cmd = reader.string(key, 'a string with the collector path');
        return;
      case 'args':
        conf.args = reader.strings(key, 'an array of strings such as ["--datakit-apiserver", "0.0.0.0:9529"]');
        conf.argsLine = lines.find(SECTION, key);
        return;
      case 'envs':
        conf.envs = reader.envs(key);
        return;
    }
    const option = BY_KEY.get(key);
    if (option) {
      const { spec } = option;
      const value = spec.key!.read(reader.value(key, conf.warnings), (text) =>
        spec.parse(text, { subject: reader.subject(key, text), as: key, prev: undefined, warnings: conf.warnings, set: () => {} }),
      );
      if (value === undefined) return;
      (conf as Record<string, unknown>)[option.name] = value;
      const note = spec.note?.(value, key);
      const at = lines.locate(SECTION, key);
      if (note) problems.push({ severity: 'note', line: at?.line ?? 0, column: at?.valueCol ?? 0, key, message: note.message, ...(note.suggestion ? { suggestion: note.suggestion } : {}) });
    } else if (DATAKIT_ONLY_KEYS.has(key)) {
      if (!isBlank(table[key])) conf.warnings.push(keyNotImplementedWarning(key));
    } else if (!DATAKIT_WRAPPER_KEYS.has(key)) {
      const near = closest(key, [...KNOWN_KEYS, ...DATAKIT_ONLY_KEYS]);
      const hint = near ? `did you mean ${quote(near)}?` : undefined;
      conf.warnings.push(`${reader.where(key)}: unknown key ${quote(key)} in [[inputs.ebpf]]; ignored${hint ? ` (${hint})` : ''}`);
      const at = lines.locate(SECTION, key);
      problems.push({
        severity: 'warning',
        line: at?.line ?? 0,
        column: at?.keyCol ?? 0,
        key,
        message: `unknown key ${quote(key)} in [[inputs.ebpf]] is ignored`,
        expected: 'a key from conf.d/host/ebpf.conf',
        suggestion: hint ?? 'remove it, or check the spelling against conf.d/host/ebpf.conf',
      });
    }
  });
  for (const w of conf.warnings) {
    // What is accepted but has no effect (DataKit-only keys and plugins, empty tags).
    if (/unknown (top-level )?key|is not for this collector/.test(w)) continue; // already problems above
    const key = /^ebpf\.conf key (\S+)/.exec(w)?.[1];
    const tag = /^tag ("(?:[^"\\]|\\.)*") has an empty value/.exec(w)?.[1];
    const plugin = /^plugin (\S+) is accepted/.exec(w)?.[1];
    const at = key
      ? lines.locate(SECTION, key)
      : tag
        ? lines.locate(TAGS_SECTION, JSON.parse(tag) as string)
        : plugin
          ? lines.element(SECTION, 'enabled_plugins', plugin)
          : undefined;
    const column = at && 'keyCol' in at ? at.keyCol : (at?.column ?? 0);
    problems.push({ severity: 'note', line: at?.line ?? 0, column, ...(key ? { key } : {}), message: w });
  }
  return conf;
}

/** A TOML value as the user wrote it, roughly: `"yes"` (a string), `5` (an integer). */
function describeValue(v: unknown): string {
  if (typeof v === 'string') return `${quote(v)} (a string)`;
  if (typeof v === 'number') return `${v} (${Number.isInteger(v) ? 'an integer' : 'a float'})`;
  if (typeof v === 'boolean') return `${v} (a boolean)`;
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (isTable(v)) return 'a table';
  return 'the value';
}

function isBlank(v: unknown): boolean {
  return v === '' || v === false || (Array.isArray(v) && v.length === 0);
}

interface TomlError extends Error {
  fromTOML?: boolean;
  line?: number;
  col?: number;
}

function tomlSyntaxError(path: string, err: unknown): CollectorError {
  const e = err as TomlError;
  if (e && e.fromTOML && typeof e.line === 'number' && typeof e.col === 'number') {
    // @iarna/toml counts from 0 and appends a multi-line excerpt; editors
    // count from 1 and we promise a single line.
    const what = e.message.replace(/\s+at row \d+, col \d+, pos \d+:[\s\S]*$/, '').trim();
    return new CollectorError('CONFIG_FILE', `${path}:${e.line + 1}:${e.col + 1}: ${what}`, { cause: err });
  }
  return new CollectorError('CONFIG_FILE', `${path}: cannot parse TOML: ${(e as Error).message}`, { cause: err });
}

function pickEbpfTable(doc: TOML.JsonMap, path: string, lines: KeyLines): TOML.JsonMap {
  const inputs = doc.inputs;
  const ebpf = isTable(inputs) ? inputs.ebpf : undefined;
  if (Array.isArray(ebpf)) {
    if (ebpf.length > 1) {
      const line = lines.header(SECTION, 2);
      throw new CollectorError(
        'CONFIG_INVALID',
        `${path}${line ? `:${line}` : ''}: more than one [[inputs.ebpf]] table; expected exactly one`,
      );
    }
    if (ebpf.length === 1 && isTable(ebpf[0])) return ebpf[0];
  } else if (isTable(ebpf)) {
    // `[inputs.ebpf]` (a single table) is what DataKit's loader also accepts.
    return ebpf;
  }
  // Point at the table that was probably meant: [[inputs.ebpfs]], [[input.ebpf]].
  const headers = lines.headers();
  const near = closest(SECTION, headers.map((h) => h.name));
  const at = headers.find((h) => h.name === near) ?? headers[0];
  const err = new CollectorError(
    'CONFIG_INVALID',
    `${path}${at ? `:${at.line}` : ''}: no [[inputs.ebpf]] table; expected one as in conf.d/host/ebpf.conf`,
  );
  throw Object.assign(err, { suggestion: near ? `did you mean [[${SECTION}]] instead of [[${near}]]?` : `start the file with [[${SECTION}]]` });
}

function isTable(v: unknown): v is TOML.JsonMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/**
 * Line numbers for keys. The TOML parser does not keep positions, so the raw
 * text is scanned: good enough for the plain `key = value` layout DataKit's
 * samples use; anything fancier falls back to the section header's line.
 */
export class KeyLines {
  private readonly lines: string[];
  constructor(text: string) {
    this.lines = text.split(/\r?\n/);
  }

  /** 1-based line, key column and value column of `key =` inside `section` ('' = top level). */
  locate(section: string, key: string): { line: number; keyCol: number; valueCol: number } | undefined {
    const keyRe = new RegExp(`^(\\s*)(["']?)${escapeRe(key)}\\2\\s*=\\s*`);
    let current = '';
    for (let i = 0; i < this.lines.length; i++) {
      const line = this.lines[i] as string;
      const s = sectionOf(line);
      if (s !== undefined) {
        current = s;
        continue;
      }
      const m = current === section ? keyRe.exec(line) : null;
      if (m) return { line: i + 1, keyCol: (m[1] as string).length + 1, valueCol: m[0].length + 1 };
    }
    return undefined;
  }

  /**
   * 1-based position of the string `value` inside the array value of `key`
   * (the nth such string), which may span lines. Undefined if not found.
   */
  element(section: string, key: string, value: string, nth = 1): { line: number; column: number } | undefined {
    const at = this.locate(section, key);
    if (!at) return undefined;
    let depth = 0;
    let seen = 0;
    for (let i = at.line - 1; i < this.lines.length; i++) {
      const line = this.lines[i] as string;
      for (let j = i === at.line - 1 ? at.valueCol - 1 : 0; j < line.length; j++) {
        const c = line[j];
        if (c === '#') break;
        if (c === '[') depth++;
        else if (c === ']' && --depth <= 0) return undefined;
        else if ((c === '"' || c === "'") && depth > 0) {
          const end = stringEnd(line, j);
          const raw = line.slice(j, end + 1);
          let text: string;
          try {
            text = c === '"' ? (JSON.parse(raw) as string) : raw.slice(1, -1);
          } catch {
            text = raw.slice(1, -1);
          }
          if (text === value && ++seen === nth) return { line: i + 1, column: j + 1 };
          j = end;
        }
      }
      if (depth <= 0) return undefined;
    }
    return undefined;
  }

  /** Every table header, with its 1-based line. */
  headers(): { name: string; line: number }[] {
    const out: { name: string; line: number }[] = [];
    this.lines.forEach((l, i) => {
      const s = sectionOf(l);
      if (s !== undefined) out.push({ name: s, line: i + 1 });
    });
    return out;
  }

  /** 1-based line of the nth header naming `section`. */
  header(section: string, nth = 1): number | undefined {
    let seen = 0;
    for (let i = 0; i < this.lines.length; i++) {
      if (sectionOf(this.lines[i] as string) === section && ++seen === nth) return i + 1;
    }
    return undefined;
  }

  /** 1-based line of `key =` inside `section`, else of the section header. */
  find(section: string, key: string): number | undefined {
    return this.locate(section, key)?.line ?? this.header(section);
  }
}

function sectionOf(line: string): string | undefined {
  const m = /^\s*\[\[?([^\]]+)\]\]?\s*(#.*)?$/.exec(line);
  if (!m) return undefined;
  return (m[1] as string)
    .split('.')
    .map((p) => p.trim().replace(/^["']|["']$/g, ''))
    .join('.');
}

/** Index of the closing quote of the string starting at `start` (or the line's end). */
function stringEnd(line: string, start: number): number {
  const q = line[start];
  for (let k = start + 1; k < line.length; k++) {
    if (q === '"' && line[k] === '\\') k++;
    else if (line[k] === q) return k;
  }
  return line.length - 1;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Type checks for [[inputs.ebpf]] values, each failure naming file:line and key. */
class KeyReader {
  constructor(
    private readonly path: string,
    private readonly lines: KeyLines,
    private readonly table: TOML.JsonMap,
    private readonly problems: ConfProblem[] = [],
  ) {}

  /** Locates an error thrown while checking `key` (by wrongType, or a value parser given subject()). */
  problemFrom(key: string, err: CollectorError): ConfProblem {
    const detail = (err as { detail?: { key: string; section: string; expected: string; value: unknown } }).detail;
    if (detail) {
      const at = this.lines.locate(detail.section, detail.key);
      return {
        severity: 'error',
        line: at?.line ?? this.lines.header(detail.section) ?? 0,
        column: at?.valueCol ?? 1,
        key: detail.key,
        ...(detail.section !== SECTION ? { table: detail.section } : {}),
        value: detail.value,
        message: `${describeValue(detail.value)} has the wrong type`,
        expected: detail.expected,
        error: err,
      };
    }
    const prefix = `${this.where(key)}: key ${quote(key)}`;
    let rest = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : `: ${err.message}`;
    let value: string | undefined;
    const v = /^ value ("(?:[^"\\]|\\.)*")/.exec(rest);
    if (v) {
      value = JSON.parse(v[1] as string) as string;
      rest = rest.slice(v[0].length);
    }
    const [what, expected] = splitExpected(rest.replace(/^: /, ''));
    const at = this.lines.locate(SECTION, key);
    let el: { line: number; column: number } | undefined;
    if (value !== undefined && Array.isArray(this.table[key])) {
      // The value may be the list joined (enabled_plugins); the culprit is then quoted in the message.
      const candidates = [value, ...[...what.matchAll(/"(?:[^"\\]|\\.)*"/g)].map((q) => JSON.parse(q[0]) as string)];
      for (const c of candidates) if ((el ??= this.lines.element(SECTION, key, c))) break;
    }
    const p: ConfProblem = {
      severity: 'error',
      line: el?.line ?? at?.line ?? this.lines.header(SECTION) ?? 0,
      column: el?.column ?? at?.valueCol ?? 1,
      key,
      message: what || (value !== undefined ? `value ${quote(value)} is not valid` : 'the value is not valid'),
      error: err,
    };
    if (value !== undefined) p.value = value;
    if (expected) p.expected = expected;
    return p;
  }

  where(key: string, section = SECTION): string {
    const line = this.lines.find(section, key);
    return line === undefined ? this.path : `${this.path}:${line}`;
  }

  /** Prefix for a value of the right type that fails its own check. */
  subject(key: string, value: string): string {
    return `${this.where(key)}: key ${quote(key)} value ${quote(value)}`;
  }

  private wrongType(key: string, expected: string, section = SECTION, value: unknown = this.table[key]): CollectorError {
    const err = invalid(`${this.where(key, section)}: key ${quote(key)}`, `expected ${expected}`);
    return Object.assign(err, { detail: { key, section, expected, value } });
  }

  /** `key`'s value as an option's ConfKey reads it. */
  value(key: string, warnings: string[]): ConfValue {
    return {
      key,
      raw: this.table[key],
      string: (expected) => this.string(key, expected),
      bool: () => this.bool(key),
      integer: (expected) => this.integer(key, expected),
      strings: (expected) => this.strings(key, expected),
      tags: () => this.tags(key, warnings),
      warnings,
    };
  }

  string(key: string, expected: string): string {
    const v = this.table[key];
    if (typeof v !== 'string') throw this.wrongType(key, expected);
    return v;
  }

  bool(key: string): boolean {
    const v = this.table[key];
    if (typeof v !== 'boolean') throw this.wrongType(key, 'true or false (without quotes)');
    return v;
  }

  integer(key: string, expected: string): number {
    const v = this.table[key];
    if (typeof v !== 'number' || !Number.isInteger(v)) throw this.wrongType(key, expected);
    return v;
  }

  strings(key: string, expected: string): string[] {
    const v = this.table[key];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw this.wrongType(key, expected);
    return v as string[];
  }

  envs(key: string): Record<string, string> {
    const expected = 'an array of "NAME=value" strings such as ["ENV_HOSTNAME=web-1"]';
    const items = this.strings(key, expected);
    const envs: Record<string, string> = {};
    for (const item of items) {
      const eq = item.indexOf('=');
      if (eq <= 0) throw invalid(this.subject(key, item), `expected ${expected}`);
      envs[item.slice(0, eq)] = item.slice(eq + 1);
    }
    return envs;
  }

  tags(key: string, warnings: string[]): Record<string, string> {
    const v = this.table[key];
    if (!isTable(v)) throw this.wrongType(key, 'a table [inputs.ebpf.tags] of string values');
    const tags: Record<string, string> = {};
    for (const [k, val] of Object.entries(v)) {
      if (typeof val !== 'string') {
        // Every bad tag is reported; the first one is what the daemon stops on.
        const err = this.wrongType(k, 'a string value such as "some_value"', TAGS_SECTION, val);
        this.problems.push(this.problemFrom(k, err));
        continue;
      }
      const name = k.trim();
      const value = val.trim();
      if (value === '') {
        warnings.push(`tag ${quote(name)} has an empty value; ignored`);
        continue;
      }
      tags[name] = value;
    }
    return tags;
  }
}
