// uid -> user name for bash lines. Upstream looked up the GID and reported the
// full name (GECOS); we report the login name of the uid.
//
// /etc/passwd is parsed once and kept; it is read again when it changes
// (checked at most once a second, and at once on a miss, so a user created
// after start-up resolves on their first command). A uid it does not know may
// come from NSS (LDAP, SSSD): `getent passwd` answers those, cached for a
// while so a burst of lines costs one lookup. Without any answer the uid
// itself is the name.
import { execFile } from 'node:child_process';
import fs from 'node:fs';

export interface UserNamesOptions {
  passwdPath?: string;
  /** Asks the system's name service about a uid; undefined = unknown. */
  lookup?: (uid: number) => Promise<string | undefined>;
  /** Milliseconds clock (tests). */
  now?: () => number;
}

const STAT_EVERY_MS = 1000;
const NSS_HIT_TTL_MS = 10 * 60_000;
const NSS_MISS_TTL_MS = 30_000;
const GETENT_TIMEOUT_MS = 2000;

/** Login names by uid from passwd(5) text; the first entry of a uid wins, as getpwuid does. */
export function parsePasswd(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const f = line.split(':');
    if (f.length < 3 || f[0] === '') continue;
    const uid = Number(f[2]);
    if (!Number.isInteger(uid) || uid < 0 || f[2]!.trim() === '') continue;
    if (!out.has(uid)) out.set(uid, f[0]!);
  }
  return out;
}

/** `getent passwd <uid>`: the login name, or undefined. Never rejects. */
export function getentUser(uid: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('getent', ['passwd', String(uid)], { timeout: GETENT_TIMEOUT_MS }, (err, stdout) => {
      if (err) return resolve(undefined);
      const name = stdout.split('\n')[0]?.split(':')[0];
      resolve(name ? name : undefined);
    });
  });
}

export class UserNames {
  private readonly passwdPath: string;
  private readonly lookup: (uid: number) => Promise<string | undefined>;
  private readonly now: () => number;
  private byUid = new Map<number, string>();
  /** Identity of the passwd file last read: inode, size and mtime. */
  private version = '';
  private checkedAt = -Infinity;
  private readonly nss = new Map<number, { name: string | undefined; until: number }>();

  constructor(opts: UserNamesOptions = {}) {
    this.passwdPath = opts.passwdPath ?? '/etc/passwd';
    this.lookup = opts.lookup ?? getentUser;
    this.now = opts.now ?? Date.now;
  }

  /** The login name of `uid`, else its number. Never rejects. */
  async name(uid: number): Promise<string> {
    if (this.now() - this.checkedAt >= STAT_EVERY_MS) this.reloadIfChanged();
    let name = this.byUid.get(uid);
    if (name === undefined) {
      this.reloadIfChanged();
      name = this.byUid.get(uid);
    }
    if (name !== undefined) return name;

    const cached = this.nss.get(uid);
    if (cached && cached.until > this.now()) return cached.name ?? String(uid);
    const found = await this.lookup(uid).catch(() => undefined);
    this.nss.set(uid, { name: found, until: this.now() + (found ? NSS_HIT_TTL_MS : NSS_MISS_TTL_MS) });
    return found ?? String(uid);
  }

  private reloadIfChanged(): void {
    this.checkedAt = this.now();
    let version: string;
    try {
      const st = fs.statSync(this.passwdPath, { bigint: true });
      version = `${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      version = 'missing';
    }
    if (version === this.version) return;
    this.version = version;
    try {
      this.byUid = parsePasswd(fs.readFileSync(this.passwdPath, 'utf8'));
    } catch {
      this.byUid = new Map();
    }
    // Names NSS gave may now be in the file, or renamed: ask again.
    this.nss.clear();
  }
}
