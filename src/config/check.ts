// `datakit-ebpf check-config <file>`: every problem of an ebpf.conf, one line
// each, as `file:line:column: severity: key "k": what; expected X; suggestion: Y`.
// The checks are the daemon's own (src/config/ebpfconf.ts and the option
// table's parsers); this module collects them all instead of stopping at the
// first, locates them and adds the likely fix (the option's own `suggest`).
// Notes (accepted, but worth knowing: a short interval, an option with no
// effect) do not fail the check.
import { checkFlags, type FlagProblem } from './cli';
import { checkEbpfConf, SECTION, type ConfProblem, type KeyLines } from './ebpfconf';
import { BY_FLAG, BY_KEY } from './options';
import { quote } from './values';

export interface CheckReport {
  path: string;
  problems: ConfProblem[];
  /** 0 when there is no error and no warning (notes are fine), else 2. */
  exitCode: number;
  /** What check-config prints. */
  lines: string[];
}

export function checkConfigFile(path: string): CheckReport {
  const r = checkEbpfConf(path);
  const problems = [...r.problems];
  if (r.conf && r.lines && r.conf.args.length > 0) {
    const where = `${path}${r.conf.argsLine ? `:${r.conf.argsLine}` : ''}: args`;
    for (const f of checkFlags(r.conf.args, where)) {
      // A key outranks `args`: a note on a value the key replaces would be wrong.
      if (f.option && (r.conf as Record<string, unknown>)[f.option] !== undefined) continue;
      problems.push(flagProblem(f, r.conf.args, r.lines, where));
    }
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
  if (f.suggestion) p.suggestion = f.suggestion;
  return p;
}

/** The likely fix for a problem, from its key, value and what was expected. */
export function suggest(p: ConfProblem): string | undefined {
  const key = p.key ?? '';
  const v = p.value;
  const flag = p.flag;
  if (p.severity === 'note') return undefined;

  if (p.message.endsWith('has the wrong type')) return typeFix(key, v, p.expected ?? '');
  if (typeof v !== 'string') return undefined;
  if (!flag && key === 'envs') return /^[A-Za-z_]\w*$/.test(v.trim()) ? `write ${quote(`${v.trim()}=<value>`)}` : 'write "NAME=value", e.g. "ENV_HOSTNAME=web-1"';
  const option = flag ? BY_FLAG.get(flag) : BY_KEY.get(key);
  const write = flag ? (s: string): string => `${flag} ${quote(s)}` : (s: string): string => `${key} = ${quote(s)}`;
  return option?.spec.suggest?.(v, write, p.message);
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
