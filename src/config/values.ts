// Parsers for the individual setting values. Flags and ebpf.conf keys share
// them so a value means the same thing wherever it is written; the caller
// passes a `subject` (`--interval "0.5s"` or `ebpf.conf:7: key "interval"
// value "0.5s"`) so every error stays one line naming where the value came
// from, the value and what was expected.

import { CollectorError } from '../errors';
import { DKE_DNS_PORTS_MAX } from '../loader/layout.generated';
import { compileRedactRegex, parseRedactPresets, REDACT_PRESET_NAMES, type RedactPreset } from '../bash/redact';
import { LogLevel, PLUGINS, Plugin } from './types';

export function invalid(subject: string, tail: string): CollectorError {
  return new CollectorError('CONFIG_INVALID', `${subject}: ${tail}`);
}

/** `"value"` with the quotes JSON would add, so blanks and odd characters show up. */
export function quote(value: string): string {
  return JSON.stringify(value);
}

// ---------------------------------------------------------------- duration

export const MIN_INTERVAL_MS = 1000;
// Timers in Node overflow past 2^31-1 ms (~24.8 days); a day is already far
// beyond any sensible flush interval, so it is the ceiling.
export const MAX_INTERVAL_MS = 24 * 3600 * 1000;

const UNIT_NS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  'µs': 1e3, // U+00B5 micro sign, as Go accepts
  'μs': 1e3, // U+03BC greek mu, as Go accepts
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/**
 * Go's time.ParseDuration grammar (`1m30s`, `1.5h`, `500ms`), because DataKit
 * passes the ebpf.conf `interval` string through untouched and upstream
 * parsed it with Go. Returns nanoseconds, or undefined if it is not a duration.
 */
export function goDurationNs(text: string): number | undefined {
  let s = text.trim();
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  const part = /(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    part.lastIndex = pos;
    const m = part.exec(s);
    if (!m) return undefined;
    const [whole, int, frac] = m;
    if (int === '' && (frac === undefined || frac === '')) return undefined;
    const unit = UNIT_NS[m[3] as string] as number;
    total += Number(`${int || '0'}.${frac || '0'}`) * unit;
    pos += whole.length;
  }
  return sign * total;
}

export function parseInterval(raw: string, subject: string): number {
  const ns = goDurationNs(raw);
  if (ns === undefined || ns < MIN_INTERVAL_MS * 1e6) {
    throw invalid(subject, 'expected a duration of at least 1s such as 10s or 1m');
  }
  const ms = Math.round(ns / 1e6);
  if (ms > MAX_INTERVAL_MS) {
    throw invalid(subject, 'expected a duration of at most 24h such as 10s or 1m');
  }
  return ms;
}

// ------------------------------------------------------------- API server

const API_EXPECTED = 'expected host:port, [ipv6]:port or an http(s):// URL such as 0.0.0.0:9529';

/** The API server as a normalised base URL, host kept as written (`http://0.0.0.0:9529`). */
export function parseApiServer(raw: string, subject: string): string {
  const s = raw.trim();
  let text: string;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s);
  if (scheme) {
    const proto = (scheme[1] as string).toLowerCase();
    if (proto !== 'http' && proto !== 'https') throw invalid(subject, API_EXPECTED);
    text = s;
  } else {
    // Without a scheme the port is mandatory: upstream would silently have
    // used port 80, which is never where DataKit listens.
    if (!/^(\[[0-9a-fA-F:.]+\]|[^:/\[\]\s]+):\d+$/.test(s)) throw invalid(subject, API_EXPECTED);
    text = `http://${s}`;
  }
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw invalid(subject, API_EXPECTED);
  }
  // The one query parameter allowed is DataKit's `token` (a console on another
  // host asks for it); it is sent with every request and masked in messages.
  const token = u.searchParams.get('token');
  const onlyToken = [...u.searchParams.keys()].every((k) => k === 'token') && u.searchParams.getAll('token').length === 1 && token;
  if (u.hostname === '' || u.port === '0' || u.username || u.password || (u.search && !onlyToken) || u.hash) {
    throw invalid(subject, API_EXPECTED);
  }
  const path = u.pathname.replace(/\/+$/, '');
  return `${u.protocol}//${u.host}${path}${token ? `?token=${encodeURIComponent(token)}` : ''}`;
}

/** The URL for messages and logs: DataKit's token masked. */
export function displayUrl(url: string): string {
  return url.replace(/([?&]token=)[^&]*/, '$1***');
}

/**
 * What to dial for a parseApiServer URL. DataKit hands us its *listen*
 * address (`0.0.0.0:9529` by default). A wildcard is not a destination:
 * connecting to 0.0.0.0 only works by a Linux quirk and `::` not at all on
 * some stacks, so it is swapped for loopback, where a listener on every
 * address is always reachable.
 */
export function dialUrl(url: string): string {
  const u = new URL(url);
  if (u.hostname === '0.0.0.0') u.hostname = '127.0.0.1';
  else if (u.hostname === '[::]') u.hostname = '[::1]';
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}${u.search}`;
}

// ------------------------------------------------------------- small types

export const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export function parseLogLevel(raw: string, subject: string): LogLevel {
  let v = raw.trim().toLowerCase();
  if (v === 'warning') v = 'warn';
  if ((LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  throw invalid(subject, `expected one of ${LOG_LEVELS.join(', ')}`);
}

/** `stdout` (any case) or a file path. */
export function parseLogTarget(raw: string, subject: string): string {
  const v = raw.trim();
  if (v === '') throw invalid(subject, 'expected a file path or stdout');
  return v.toLowerCase() === 'stdout' ? 'stdout' : v;
}

export function parseNonEmpty(raw: string, subject: string, what: string): string {
  const v = raw.trim();
  if (v === '') throw invalid(subject, `expected a non-empty ${what}`);
  return v;
}

/** Integer port 0..65535; 0 is meaningful for --ephemeral-port. */
export function parsePort(raw: string, subject: string): number {
  const v = raw.trim();
  const n = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  if (!(n >= 0 && n <= 65535)) throw invalid(subject, 'expected an integer port from 0 to 65535');
  return n;
}

/** The BPF filter checks this many ports (bpf/netflow.h, the control block's dns_ports). */
export const MAX_DNS_PORTS = DKE_DNS_PORTS_MAX;

/** `53,5353`: distinct ports 1-65535, at most MAX_DNS_PORTS; `off` (or `none`) is none: dnsflow off. */
export function parseDnsPorts(raw: string, subject: string): number[] {
  const items = splitList(raw);
  if (items.length === 1 && /^(off|none)$/i.test(items[0]!)) return [];
  const ports: number[] = [];
  for (const item of items) {
    const n = /^\d{1,5}$/.test(item) ? Number(item) : NaN;
    if (!(n >= 1 && n <= 65535)) throw invalid(subject, 'expected ports from 1 to 65535 separated by commas, such as 53,5353, or off');
    if (!ports.includes(n)) ports.push(n);
  }
  if (ports.length === 0) throw invalid(subject, 'expected ports from 1 to 65535 separated by commas, such as 53,5353, or off');
  if (ports.length > MAX_DNS_PORTS) throw invalid(subject, `expected at most ${MAX_DNS_PORTS} ports`);
  return ports;
}

/** A Go duration from `minMs` to `maxMs`, in milliseconds; `example` ends the message (`such as 6s`). */
export function parseDurationBetween(raw: string, subject: string, minMs: number, maxMs: number, example: string): number {
  const ns = goDurationNs(raw);
  const ms = ns === undefined ? NaN : Math.round(ns / 1e6);
  if (!(ms >= minMs && ms <= maxMs)) throw invalid(subject, `expected a duration from ${formatDuration(minMs)} to ${formatDuration(maxMs)} such as ${example}`);
  return ms;
}

export const parseDnsTimeout = (raw: string, subject: string): number => parseDurationBetween(raw, subject, 100, 5 * 60_000, '6s');

/** Milliseconds as a Go duration the way people write one: `500ms`, `1.5s`, `1m30s`, `24h`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s ? `${s}s` : ''}`;
}

/** A non-negative integer up to `max`; `expected` ends the message. */
export function parseCount(raw: string, subject: string, max: number, expected: string): number {
  const v = raw.trim();
  const n = /^\d{1,9}$/.test(v) ? Number(v) : NaN;
  if (!(n >= 0 && n <= max)) throw invalid(subject, `expected ${expected}`);
  return n;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** A byte size: `1048576`, `512K`, `256M`, `2G` (binary units, optional trailing B/iB). */
export function parseByteSize(raw: string, subject: string): number {
  const m = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(raw.trim());
  const n = m ? Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]! : NaN;
  if (!(n >= 65536 && Number.isSafeInteger(n))) throw invalid(subject, 'expected a size of at least 64K such as 256M or 1G');
  return n;
}

const TRUE = new Set(['true', '1', 't', 'yes', 'y', 'on']);
const FALSE = new Set(['false', '0', 'f', 'no', 'n', 'off']);

export function parseBool(raw: string, subject: string): boolean {
  const v = raw.trim().toLowerCase();
  if (TRUE.has(v)) return true;
  if (FALSE.has(v)) return false;
  throw invalid(subject, 'expected true or false');
}

// ------------------------------------------------------------------- lists

/** Items of a comma-separated list, blanks dropped (`a, b,,c`). */
export function splitList(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

// DataKit's ebpf input forwards these too; upstream implements them, we do
// not yet. Refusing them would stop collection on a config DataKit accepts.
export const DATAKIT_ONLY_PLUGINS = ['ebpf-conntrack', 'ebpf-trace', 'bpf-netlog'] as const;

export function pluginNotImplementedWarning(name: string): string {
  return `plugin ${name} is accepted for DataKit compatibility but not implemented; ignored`;
}

export function flagNotImplementedWarning(flag: string): string {
  return `flag ${flag} is accepted for DataKit compatibility but not implemented; ignored`;
}

export function keyNotImplementedWarning(key: string): string {
  return `ebpf.conf key ${key} is accepted for DataKit compatibility but not implemented; ignored`;
}

/**
 * Plugin names from one flag value or conf entry. DataKit-only plugins are
 * dropped with a warning; anything else unknown is an error.
 */
export function parsePlugins(items: string[], subject: string, warnings: string[]): Plugin[] {
  const out: Plugin[] = [];
  for (const item of items) {
    const name = item.trim().toLowerCase();
    if ((PLUGINS as readonly string[]).includes(name)) {
      if (!out.includes(name as Plugin)) out.push(name as Plugin);
    } else if ((DATAKIT_ONLY_PLUGINS as readonly string[]).includes(name)) {
      warnings.push(pluginNotImplementedWarning(name));
    } else {
      throw invalid(subject, `unknown plugin ${quote(item)}; expected a comma-separated list of ${PLUGINS.join(', ')}`);
    }
  }
  return out;
}

// -------------------------------------------------------------------- tags

/**
 * `k=v` pairs split on both `;` and `,`: DataKit joins tags with `;` while
 * upstream split on `,` (and so lost every tag after the first). A value
 * therefore cannot contain either separator. Empty values are dropped with a
 * warning rather than refused, because DataKit may forward a global tag that
 * happens to be blank and a blank tag cannot be sent in line protocol anyway.
 */
export function parseTags(raw: string, subject: string, warnings: string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const piece of raw.split(/[;,]/)) {
    const pair = piece.trim();
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq < 0) {
      throw invalid(subject, `pair ${quote(pair)} has no "="; expected k=v pairs separated by ";" or ","`);
    }
    const key = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (key === '') {
      throw invalid(subject, `pair ${quote(pair)} has an empty key; expected k=v pairs separated by ";" or ","`);
    }
    if (value === '') {
      warnings.push(`tag ${quote(key)} has an empty value; ignored`);
      continue;
    }
    tags[key] = value;
  }
  return tags;
}

// ------------------------------------------------------------- ebpf-bash

/** Redaction preset names (`all`, `none` included) from one flag value or conf entry. */
export function parseRedactPresetList(items: string[], subject: string, before: RedactPreset[] = []): RedactPreset[] {
  const r = parseRedactPresets([...before, ...items]);
  if ('unknown' in r) {
    throw invalid(subject, `unknown redaction preset ${quote(r.unknown)}; expected a comma-separated list of ${REDACT_PRESET_NAMES.join(', ')}, all or none`);
  }
  return r;
}

/** A user's redaction pattern, checked to compile; kept as text (the config crosses process boundaries). */
export function parseRedactRegex(raw: string, subject: string): string {
  try {
    compileRedactRegex(raw);
  } catch (err) {
    throw invalid(subject, `not a usable regular expression (${(err as Error).message}); write a JavaScript pattern, or /pattern/i for flags`);
  }
  return raw;
}
