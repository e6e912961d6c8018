// ebpf-bash without the kernel: the DKE_FRAME_BASH_LINES decoder (records
// built by the layout generated from bpf/bash.h), user names, redaction, and
// the points upstream's consumers expect.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bashMessage, bashPoint, formatRfc3339, toEntries, type BashEntry, type Clocks } from '../../src/bash/log';
import { BashOrigins, decodeBashOrigins } from '../../src/bash/origins';
import { completeUtf8End, decodeBashLines, type BashLineRecord } from '../../src/bash/record';
import { compileRedactRegex, REDACTED, Redactor } from '../../src/bash/redact';
import { parsePasswd, UserNames } from '../../src/bash/users';
import { encodePoint } from '../../src/lineproto/encode';
import { DKE_BASH_LINE_MAX, DKE_FRAME_BASH_LINES, DKE_FRAME_BASH_ORIGINS, dke_bash_line, dke_bash_origin } from '../../src/loader/layout.generated';
import { bashLine, bashLinesFrame, bashOriginsFrame } from '../helpers/records';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-bash-unit-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('bash line frames', () => {
  it('decode every record of a frame, ignoring the stale bytes after the NUL', () => {
    const frame = bashLinesFrame(
      { ktimeNs: 123_456_789n, pid: 4242, uid: 0, bytes: 'ls -la /tmp' },
      { ktimeNs: 2n ** 63n + 5n, pid: 7, uid: 4_000_000_000, bytes: 'echo héllo 世界 🙂' },
      { ktimeNs: 3n, pid: 8, uid: 1, bytes: '' },
    );
    expect(decodeBashLines(frame)).toEqual<BashLineRecord[]>([
      { ktimeNs: 123_456_789n, pid: 4242, uid: 0, line: 'ls -la /tmp', truncated: false },
      { ktimeNs: 2n ** 63n + 5n, pid: 7, uid: 4_000_000_000, line: 'echo héllo 世界 🙂', truncated: false },
      { ktimeNs: 3n, pid: 8, uid: 1, line: '', truncated: false },
    ]);
    expect(decodeBashLines(bashLinesFrame())).toEqual([]);
  });

  it('refuse a frame that is not whole records', () => {
    const rec = bashLine({ pid: 1, uid: 0, bytes: 'ls' });
    const frame = { type: DKE_FRAME_BASH_LINES, count: 1, payload: Buffer.concat([rec, Buffer.alloc(1)]) };
    expect(() => decodeBashLines(frame)).toThrow(`holds ${dke_bash_line.size + 1} bytes, not 1 records of ${dke_bash_line.size}`);
  });

  it('never read past the line field when len is larger than the kernel limit', () => {
    const bytes = Buffer.from('y'.repeat(DKE_BASH_LINE_MAX));
    const [r] = decodeBashLines(bashLinesFrame({ pid: 1, uid: 0, bytes, len: 0xffffffff }));
    expect(r!.line).toBe('y'.repeat(DKE_BASH_LINE_MAX));
  });

  it('drop a character cut in half at the kernel limit of a truncated line', () => {
    // 4094 ASCII bytes + the first 2 bytes of a 4-byte emoji = the 4096 bytes kept.
    const emoji = Buffer.from('🙂');
    const bytes = Buffer.concat([Buffer.from('x'.repeat(DKE_BASH_LINE_MAX - 2)), emoji.subarray(0, 2)]);
    const [r] = decodeBashLines(bashLinesFrame({ pid: 1, uid: 0, bytes, truncated: true }));
    expect(r!.truncated).toBe(true);
    expect(r!.line).toBe('x'.repeat(DKE_BASH_LINE_MAX - 2));
    // Complete characters at the limit are kept.
    const whole = Buffer.concat([Buffer.from('x'.repeat(DKE_BASH_LINE_MAX - 4)), emoji]);
    expect(decodeBashLines(bashLinesFrame({ pid: 1, uid: 0, bytes: whole, truncated: true }))[0]!.line).toBe(`${'x'.repeat(DKE_BASH_LINE_MAX - 4)}🙂`);
  });

  it.each([
    ['ascii', 'abc', 3],
    ['complete 2-byte', 'aé', 3],
    ['cut 2-byte', Buffer.from('aé').subarray(0, 2), 1],
    ['cut 3-byte after 1', Buffer.from('a世').subarray(0, 2), 1],
    ['cut 3-byte after 2', Buffer.from('a世').subarray(0, 3), 1],
    ['complete 4-byte', 'a🙂', 5],
    ['cut 4-byte after 3', Buffer.from('a🙂').subarray(0, 4), 1],
  ])('completeUtf8End: %s', (_name, input, want) => {
    const b = Buffer.isBuffer(input) ? input : Buffer.from(input);
    expect(completeUtf8End(b, 0, b.length)).toBe(want);
  });
});

describe('user names', () => {
  const passwd = path.join(tmp, 'passwd');

  it('parse passwd(5): login names, the first entry of a uid, no NIS or comment lines', () => {
    const m = parsePasswd('root:x:0:0:root:/root:/bin/bash\n# c\ntoor:x:0:0::/:/bin/sh\n+nis::::::\nalice:x:1000:1000:Alice Liddell,,,:/home/alice:/bin/bash\nbad:x::1:::\n\n');
    expect([...m]).toEqual([
      [0, 'root'],
      [1000, 'alice'],
    ]);
  });

  it('report the uid\'s login name (not the GID, not the full name) and pick up users added later', async () => {
    fs.writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:2000:Alice Liddell:/home/alice:/bin/bash\n');
    let now = 0;
    const asked: number[] = [];
    const users = new UserNames({ passwdPath: passwd, now: () => now, lookup: async (uid) => (asked.push(uid), undefined) });
    expect(await users.name(1000)).toBe('alice');
    expect(await users.name(0)).toBe('root');
    // Created after start-up: a miss re-reads the changed file at once.
    fs.appendFileSync(passwd, 'bob:x:1001:1001::/home/bob:/bin/bash\n');
    expect(await users.name(1001)).toBe('bob');
    // Renamed: seen within a second without any miss.
    fs.writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\nalice2:x:1000:2000::/:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n');
    now += 1500;
    expect(await users.name(1000)).toBe('alice2');
    expect(asked).toEqual([]);
  });

  it('ask NSS about uids the file does not know, cache the answer, fall back to the number', async () => {
    fs.writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\n');
    let now = 0;
    const asked: number[] = [];
    const users = new UserNames({
      passwdPath: passwd,
      now: () => now,
      lookup: async (uid) => {
        asked.push(uid);
        return uid === 5000 ? 'ldapuser' : undefined;
      },
    });
    expect(await users.name(5000)).toBe('ldapuser');
    expect(await users.name(5000)).toBe('ldapuser');
    expect(await users.name(6000)).toBe('6000');
    expect(await users.name(6000)).toBe('6000');
    expect(asked).toEqual([5000, 6000]);
    now += 60_000; // the negative answer expired
    expect(await users.name(6000)).toBe('6000');
    expect(asked).toEqual([5000, 6000, 6000]);
  });

  it('survive a missing passwd file and a failing lookup', async () => {
    const users = new UserNames({ passwdPath: path.join(tmp, 'nope'), lookup: () => Promise.reject(new Error('boom')) });
    expect(await users.name(0)).toBe('0');
  });
});

describe('redaction', () => {
  const all = new Redactor(['password', 'authorization', 'aws', 'url']);
  it.each([
    ['echo password=hunter2', 'echo password=***'],
    ['mysql --password=S3cr3t -u root', 'mysql --password=*** -u root'],
    ["export PGPASSWORD='pa ss'", 'export PGPASSWORD=***'],
    ['cli --api-key abc123 --verbose', 'cli --api-key *** --verbose'],
    ['docker login --password-stdin -u me', 'docker login --password-stdin -u me'],
    ['mysql -uroot -pS3cr3t db', 'mysql -uroot -p*** db'],
    ['mkdir -p /tmp/x', 'mkdir -p /tmp/x'],
    ['sshpass -p hunter2 ssh host', 'sshpass -p *** ssh host'],
    ['curl -u admin:hunter2 http://h/', 'curl -u admin:*** http://h/'],
    ['docker run -u 1000:1000 img', 'docker run -u 1000:1000 img'],
    ['curl -d \'{"password": "x y"}\' http://h/', 'curl -d \'{"password": ***}\' http://h/'],
    ['curl -H "Authorization: Bearer eyJhbGciOi.J9" https://api/', 'curl -H "Authorization: Bearer ***" https://api/'],
    ["curl -H 'authorization: Basic dXNlcjpwYXNz' x", "curl -H 'authorization: Basic ***' x"],
    ['curl -H "X-Api-Key: k-123" x', 'curl -H "X-Api-Key: ***" x'],
    ['export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE', 'export AWS_SECRET_ACCESS_KEY=*** AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE'],
    ['aws configure set aws_secret_access_key wJalrXUtnFEMI', 'aws configure set aws_secret_access_key ***'],
    ['git clone https://me:ghp_tok3n@github.com/o/r.git', 'git clone https://me:***@github.com/o/r.git'],
    ['ls -la && cd /var/log', 'ls -la && cd /var/log'],
  ])('%s', (input, want) => {
    expect(all.apply(input)).toBe(want);
  });

  it('applies only the presets asked for', () => {
    const aws = new Redactor(['aws']);
    expect(aws.apply('AWS_SECRET_ACCESS_KEY=abc password=x')).toBe('AWS_SECRET_ACCESS_KEY=*** password=x');
    expect(new Redactor([]).enabled).toBe(false);
    expect(new Redactor([]).apply('password=x')).toBe('password=x');
  });

  it('masks capture groups of a user pattern, or the whole match without groups; /re/i sets flags', () => {
    expect(new Redactor([], ['pin=(\\d+)']).apply('unlock pin=1234 pin=99')).toBe('unlock pin=*** pin=***');
    expect(new Redactor([], ['tok-[a-z0-9]+']).apply('use tok-ab12 now')).toBe(`use ${REDACTED} now`);
    expect(new Redactor([], ['/PIN=(\\d+)/i']).apply('pin=42')).toBe('pin=***');
    expect(new Redactor([], ['(a)|(b)']).apply('xaybz')).toBe('x***y***z');
  });

  it('refuses patterns that cannot work', () => {
    expect(() => compileRedactRegex('(')).toThrow();
    expect(() => compileRedactRegex('a*')).toThrow(/empty string/);
    expect(() => compileRedactRegex('//')).toThrow(/empty pattern/);
  });
});

describe('bash points', () => {
  const entry: BashEntry = { timeNs: 1_764_000_000_123_456_789n, pid: 4242, user: 'alice', cmd: 'echo "hi" \\ there', truncated: false };

  it('format the time as Go\'s RFC3339 in local time', () => {
    const d = new Date(2025, 0, 2, 3, 4, 5, 678);
    const off = -d.getTimezoneOffset();
    const zone = off === 0 ? 'Z' : `${off > 0 ? '+' : '-'}${String(Math.floor(Math.abs(off) / 60)).padStart(2, '0')}:${String(Math.abs(off) % 60).padStart(2, '0')}`;
    expect(formatRfc3339(d)).toBe(`2025-01-02T03:04:05${zone}`);
  });

  it('carry upstream\'s fields and message, plus status and source', () => {
    const p = bashPoint(entry, { host: 'h1', service: 'ebpf', team: 'ops' });
    expect(p).toEqual({
      measurement: 'bash',
      tags: { host: 'h1', service: 'ebpf', team: 'ops', source: 'bash' },
      fields: {
        pid: '4242',
        user: 'alice',
        cmd: 'echo "hi" \\ there',
        message: `${formatRfc3339(new Date(1_764_000_000_123))} pid:\`4242\` user:\`alice\` cmd:\`echo "hi" \\ there\``,
        status: 'info',
      },
      timestampNs: entry.timeNs,
    });
    expect(encodePoint(p)).toContain('cmd="echo \\"hi\\" \\\\ there"');
  });

  it('flag a truncated command', () => {
    expect(bashPoint({ ...entry, truncated: true }, {}).fields.cmd_truncated).toBe(true);
    expect(bashMessage({ ...entry, cmd: 'ls' })).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) pid:`4242` user:`alice` cmd:`ls`$/);
  });

  it('are built from records: wall time from the monotonic clock, user name, redacted command, blank lines dropped', async () => {
    const clocks: Clocks = { wallNs: () => 1_000_000_000_000n, monoNs: () => 5_000n };
    const passwd = path.join(tmp, 'passwd-points');
    fs.writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\n');
    const users = new UserNames({ passwdPath: passwd, lookup: async () => undefined });
    const records: BashLineRecord[] = [
      { ktimeNs: 4_000n, pid: 1, uid: 0, line: 'export TOKEN=abc', truncated: false },
      { ktimeNs: 4_500n, pid: 1, uid: 0, line: '   ', truncated: false },
      { ktimeNs: 4_900n, pid: 2, uid: 77, line: 'ls', truncated: true },
    ];
    expect(await toEntries(records, users, new Redactor(['password']), new BashOrigins(), clocks)).toEqual<BashEntry[]>([
      { timeNs: 999_999_999_000n, pid: 1, user: 'root', cmd: 'export TOKEN=***', truncated: false },
      { timeNs: 999_999_999_900n, pid: 2, user: '77', cmd: 'ls', truncated: true },
    ]);
  });
});

describe('shells in containers', () => {
  const ID = 'c0ffee'.repeat(10) + 'beef';
  const clocks: Clocks = { wallNs: () => 1_000_000_000_000n, monoNs: () => 0n };

  it('decode origin frames: names and ids end at their NUL or at the field\'s end', () => {
    const longest = 'u'.repeat(dke_bash_origin.fields.user.size);
    expect(decodeBashOrigins(bashOriginsFrame({ pid: 7, uid: 4242, user: 'ctruser', containerId: ID }, { pid: 8, uid: 1, user: longest }, { pid: 7, uid: 4242 }))).toEqual([
      { pid: 7, uid: 4242, user: 'ctruser', containerId: ID },
      { pid: 8, uid: 1, user: longest, containerId: '' },
      { pid: 7, uid: 4242, user: '', containerId: '' },
    ]);
    const rec = bashOriginsFrame({ pid: 1, uid: 0 }).payload;
    expect(() => decodeBashOrigins({ type: DKE_FRAME_BASH_ORIGINS, count: 2, payload: rec })).toThrow(`not 2 records of ${dke_bash_origin.size}`);
  });

  it('name a container shell\'s user as its image does, tag its container, and leave host shells as they were', async () => {
    const passwd = path.join(tmp, 'passwd-containers');
    fs.writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\nhostuser:x:4242:4242::/:/bin/sh\n');
    const users = new UserNames({ passwdPath: passwd, lookup: async () => undefined });
    const origins = new BashOrigins();
    origins.apply(decodeBashOrigins(bashOriginsFrame({ pid: 10, uid: 4242, user: 'ctruser', containerId: ID }, { pid: 11, uid: 0, containerId: ID })));
    const lines: BashLineRecord[] = [
      { ktimeNs: 1n, pid: 10, uid: 4242, line: 'ls', truncated: false },
      { ktimeNs: 2n, pid: 11, uid: 0, line: 'id', truncated: false }, // a container without its own name for root: the host's
      { ktimeNs: 3n, pid: 12, uid: 4242, line: 'pwd', truncated: false }, // a host shell
      { ktimeNs: 4n, pid: 10, uid: 0, line: 'whoami', truncated: false }, // a uid the origin does not name
    ];
    const entries = await toEntries(lines, users, new Redactor([]), origins, clocks);
    expect(entries.map((e) => [e.pid, e.user, e.containerId])).toEqual([
      [10, 'ctruser', ID],
      [11, 'root', ID],
      [12, 'hostuser', undefined],
      [10, 'root', ID],
    ]);
    expect(bashPoint(entries[0]!, { host: 'h' }).tags).toEqual({ host: 'h', source: 'bash', container_id: ID });
    expect(bashPoint(entries[0]!, { host: 'h' }).fields.message).toMatch(/ user:`ctruser` cmd:`ls`$/);
    expect(bashPoint(entries[2]!, { host: 'h' }).tags).toEqual({ host: 'h', source: 'bash' });

    // The shell exited: an empty origin ends it, and a new shell with that pid is a host shell again.
    origins.apply(decodeBashOrigins(bashOriginsFrame({ pid: 10, uid: 4242 })));
    expect(origins.size).toBe(1);
    const [again] = await toEntries([{ ktimeNs: 5n, pid: 10, uid: 4242, line: 'ls', truncated: false }], users, new Redactor([]), origins, clocks);
    expect(again).toEqual({ timeNs: 1_000_000_000_005n, pid: 10, user: 'hostuser', cmd: 'ls', truncated: false });
    origins.clear();
    expect(origins.get(11)).toBeUndefined();
  });
});
