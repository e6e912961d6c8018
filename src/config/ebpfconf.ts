// Reads DataKit's `conf.d/host/ebpf.conf`: the same file DataKit uses to
// launch us, so `--config` can point at it and a hand-run collector behaves
// like the one DataKit starts. Only reading and checking happens here; how
// the values rank against flags is decided in cli.ts.

import * as fs from 'node:fs';
import * as TOML from '@iarna/toml';
import { CollectorError } from '../errors';
import { Plugin } from './types';
import { invalid, parseInterval, parsePlugins, parsePort, quote } from './values';

export interface EbpfConfFile {
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
  /** Undefined when absent or empty: DataKit then falls back to ebpf-net. */
  enabled?: Plugin[];
  l7netEnabled?: string[];
  ipv6Disabled?: boolean;
  ephemeralPort?: number;
  intervalMs?: number;
  pprofHost?: string;
  pprofPort?: number;
  tags: Record<string, string>;
  warnings: string[];
}

const SECTION = 'inputs.ebpf';
const TAGS_SECTION = 'inputs.ebpf.tags';

// Keys of DataKit's external-input wrapper that only DataKit itself uses.
const WRAPPER_KEYS = new Set(['election']);

// Keys DataKit's ebpf input understands and turns into flags or environment
// for upstream; we accept them so a DataKit-valid file stays valid.
const DATAKIT_ONLY_KEYS = new Set([
  'kubernetes_url',
  'bearer_token',
  'bearer_token_string',
  'workload_labels',
  'workload_label_prefix',
  'netlog_blacklist',
  'netlog_metric_only',
  'netlog_metric',
  'netlog_log',
  'l7net_disabled',
  'trace_server',
  'conv_to_ddtrace',
  'trace_all_process',
  'trace_env_list',
  'trace_env_blacklist',
  'trace_name_list',
  'trace_name_blacklist',
  'cpu_limit',
  'mem_limit',
  'net_limit',
  'sampling_rate',
  'sampling_rate_pts_per_min',
]);

export function keyNotImplementedWarning(key: string): string {
  return `ebpf.conf key ${key} is accepted for DataKit compatibility but not implemented; ignored`;
}

export function readEbpfConf(path: string): EbpfConfFile {
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
  const table = pickEbpfTable(doc, path, lines);
  const conf: EbpfConfFile = { path, args: [], envs: {}, tags: {}, warnings: [] };
  const reader = new KeyReader(path, lines, table);

  for (const key of Object.keys(doc)) {
    if (key !== 'inputs') conf.warnings.push(`${path}: unknown top-level key or table ${quote(key)}; ignored`);
  }
  const inputs = doc.inputs as TOML.JsonMap;
  for (const key of Object.keys(inputs)) {
    if (key !== 'ebpf') conf.warnings.push(`${path}: table [inputs.${key}] is not for this collector; ignored`);
  }

  for (const key of Object.keys(table)) {
    switch (key) {
      case 'daemon':
        conf.daemon = reader.bool(key);
        break;
      case 'name':
        conf.name = reader.string(key, 'a string');
        break;
      case 'cmd':
        conf.cmd = reader.string(key, 'a string with the collector path');
        break;
      case 'args':
        conf.args = reader.strings(key, 'an array of strings such as ["--datakit-apiserver", "0.0.0.0:9529"]');
        conf.argsLine = lines.find(SECTION, key);
        break;
      case 'envs':
        conf.envs = reader.envs(key);
        break;
      case 'enabled_plugins': {
        const items = reader.strings(key, 'an array of strings such as ["ebpf-net"]');
        const plugins = parsePlugins(items, reader.subject(key, items.join(',')), conf.warnings);
        if (items.length > 0) conf.enabled = plugins;
        break;
      }
      case 'l7net_enabled': {
        const items = reader.strings(key, 'an array of strings such as ["httpflow"]');
        conf.l7netEnabled = items;
        if (items.length > 0) conf.warnings.push(keyNotImplementedWarning(key));
        break;
      }
      case 'ipv6_disabled':
        conf.ipv6Disabled = reader.bool(key);
        break;
      case 'ephemeral_port': {
        const n = reader.integer(key, 'an integer port from 0 to 65535');
        // -1 is DataKit's own "not set" default for this key.
        if (n !== -1) conf.ephemeralPort = parsePort(String(n), reader.subject(key, String(n)));
        break;
      }
      case 'interval': {
        const s = reader.string(key, 'a duration string such as "60s"');
        conf.intervalMs = parseInterval(s, reader.subject(key, s));
        break;
      }
      case 'pprof_host':
        conf.pprofHost = reader.string(key, 'a string');
        break;
      case 'pprof_port': {
        // DataKit declares this key as a string; a bare integer is as clear.
        const v = table[key];
        const s = typeof v === 'number' ? String(v) : reader.string(key, 'a port string such as "6061"');
        if (s !== '') {
          try {
            conf.pprofPort = parsePort(s, key);
          } catch {
            // Only the status endpoint depends on it: never stop collection for it.
            conf.warnings.push(`${key} = ${JSON.stringify(s)} is not a port; the /metrics endpoint is off`);
          }
        }
        break;
      }
      case 'tags':
        conf.tags = reader.tags(key, conf.warnings);
        break;
      default:
        if (WRAPPER_KEYS.has(key)) break;
        if (DATAKIT_ONLY_KEYS.has(key)) {
          if (!isBlank(table[key])) conf.warnings.push(keyNotImplementedWarning(key));
        } else {
          conf.warnings.push(`${reader.where(key)}: unknown key ${quote(key)} in [[inputs.ebpf]]; ignored`);
        }
    }
  }
  return conf;
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
  throw new CollectorError('CONFIG_INVALID', `${path}: no [[inputs.ebpf]] table; expected one as in conf.d/host/ebpf.conf`);
}

function isTable(v: unknown): v is TOML.JsonMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/**
 * Line numbers for keys. The TOML parser does not keep positions, so the raw
 * text is scanned: good enough for the plain `key = value` layout DataKit's
 * samples use; anything fancier falls back to the section header's line.
 */
class KeyLines {
  private readonly lines: string[];
  constructor(text: string) {
    this.lines = text.split(/\r?\n/);
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
    const keyRe = new RegExp(`^\\s*(["']?)${escapeRe(key)}\\1\\s*=`);
    let current = '';
    for (let i = 0; i < this.lines.length; i++) {
      const line = this.lines[i] as string;
      const s = sectionOf(line);
      if (s !== undefined) {
        current = s;
        continue;
      }
      if (current === section && keyRe.test(line)) return i + 1;
    }
    return this.header(section);
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

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Type checks for [[inputs.ebpf]] values, each failure naming file:line and key. */
class KeyReader {
  constructor(
    private readonly path: string,
    private readonly lines: KeyLines,
    private readonly table: TOML.JsonMap,
  ) {}

  where(key: string, section = SECTION): string {
    const line = this.lines.find(section, key);
    return line === undefined ? this.path : `${this.path}:${line}`;
  }

  /** Prefix for a value of the right type that fails its own check. */
  subject(key: string, value: string): string {
    return `${this.where(key)}: key ${quote(key)} value ${quote(value)}`;
  }

  private wrongType(key: string, expected: string, section = SECTION): CollectorError {
    return invalid(`${this.where(key, section)}: key ${quote(key)}`, `expected ${expected}`);
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
        throw this.wrongType(k, 'a string value such as "some_value"', TAGS_SECTION);
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
