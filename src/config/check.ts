// `datakit-ebpf check-config <file>`: every problem of an ebpf.conf, one line
// each, as `file:line:column: severity: key "k": what; expected X; suggestion: Y`.
// The checks are the daemon's own (src/config/ebpfconf.ts and the flag
// parsers in cli.ts); this module collects them all instead of stopping at
// the first, locates them and adds the likely fix.
import { checkFlags, type FlagProblem } from './cli';
import { checkEbpfConf, SECTION, type ConfProblem, type KeyLines } from './ebpfconf';
import { closest } from './suggest';
import { PLUGINS } from './types';
import { DATAKIT_ONLY_PLUGINS, goDurationNs, MAX_INTERVAL_MS, MIN_INTERVAL_MS, quote } from './values';

export interface CheckReport {
  path: string;
  problems: ConfProblem[];
  /** 0 when there is no error and no warning (notes are fine), else 2. */
  exitCode: number;
  /** What check-config prints. */
  lines: string[];
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export function checkConfigFile(path: string): CheckReport {
  const r = checkEbpfConf(path);
  const problems = [...r.problems];
  if (r.conf && r.lines && r.conf.args.length > 0) {
    const where = `${path}${r.conf.argsLine ? `:${r.conf.argsLine}` : ''}: args`;
    for (const f of checkFlags(r.conf.args, where)) problems.push(flagProblem(f, r.conf.args, r.lines, where));
  }
  for (const p of problems) p.suggestion ??= suggest(p);
  problems.sort((a, b) => a.line - b.line || a.column - b.column);
  const failing = problems.filter((p) => p.severity !== 'note');
  const lines = problems.map((p) => formatProblem(path, p));
  const count = (sev: ConfProblem['severity']): number => problems.filter((p) => p.severity === sev).length;
  lines.push(
    problems.length === 0
      ? `${path}: no problems`
      : `${path}: ${count('error')} error(s), ${count('warning')} warning(s), ${count('note')} note(s)`,
  );
  return { path, problems, exitCode: failing.length > 0 ? 2 : 0, lines };
}

export function formatProblem(path: string, p: ConfProblem): string {
  const at = p.line > 0 ? `${path}:${p.line}:${p.column || 1}` : path;
  const subject = p.key ? `${p.table ? `key ${quote(p.key)} in [${p.table}]` : `key ${quote(p.key)}`}: ` : '';
  const parts = [`${at}: ${p.severity}: ${subject}${p.message}`];
  if (p.expected) parts.push(`expected ${p.expected}`);
  if (p.suggestion) parts.push(`suggestion: ${p.suggestion}`);
  return parts.join('; ');
}

/** A problem of one flag inside `args`, located at its element of the array. */
function flagProblem(f: FlagProblem, args: string[], lines: KeyLines, where: string): ConfProblem {
  let message = f.message.startsWith(`${where}: `) ? f.message.slice(where.length + 2) : f.message;
  let expected: string | undefined;
  if (f.severity === 'warning' && f.flag && message.startsWith(`unknown flag ${f.flag} `)) {
    message = `unknown flag ${f.flag} is ignored`;
    expected = 'a flag from datakit-ebpf --help';
  }
  if (f.flag && f.value !== undefined && message.startsWith(`${f.flag} ${quote(f.value)}: `)) {
    message = message.slice(`${f.flag} ${quote(f.value)}: `.length);
    const i = message.lastIndexOf('; expected ');
    if (message.startsWith('expected ')) {
      expected = message.slice('expected '.length);
      message = `value ${quote(f.value)} is not valid`;
    } else if (i >= 0) {
      expected = message.slice(i + '; expected '.length);
      message = message.slice(0, i);
    }
  }
  // Point at the value when it is its own element, else at the flag.
  let pos: { line: number; column: number } | undefined;
  if (f.flag) {
    const nth = (i: number): number => args.slice(0, i + 1).filter((a) => a === args[i]).length;
    const joined = f.value !== undefined ? args.findIndex((a) => a === `${f.flag}=${f.value}`) : -1;
    const split = f.value !== undefined ? args.findIndex((a, i) => a === f.flag && args[i + 1] === f.value) : -1;
    const bare = args.findIndex((a) => a === f.flag || a.startsWith(`${f.flag}=`));
    const i = joined >= 0 ? joined : split >= 0 ? split + 1 : bare;
    if (i >= 0) pos = lines.element(SECTION, 'args', args[i] as string, nth(i));
  }
  const keyPos = lines.locate(SECTION, 'args');
  const p: ConfProblem = {
    severity: f.severity,
    line: pos?.line ?? keyPos?.line ?? 0,
    column: pos?.column ?? keyPos?.valueCol ?? 0,
    key: 'args',
    message: f.flag && !message.includes(f.flag) ? `${f.flag}: ${message}` : message,
  };
  if (f.flag) p.flag = f.flag;
  if (f.value !== undefined) p.value = f.value;
  if (expected) p.expected = expected;
  const near = /did you mean (\S+)\?/.exec(f.message);
  if (near) p.suggestion = `did you mean ${near[1]}?`;
  return p;
}

/** The likely fix for a problem, from its key, value and what was expected. */
export function suggest(p: ConfProblem): string | undefined {
  const key = p.key ?? '';
  const v = p.value;
  const flag = p.flag;
  if (p.severity === 'note') return undefined;

  if (p.message.endsWith('has the wrong type')) return typeFix(key, v, p.expected ?? '');

  const name = flag ?? key;
  if (typeof v !== 'string') return undefined;
  if (name === 'interval' || name === '--interval') return intervalFix(v, flag ? (s) => `${flag} ${quote(s)}` : (s) => `interval = ${quote(s)}`);
  if (name === 'enabled_plugins' || name === '--enabled') {
    const bad = /unknown plugin ("(?:[^"\\]|\\.)*")/.exec(p.message);
    const word = bad ? (JSON.parse(bad[1] as string) as string) : v;
    const near = closest(word.trim(), [...PLUGINS, ...DATAKIT_ONLY_PLUGINS]);
    return near ? `did you mean ${quote(near)}?` : `use one of ${PLUGINS.map((x) => quote(x)).join(', ')}`;
  }
  if (name === '--datakit-apiserver') return addressFix(v);
  if (name === '--log-level') {
    const near = closest(v.trim(), LOG_LEVELS);
    return near ? `did you mean ${near}?` : `use one of ${LOG_LEVELS.join(', ')}`;
  }
  if (name === 'envs') return /^[A-Za-z_]\w*$/.test(v.trim()) ? `write ${quote(`${v.trim()}=<value>`)}` : 'write "NAME=value", e.g. "ENV_HOSTNAME=web-1"';
  if (name === 'ephemeral_port' || name === '--ephemeral-port') return 'use a port from 0 to 65535, or remove the key';
  return undefined;
}

function typeFix(key: string, v: unknown, expected: string): string | undefined {
  const lower = typeof v === 'string' ? v.trim().toLowerCase() : '';
  if (expected.startsWith('true or false')) {
    if (['true', 'yes', 'on', '1'].includes(lower)) return `write ${key} = true (without quotes)`;
    if (['false', 'no', 'off', '0'].includes(lower)) return `write ${key} = false (without quotes)`;
    return `write ${key} = true or ${key} = false`;
  }
  if (expected.startsWith('an integer') && typeof v === 'string' && /^-?\d+$/.test(v.trim())) return `write ${key} = ${v.trim()} (without quotes)`;
  if (expected.startsWith('an array') && typeof v === 'string') {
    const items = key === 'args' ? v.trim().split(/\s+/) : v.split(',').map((x) => x.trim()).filter(Boolean);
    return `write ${key} = [${items.map((x) => quote(x)).join(', ')}]`;
  }
  if (expected.startsWith('a duration') && typeof v === 'number') return `write ${key} = ${quote(`${v}s`)}`;
  if ((expected.startsWith('a string') || expected.startsWith('a port string')) && (typeof v === 'number' || typeof v === 'boolean')) {
    return `write ${key} = ${quote(String(v))}`;
  }
  return undefined;
}

function intervalFix(v: string, write: (s: string) => string): string {
  const t = v.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return `add a unit: ${write(`${t}s`)}`;
  const ns = goDurationNs(t);
  if (ns === undefined) return `write a Go duration: ${write('60s')} or ${write('1m30s')}`;
  if (ns < MIN_INTERVAL_MS * 1e6) return `the shortest interval is ${write('1s')}`;
  if (ns > MAX_INTERVAL_MS * 1e6) return `the longest interval is ${write('24h')}`;
  return `write a Go duration: ${write('60s')}`;
}

function addressFix(v: string): string {
  const t = v.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(t);
  if (scheme && !['http', 'https'].includes((scheme[1] as string).toLowerCase())) {
    return `use http:// or https://: ${t.replace(/^[a-z][a-z0-9+.-]*:\/\//i, 'http://')}`;
  }
  const host = t.replace(/^https?:\/\//i, '').replace(/\/.*$/, '');
  if (host !== '' && !/:\d+$/.test(host)) return `add DataKit's port: ${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:9529`;
  if (/:0*$/.test(host) || /:\d{6,}$/.test(host)) return `use DataKit's port, e.g. ${host.replace(/:\d*$/, '')}:9529`;
  return 'write host:port, e.g. 127.0.0.1:9529 or http://datakit.local:9529';
}
