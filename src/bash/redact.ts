// Opt-in masking of secrets people type on the command line, applied to each
// bash line before it is buffered, so neither the upload nor our own log ever
// holds the secret. A rule is a regular expression: with capture groups, the
// text of every group that matched is replaced by REDACTED (the key stays, so
// the log still says *what* was set); without groups, the whole match is.

export const REDACTED = '***';

// A value: a quoted string, or a run of characters that cannot end a shell word.
const VALUE = String.raw`("[^"]*"|'[^']*'|[^\s"'&;|)]+)`;
const SECRET_KEY = String.raw`[\w.-]*(?:password|passwd|passphrase|passin|passout|secret|token|api[_-]?key|apikey|credential)[\w.-]*`;

export const REDACT_PRESETS = {
  /** key=value, key: value, --key value (keys naming a password, secret, token, API key), mysql -pXXX, sshpass -p XXX, curl -u user:XXX */
  password: [
    new RegExp(String.raw`${SECRET_KEY}["']?\s*[=:]\s*${VALUE}`, 'i'),
    new RegExp(String.raw`(?:^|\s)--?${SECRET_KEY}\s+("[^"]*"|'[^']*'|[^\s"'&;|)-][^\s"'&;|)]*)`, 'i'),
    new RegExp(String.raw`\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^|;&]*?\s-p([^\s"'&;|]+)`),
    new RegExp(String.raw`\bsshpass\s+-p\s*${VALUE}`),
    new RegExp(String.raw`\b(?:curl|wget)\b[^|;&]*?\s(?:-u|--user|--http-user)(?:\s*|=)["']?[^\s:"']+:([^\s"'&;|]+)`),
  ],
  /** HTTP credential headers: Authorization: Bearer XXX, X-Api-Key: XXX, ... */
  authorization: [
    new RegExp(
      String.raw`\b(?:proxy-)?authorization\s*:\s*(?:(?:bearer|basic|token|bot|negotiate|apikey|digest)\s+)?([^\s"'][^"'\n]*)`,
      'i',
    ),
    new RegExp(String.raw`\b(?:x-api-key|api-key|x-auth-token|private-token|x-vault-token)\s*:\s*([^\s"'][^"'\n]*)`, 'i'),
  ],
  /** AWS_SECRET_ACCESS_KEY=XXX, AWS_SESSION_TOKEN=XXX, aws configure set aws_secret_access_key XXX */
  aws: [new RegExp(String.raw`\b(?:aws_secret_access_key|aws_session_token|aws_security_token)\b["']?(?:\s*[=:]\s*|\s+)${VALUE}`, 'i')],
  /** scheme://user:XXX@host */
  url: [new RegExp(String.raw`\b[a-z][a-z0-9+.-]*://[^\s/:@"']+:([^\s/@"']+)@`, 'i')],
} as const satisfies Record<string, readonly RegExp[]>;

export type RedactPreset = keyof typeof REDACT_PRESETS;
export const REDACT_PRESET_NAMES = Object.keys(REDACT_PRESETS) as RedactPreset[];

/**
 * Preset names from one flag value or conf entry: `all` expands to every
 * preset, `none` clears the list given so far. Throws on an unknown name
 * (the message lists the valid ones).
 */
export function parseRedactPresets(items: string[]): RedactPreset[] | { unknown: string } {
  let out: RedactPreset[] = [];
  for (const raw of items) {
    const name = raw.trim().toLowerCase();
    if (name === '') continue;
    if (name === 'none' || name === 'off') out = [];
    else if (name === 'all') out = [...REDACT_PRESET_NAMES];
    else if ((REDACT_PRESET_NAMES as string[]).includes(name)) {
      if (!out.includes(name as RedactPreset)) out.push(name as RedactPreset);
    } else return { unknown: raw };
  }
  return out;
}

/** A user's rule: `pattern` or `/pattern/flags` (flags i, m, s, u). */
export function compileRedactRegex(text: string): RegExp {
  const m = /^\/(.*)\/([imsu]*)$/s.exec(text);
  const source = m ? m[1]! : text;
  const flags = m ? m[2]! : '';
  if (source === '') throw new Error('empty pattern');
  const re = new RegExp(source, flags); // throws SyntaxError with the reason
  if (re.test('')) throw new Error('the pattern matches the empty string, so it would mask nothing useful');
  return re;
}

export class Redactor {
  private readonly rules: RegExp[];

  constructor(presets: readonly RedactPreset[], regexes: readonly string[] = []) {
    const all = [...presets.flatMap((p) => REDACT_PRESETS[p]), ...regexes.map(compileRedactRegex)];
    // `d` gives the offsets of every group; `g` walks every match.
    this.rules = all.map((re) => new RegExp(re.source, `${re.flags.replace(/[gd]/g, '')}gd`));
  }

  get enabled(): boolean {
    return this.rules.length > 0;
  }

  apply(text: string): string {
    let out = text;
    for (const re of this.rules) out = maskMatches(out, re);
    return out;
  }
}

function maskMatches(text: string, re: RegExp): string {
  const spans: [number, number][] = [];
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0] === '') {
      re.lastIndex++;
      continue;
    }
    const idx = m.indices!;
    if (idx.length > 1) {
      for (let g = 1; g < idx.length; g++) {
        const span = idx[g];
        if (span && span[1] > span[0]) spans.push([span[0], span[1]]);
      }
    } else {
      spans.push([idx[0]![0], idx[0]![1]]);
    }
  }
  if (spans.length === 0) return text;
  spans.sort((a, b) => a[0] - b[0]);
  let out = '';
  let pos = 0;
  for (const [s, e] of spans) {
    if (e <= pos) continue; // inside a span already masked
    out += text.slice(pos, Math.max(s, pos)) + REDACTED;
    pos = e;
  }
  return out + text.slice(pos);
}
