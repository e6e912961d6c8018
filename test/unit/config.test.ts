import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { flagNotImplementedWarning, packageVersion, parseCommandLine, ParsedCommand } from '../../src/config/cli';
import { readEbpfConf } from '../../src/config/ebpfconf';
import { flagsMarkdown, flagsMarkdownIn } from '../../src/config/help';
import { ALL_OPTIONS, BY_FLAG, BY_KEY } from '../../src/config/options';
import { CollectorConfig } from '../../src/config/types';
import { goDurationNs } from '../../src/config/values';
import { CollectorError } from '../../src/errors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dk-ebpf-config-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let fileNo = 0;
function confFile(text: string): string {
  const p = path.join(tmp, `ebpf-${++fileNo}.conf`);
  fs.writeFileSync(p, text);
  return p;
}

const NO_ENV: NodeJS.ProcessEnv = {};

function run(argv: string[], env: NodeJS.ProcessEnv = NO_ENV): CollectorConfig {
  const r = parseCommandLine(argv, env);
  if (r.kind !== 'run') throw new Error(`expected run, got exit: ${r.output}`);
  return r.config;
}

function failure(fn: () => unknown): CollectorError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CollectorError);
    return err as CollectorError;
  }
  throw new Error('expected a CollectorError');
}

function invalid(argv: string[], env: NodeJS.ProcessEnv = NO_ENV): string {
  const e = failure(() => parseCommandLine(argv, env));
  expect(e.code).toBe('CONFIG_INVALID');
  expect(e.message).not.toContain('\n');
  return e.message;
}

describe('defaults', () => {
  it('match upstream datakit-ebpf', () => {
    const c = run([]);
    expect(c).toEqual({
      datakitApiServer: 'http://0.0.0.0:9529',
      datakitConnectUrl: 'http://127.0.0.1:9529',
      hostname: os.hostname(),
      intervalMs: 60_000,
      log: '/usr/local/datakit/externals/datakit-ebpf.log',
      logLevel: 'info',
      service: 'ebpf',
      tags: {},
      enabled: ['ebpf-net'],
      ephemeralPort: 0,
      maxFlows: 10_000,
      orphanTimeoutMs: 600_000,
      ipv6Disabled: false,
      includeLoopback: false,
      dnsPorts: [53],
      dnsTimeoutMs: 6000,
      bashPaths: [],
      bashRedact: [],
      bashRedactRegex: [],
      l7netEnabled: [],
      stateDir: '/usr/local/datakit/externals/datakit-ebpf.state',
      spoolMaxBytes: 256 * 1024 * 1024,
      gzip: true,
      dryRun: false,
      pinRoot: '/sys/fs/bpf/datakit-ebpf',
      uploadTimeoutMs: 10_000,
      warnings: [],
    });
  });

  it('are the same with the run subcommand', () => {
    expect(run(['run'])).toEqual(run([]));
  });
});

describe('command forms', () => {
  it('accepts `run [flags]` and the flat older form alike', () => {
    const flags = ['--hostname', 'h1', '--interval', '10s', '--enabled', 'ebpf-net,ebpf-bash'];
    const a = run(['run', ...flags]);
    const b = run(flags);
    expect(a).toEqual(b);
    expect(a.hostname).toBe('h1');
    expect(a.intervalMs).toBe(10_000);
    expect(a.enabled).toEqual(['ebpf-net', 'ebpf-bash']);
  });

  it('accepts --flag=value', () => {
    const c = run(['--hostname=h2', '--interval=2m', '--log-level=DEBUG', '--tags=a=1']);
    expect(c.hostname).toBe('h2');
    expect(c.intervalMs).toBe(120_000);
    expect(c.logLevel).toBe('debug');
    expect(c.tags).toEqual({ a: '1' });
  });
});

describe('DataKit quirks', () => {
  const UNIMPLEMENTED = ['--l7net-enabled', '--netlog-metric', '--res-net', '--trace-allprocess'];

  it('accepts the full command line DataKit builds', () => {
    const c = run([
      'run',
      '--datakit-apiserver', '0.0.0.0:9529',
      '--hostname', 'H',
      '--enabled', 'ebpf-net',
      '--l7net-enabled', 'httpflow',
      '--pprof-host', '127.0.0.1',
      '--pprof-port', '6061',
      '--netlog-metric',
      '--res-net',
      '--trace-allprocess',
      '--tags', 'a=1;b=2',
    ]);
    expect(c.tags).toEqual({ a: '1', b: '2' });
    expect(c.hostname).toBe('H');
    expect(c.enabled).toEqual(['ebpf-net']);
    expect(c.datakitApiServer).toBe('http://0.0.0.0:9529');
    expect(c.l7netEnabled).toEqual(['httpflow']);
    expect(c.pprofHost).toBe('127.0.0.1');
    expect(c.pprofPort).toBe(6061);
    expect(c.warnings).toEqual(UNIMPLEMENTED.map(flagNotImplementedWarning));
    expect(c.warnings[0]).toBe('flag --l7net-enabled is accepted for DataKit compatibility but not implemented; ignored');
  });

  it('accepts boolean compat flags with or without a value', () => {
    const c = run(['--trace-allprocess', 'true', '--res-net', '--hostname', 'x', '--netlog-metric=false', '--res-net', '10Mi']);
    expect(c.hostname).toBe('x');
    expect(c.warnings).toEqual([
      flagNotImplementedWarning('--trace-allprocess'),
      flagNotImplementedWarning('--res-net'),
      flagNotImplementedWarning('--netlog-metric'),
    ]);
  });

  it('accepts every listed DataKit flag with one warning each and never throws', () => {
    const flags = [
      '--l7net-enabled', '--netlog-metric', '--netlog-blacklist', '--trace-server',
      '--trace-allprocess', '--trace-name-blacklist', '--trace-name-whitelist', '--trace-env-blacklist',
      '--trace-env-whitelist', '--trace-port-blacklist', '--trace-port-whitelist', '--res-net', '--res-cpu', '--res-mem',
      '--res-bandwidth', '--res-pid', '--res-net-host', '--sampling-rate', '--sampling-rate-pts-per-min',
      '--workload-labels', '--workload-label-prefix', '--apm-trace', '--k8s-info', '--ebpf-trace', '--bpf-net-l4log',
      '--bpf-net-l7log',
    ];
    const bare = run(flags);
    expect(bare.warnings).toEqual(flags.map(flagNotImplementedWarning));
    const valued = run(flags.flatMap((f) => [f, 'x']));
    expect(valued.warnings).toEqual(flags.map(flagNotImplementedWarning));
    const repeated = run([...flags, ...flags]);
    expect(repeated.warnings).toHaveLength(flags.length);
  });

  it('treats flags it has never heard of as warnings and keeps parsing after them', () => {
    const c = run(['--brand-new', 'v', '--hostname', 'h', '--other-new', '--interval', '5s', '--x=y', '-q']);
    expect(c.hostname).toBe('h');
    expect(c.intervalMs).toBe(5000);
    // Four unknown flags, then the note on the 5 s interval (issue 13).
    expect(c.warnings).toHaveLength(5);
    expect(c.warnings[0]).toMatch(/^unknown flag --brand-new ignored/);
    expect(c.warnings[2]).toMatch(/^unknown flag --x ignored/);
    expect(c.warnings[3]).toMatch(/^unknown flag -q ignored/);
    expect(c.warnings[4]).toMatch(/^--interval 5s sends 12x the points/);
  });

  it('reads --ephemeral_port (DataKit spelling) and --ephemeral-port, last one winning', () => {
    expect(run(['--ephemeral_port', '10001']).ephemeralPort).toBe(10001);
    expect(run(['--ephemeral-port', '10001']).ephemeralPort).toBe(10001);
    expect(run(['--ephemeral-port', '1', '--ephemeral_port', '2']).ephemeralPort).toBe(2);
    expect(run(['--ephemeral_port', '2', '--ephemeral-port=3']).ephemeralPort).toBe(3);
    expect(run(['--ephemeral_port=0']).ephemeralPort).toBe(0);
  });

  // Issue 13: upstream still reports IPv6 flows with it (it only skips IPv6
  // offset guessing); before, ours dropped all IPv6 traffic.
  it('takes --ipv6-disabled bare or with a value, and it changes nothing but a note', () => {
    const note = '--ipv6-disabled has no effect: IPv6 flows are still reported, as upstream does (it only skipped IPv6 offset guessing)';
    for (const argv of [['--ipv6-disabled'], ['--ipv6-disabled', '--hostname', 'h'], ['--ipv6-disabled=true']]) {
      const c = run(argv);
      expect(c.ipv6Disabled).toBe(false);
      expect(c.warnings).toEqual([note]);
    }
    for (const argv of [['--ipv6-disabled=false'], ['--ipv6-disabled', 'false']]) {
      expect(run(argv)).toMatchObject({ ipv6Disabled: false, warnings: [] });
    }
    expect(run(['--include-loopback']).includeLoopback).toBe(true);
  });

  it('accepts ebpf-bash, and drops DataKit-only plugins with a warning', () => {
    expect(run(['--enabled', 'ebpf-bash']).enabled).toEqual(['ebpf-bash']);
    const c = run(['--enabled', 'ebpf-net,ebpf-conntrack']);
    expect(c.enabled).toEqual(['ebpf-net']);
    expect(c.warnings).toEqual(['plugin ebpf-conntrack is accepted for DataKit compatibility but not implemented; ignored']);
  });

  it('repeats --enabled and splits on commas, without duplicates', () => {
    expect(run(['--enabled', 'ebpf-bash', '--enabled', 'ebpf-net, ebpf-bash']).enabled).toEqual(['ebpf-bash', 'ebpf-net']);
  });
});

describe('tags', () => {
  it('splits on ";" (DataKit) and "," (upstream), trimming spaces', () => {
    expect(run(['--tags', 'a=1;b=2']).tags).toEqual({ a: '1', b: '2' });
    expect(run(['--tags', 'a=1,b=2']).tags).toEqual({ a: '1', b: '2' });
    expect(run(['--tags', ' a = 1 ; b=2 , c=3;']).tags).toEqual({ a: '1', b: '2', c: '3' });
    expect(run(['--tags', 'url=http://x/?q=1']).tags).toEqual({ url: 'http://x/?q=1' });
    expect(run(['--tags', '']).tags).toEqual({});
  });

  it('merges repeated --tags, the later winning per key', () => {
    expect(run(['--tags', 'a=1;b=2', '--tags', 'b=3']).tags).toEqual({ a: '1', b: '3' });
  });

  it('names a pair without "="', () => {
    expect(invalid(['--tags', 'a=1;oops'])).toBe(
      '--tags "a=1;oops": pair "oops" has no "="; expected k=v pairs separated by ";" or ","',
    );
  });

  it('drops an empty value with a warning', () => {
    const c = run(['--tags', 'a=;b=2']);
    expect(c.tags).toEqual({ b: '2' });
    expect(c.warnings).toEqual(['tag "a" has an empty value; ignored']);
  });
});

describe('interval', () => {
  it.each([
    ['1s', 1000],
    ['60s', 60_000],
    ['1m', 60_000],
    ['1m30s', 90_000],
    ['2h', 7_200_000],
    ['1.5s', 1500],
    ['1500ms', 1500],
    ['1000000us', 1000],
    ['1000000000ns', 1000],
    ['24h', 86_400_000],
  ])('%s = %i ms', (text, ms) => {
    expect(run(['--interval', text]).intervalMs).toBe(ms);
  });

  it.each(['0.5s', '999ms', '0', '-1m', '60', 'abc', '1x', '', '.s', '1m s'])('rejects %j', (text) => {
    expect(invalid(['--interval', text])).toBe(
      `--interval ${JSON.stringify(text)}: expected a duration of at least 1s such as 10s or 1m`,
    );
  });

  it('rejects more than a day', () => {
    expect(invalid(['--interval', '25h'])).toBe('--interval "25h": expected a duration of at most 24h such as 10s or 1m');
  });

  it('follows Go for odd spellings', () => {
    expect(goDurationNs('1h2m3s4ms')).toBe(3_723_004_000_000);
    expect(goDurationNs('.5s')).toBe(5e8);
    expect(goDurationNs('1.s')).toBe(1e9);
    expect(goDurationNs('2µs')).toBe(2000);
  });
});

describe('API server address', () => {
  it.each([
    ['0.0.0.0:9529', 'http://0.0.0.0:9529', 'http://127.0.0.1:9529'],
    ['10.0.0.5:9529', 'http://10.0.0.5:9529', 'http://10.0.0.5:9529'],
    ['localhost:9529', 'http://localhost:9529', 'http://localhost:9529'],
    ['[::]:9529', 'http://[::]:9529', 'http://[::1]:9529'],
    ['[fe80::1]:9529', 'http://[fe80::1]:9529', 'http://[fe80::1]:9529'],
    ['http://dk.local:9529/', 'http://dk.local:9529', 'http://dk.local:9529'],
    ['https://0.0.0.0:9530', 'https://0.0.0.0:9530', 'https://127.0.0.1:9530'],
    ['HTTP://DK:9529', 'http://dk:9529', 'http://dk:9529'],
    // DataKit's token parameter (a console on another host): sent, masked in messages
    ['http://console:9530?token=s3cr%2Ft', 'http://console:9530?token=***', 'http://console:9530?token=s3cr%2Ft'],
  ])('%s', (raw, url, connect) => {
    const c = run(['--datakit-apiserver', raw]);
    expect(c.datakitApiServer).toBe(url);
    expect(c.datakitConnectUrl).toBe(connect);
  });

  it.each(['9529', 'dk', '::1:9529', 'ftp://dk:21', 'dk:0', 'dk:70000', 'http://dk:9529/?a=1', 'http://dk:9529/?token=a&a=1', 'http://dk:9529/?token=', 'http://dk:9529/?token=a&token=b', 'a b:1'])('rejects %j', (raw) => {
    expect(invalid(['--datakit-apiserver', raw])).toBe(
      `--datakit-apiserver ${JSON.stringify(raw)}: expected host:port, [ipv6]:port or an http(s):// URL such as 0.0.0.0:9529`,
    );
  });
});

describe('bad values give one-line messages', () => {
  it.each([
    [['--log-level', 'loud'], '--log-level "loud": expected one of trace, debug, info, warn, error, fatal'],
    [['--enabled', 'ebpf-net,ebpf-foo'], '--enabled "ebpf-net,ebpf-foo": unknown plugin "ebpf-foo"; expected a comma-separated list of ebpf-net, ebpf-bash'],
    [['--ephemeral-port', '70000'], '--ephemeral-port "70000": expected an integer port from 0 to 65535'],
    [['--ephemeral_port', '-1'], '--ephemeral_port "-1": expected an integer port from 0 to 65535'],
    [['--ipv6-disabled', 'maybe'], '--ipv6-disabled "maybe": expected true or false'],
    [['--service', ''], '--service "": expected a non-empty service name'],
    [['--log', ' '], '--log " ": expected a file path or stdout'],
    [['--interval'], '--interval: missing value; expected <duration> after it'],
  ])('%j', (argv, message) => {
    expect(invalid(argv)).toBe(message);
  });

  it('accepts every log level in any case', () => {
    for (const l of ['TRACE', 'debug', 'Info', 'warn', 'warning', 'error', 'fatal']) {
      expect(run(['--log-level', l]).logLevel).toBe(l.toLowerCase() === 'warning' ? 'warn' : l.toLowerCase());
    }
    expect(run(['--log', 'STDOUT']).log).toBe('stdout');
  });

  it('does not fail on a bad --pprof-port (DataKit passes it): the status endpoint is off', () => {
    const c = run(['--pprof-port', 'nope']);
    expect(c.pprofPort).toBeUndefined();
    expect(c.warnings).toHaveLength(1);
    expect(c.warnings[0]).toMatch(/--pprof-port.*nope.*\/metrics endpoint is off/);
  });

  it('reads the spool and upload settings', () => {
    const c = run(['--state-dir', '/tmp/x', '--spool-max-bytes', '64M', '--gzip=false']);
    expect(c).toMatchObject({ stateDir: '/tmp/x', spoolMaxBytes: 64 * 1024 * 1024, gzip: false });
    expect(() => run(['--spool-max-bytes', '10'])).toThrow(/--spool-max-bytes.*64K/);
  });
});

describe('precedence: flag > ebpf.conf > ENV_HOSTNAME > default', () => {
  const conf = confFile(`
[[inputs.ebpf]]
  daemon = true
  name = 'ebpf'
  cmd = "/usr/local/datakit/externals/datakit-ebpf"
  args = ["--datakit-apiserver", "10.1.1.1:9529", "--hostname", "from-args", "--tags", "a=args;z=args", "--log-level", "debug"]
  envs = ["ENV_HOSTNAME=from-conf-env"]
  enabled_plugins = ["ebpf-bash"]
  ipv6_disabled = true
  interval = "30s"
  ephemeral_port = 10001
  [inputs.ebpf.tags]
    a = "conf"
    b = "conf"
`);
  const confNoHost = confFile(`
[[inputs.ebpf]]
  envs = ["ENV_HOSTNAME=from-conf-env"]
`);

  it('uses the conf (keys and args) over defaults', () => {
    const c = run(['--config', conf]);
    expect(c.configFile).toBe(conf);
    expect(c.hostname).toBe('from-args');
    expect(c.intervalMs).toBe(30_000);
    expect(c.enabled).toEqual(['ebpf-bash']);
    expect(c.ipv6Disabled).toBe(false); // accepted, no effect (issue 13)
    expect(c.warnings).toContain('ipv6_disabled has no effect: IPv6 flows are still reported, as upstream does (it only skipped IPv6 offset guessing)');
    expect(c.warnings).toContain('interval 30s sends 2x the points upstream\'s 60 s floor would; Guance bills per point');
    expect(c.ephemeralPort).toBe(10001);
    expect(c.logLevel).toBe('debug');
    expect(c.datakitApiServer).toBe('http://10.1.1.1:9529');
    expect(c.tags).toEqual({ a: 'conf', b: 'conf', z: 'args' });
  });

  it('lets command-line flags win over the conf', () => {
    const c = run(['run', '--config', conf, '--hostname', 'flag', '--interval', '5s', '--enabled', 'ebpf-net',
      '--ipv6-disabled=false', '--tags', 'b=flag;c=flag', '--ephemeral_port', '0']);
    expect(c.hostname).toBe('flag');
    expect(c.intervalMs).toBe(5000);
    expect(c.enabled).toEqual(['ebpf-net']);
    expect(c.ipv6Disabled).toBe(false);
    expect(c.ephemeralPort).toBe(0);
    expect(c.tags).toEqual({ a: 'conf', b: 'flag', c: 'flag', z: 'args' });
  });

  it('ranks conf keys over the flags in its args', () => {
    const p = confFile(`
[[inputs.ebpf]]
  args = ["--interval", "10s", "--enabled", "ebpf-net", "--ipv6-disabled"]
  interval = "20s"
  enabled_plugins = ["ebpf-bash"]
  ipv6_disabled = false
`);
    const c = run(['--config', p]);
    expect(c.intervalMs).toBe(20_000);
    expect(c.enabled).toEqual(['ebpf-bash']);
    expect(c.ipv6Disabled).toBe(false);
  });

  it('hostname: flag > conf args > conf envs ENV_HOSTNAME > process ENV_HOSTNAME > OS', () => {
    const env = { ENV_HOSTNAME: 'from-env' };
    expect(run(['--hostname', 'flag', '--config', conf], env).hostname).toBe('flag');
    expect(run(['--config', conf], env).hostname).toBe('from-args');
    expect(run(['--config', confNoHost], env).hostname).toBe('from-conf-env');
    expect(run([], env).hostname).toBe('from-env');
    expect(run([], { ENV_HOSTNAME: '  ' }).hostname).toBe(os.hostname());
    expect(run([], NO_ENV).hostname).toBe(os.hostname());
    expect(run(['--hostname', ''], env).hostname).toBe('from-env');
  });

  it('enabled falls back to ebpf-net when the conf list is empty', () => {
    const p = confFile('[[inputs.ebpf]]\n  enabled_plugins = []\n');
    expect(run(['--config', p]).enabled).toEqual(['ebpf-net']);
  });

  it('prefixes errors from the conf args with where they are', () => {
    const p = confFile('[[inputs.ebpf]]\n  daemon = true\n  args = ["--interval", "0.1s"]\n');
    expect(invalid(['--config', p])).toBe(
      `${p}:3: args: --interval "0.1s": expected a duration of at least 1s such as 10s or 1m`,
    );
  });

  it('ignores --config, --help and unknown flags inside conf args, with a warning', () => {
    const p = confFile('[[inputs.ebpf]]\n  args = ["--config", "/x", "--help", "--future-flag", "v", "--res-net"]\n');
    const c = run(['--config', p]);
    expect(c.warnings).toEqual([
      `flag --config in ${p}:2: args ignored`,
      `flag --help in ${p}:2: args ignored`,
      expect.stringMatching(/^unknown flag --future-flag ignored/),
      flagNotImplementedWarning('--res-net'),
    ]);
  });
});

describe('ebpf.conf', () => {
  it('parses the shipped sample', () => {
    const sample = path.join(__dirname, '../../conf.d/host/ebpf.conf');
    const conf = readEbpfConf(sample);
    expect(conf).toMatchObject({
      daemon: true,
      name: 'ebpf',
      cmd: '/usr/local/datakit/externals/datakit-ebpf',
      args: ['--datakit-apiserver', '0.0.0.0:9529'],
      envs: {},
      enabled: ['ebpf-net'],
      tags: {},
      warnings: [],
    });
    const c = run(['run', '--config', sample]);
    expect(c.datakitApiServer).toBe('http://0.0.0.0:9529');
    expect(c.warnings).toEqual([]);
  });

  it('reports a TOML syntax error as file:line:col', () => {
    const p = confFile('[[inputs.ebpf]]\n  daemon = true\n  name = = "x"\n');
    const e = failure(() => readEbpfConf(p));
    expect(e.code).toBe('CONFIG_FILE');
    expect(e.message).toMatch(new RegExp(`^${escape(p)}:3:10: Unexpected character`));
    expect(e.message).not.toContain('\n');
    expect(failure(() => run(['--config', p])).code).toBe('CONFIG_FILE');
  });

  it.each([
    ['interval = 5', 'interval', 'expected a duration string such as "60s"'],
    ['enabled_plugins = "ebpf-net"', 'enabled_plugins', 'expected an array of strings such as ["ebpf-net"]'],
    ['ipv6_disabled = "yes"', 'ipv6_disabled', 'expected true or false (without quotes)'],
    ['ephemeral_port = "10001"', 'ephemeral_port', 'expected an integer port from 0 to 65535'],
    ['args = "--hostname h"', 'args', 'expected an array of strings such as ["--datakit-apiserver", "0.0.0.0:9529"]'],
    ['envs = ["NOEQUALS"]', 'envs', null],
  ])('reports a wrong type with file:line and key: %s', (line, key, expected) => {
    const p = confFile(`# header\n[[inputs.ebpf]]\n  daemon = true\n  ${line}\n`);
    const e = failure(() => readEbpfConf(p));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toMatch(new RegExp(`^${escape(p)}:4: key "${key}"`));
    if (expected) expect(e.message).toBe(`${p}:4: key "${key}": ${expected}`);
  });

  it('reports a bad value with file:line, key and value', () => {
    const p = confFile('[[inputs.ebpf]]\n  interval = "0.5s"\n  enabled_plugins = ["ebpf-foo"]\n');
    expect(failure(() => readEbpfConf(p)).message).toBe(
      `${p}:2: key "interval" value "0.5s": expected a duration of at least 1s such as 10s or 1m`,
    );
    const q = confFile('[[inputs.ebpf]]\n  enabled_plugins = ["ebpf-foo"]\n');
    expect(failure(() => readEbpfConf(q)).message).toBe(
      `${q}:2: key "enabled_plugins" value "ebpf-foo": unknown plugin "ebpf-foo"; expected a comma-separated list of ebpf-net, ebpf-bash`,
    );
  });

  it('reports a non-string tag value at its line', () => {
    const p = confFile('[[inputs.ebpf]]\n  daemon = true\n  [inputs.ebpf.tags]\n    a = "1"\n    b = 2\n');
    expect(failure(() => readEbpfConf(p)).message).toBe(`${p}:5: key "b": expected a string value such as "some_value"`);
  });

  it('refuses more than one [[inputs.ebpf]] and a file without one', () => {
    const p = confFile('[[inputs.ebpf]]\n  daemon = true\n\n[[inputs.ebpf]]\n  daemon = true\n');
    const e = failure(() => readEbpfConf(p));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toBe(`${p}:4: more than one [[inputs.ebpf]] table; expected exactly one`);
    const q = confFile('[[inputs.cpu]]\n');
    expect(failure(() => readEbpfConf(q)).message).toMatch(/no \[\[inputs\.ebpf\]\] table/);
  });

  it('names the path and the OS error when the file cannot be read', () => {
    const p = path.join(tmp, 'missing.conf');
    const e = failure(() => run(['--config', p]));
    expect(e.code).toBe('CONFIG_FILE');
    expect(e.message).toContain(p);
    expect(e.message).toContain('ENOENT');
  });

  it('warns about unknown keys and DataKit keys it does not implement', () => {
    const p = confFile(`[[inputs.ebpf]]
  daemon = true
  colour = "blue"
  trace_server = ""
  trace_all_process = true
  l7net_enabled = ["httpflow"]
  pprof_port = "6061"
  ephemeral_port = -1
`);
    const conf = readEbpfConf(p);
    expect(conf.ephemeralPort).toBeUndefined();
    expect(conf.pprofPort).toBe(6061);
    expect(conf.l7netEnabled).toEqual(['httpflow']);
    expect(conf.warnings).toEqual([
      `${p}:3: unknown key "colour" in [[inputs.ebpf]]; ignored`,
      'ebpf.conf key trace_all_process is accepted for DataKit compatibility but not implemented; ignored',
      'ebpf.conf key l7net_enabled is accepted for DataKit compatibility but not implemented; ignored',
    ]);
  });

  it('accepts a single [inputs.ebpf] table and a BOM', () => {
    const p = confFile('\uFEFF[inputs.ebpf]\n  interval = "1m30s"\n  [inputs.ebpf.tags]\n    k = "v"\n');
    expect(readEbpfConf(p)).toMatchObject({ intervalMs: 90_000, tags: { k: 'v' } });
  });
});

describe('--help and --version', () => {
  function exit(argv: string[]): Extract<ParsedCommand, { kind: 'exit' }> {
    const r = parseCommandLine(argv, NO_ENV);
    if (r.kind !== 'exit') throw new Error('expected exit');
    return r;
  }

  it('prints the package version', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '../../package.json'), 'utf8')) as { version: string };
    expect(packageVersion()).toBe(pkg.version);
    expect(exit(['--version'])).toEqual({ kind: 'exit', code: 0, output: `datakit-ebpf ${pkg.version}\n` });
    expect(exit(['run', '--version']).output).toBe(`datakit-ebpf ${pkg.version}\n`);
  });

  it('prints grouped help', () => {
    for (const argv of [['--help'], ['-h'], ['run', '--help'], ['help'], ['--hostname', 'x', '--help']]) {
      const r = exit(argv);
      expect(r.code).toBe(0);
      expect(r.output).toContain('Usage: datakit-ebpf [run] [options]');
    }
    const out = exit(['--help']).output;
    const order = ['Sending to DataKit:', 'Tags on every point:', 'What to collect:', 'Logging:', 'Service, files and privileges:', 'Status endpoint:', 'Accepted for DataKit compatibility', 'Commands:'];
    const at = order.map((h) => out.indexOf(h));
    expect(at.every((i) => i >= 0)).toBe(true);
    expect([...at].sort((x, y) => x - y)).toEqual(at);
    for (const f of ['--datakit-apiserver', '--hostname', '--interval', '--log-level', '--tags', '--enabled', '--ephemeral-port', '--trace-allprocess', '--include-loopback']) {
      expect(out).toContain(f);
    }
    expect(out).not.toContain('--ephemeral_port <port>');
    expect(out).toContain('check-config <ebpf.conf>');
    // Each flag sits under the heading people look for it in.
    const under = (flag: string): string => {
      const before = out.slice(0, out.indexOf(`  ${flag} `));
      return order.filter((h) => before.includes(h)).at(-1) ?? '';
    };
    expect(under('--datakit-apiserver')).toBe('Sending to DataKit:');
    expect(under('--dry-run')).toBe('Sending to DataKit:');
    expect(under('--tags')).toBe('Tags on every point:');
    expect(under('--interval')).toBe('What to collect:');
    expect(under('--log-level')).toBe('Logging:');
    expect(under('--user')).toBe('Service, files and privileges:');
    expect(under('--pidfile')).toBe('Service, files and privileges:');
    expect(under('--pprof-port')).toBe('Status endpoint:');
  });
});

describe('operating flags', () => {
  it('--user: absent means the default, "" and root mean stay root', () => {
    expect(run([]).user).toBeUndefined();
    expect(run(['--user', 'nobody']).user).toBe('nobody');
    expect(run(['--user', '']).user).toBe('');
    expect(run(['--user=root']).user).toBe('root');
    const p = confFile('[[inputs.ebpf]]\n  args = ["--user", "daemon"]\n');
    expect(run(['--config', p]).user).toBe('daemon');
    expect(run(['--config', p, '--user', 'nobody']).user).toBe('nobody');
  });

  it('--dry-run and --datakit-apiserver stdout print instead of sending', () => {
    expect(run(['--dry-run']).dryRun).toBe(true);
    expect(run(['--dry-run=false']).dryRun).toBe(false);
    const c = run(['--datakit-apiserver', 'stdout']);
    expect(c.dryRun).toBe(true);
    expect(c.datakitApiServer).toBe('http://0.0.0.0:9529');
    expect(invalid(['--dry-run', 'maybe'])).toMatch(/--dry-run "maybe": expected true or false/);
  });

  it('puts the default log and state beside the installed launcher (DATAKIT_EBPF_EXTERNALS)', () => {
    const c = run([], { DATAKIT_EBPF_EXTERNALS: '/opt/dk/externals' });
    expect(c.log).toBe('/opt/dk/externals/datakit-ebpf.log');
    expect(c.stateDir).toBe('/opt/dk/externals/datakit-ebpf.state');
    expect(run(['--log', 'stdout'], { DATAKIT_EBPF_EXTERNALS: '/opt/dk/externals' }).log).toBe('stdout');
  });

  it('suggests the flag a misspelt one was probably meant to be', () => {
    expect(run(['--intervall', '10s']).warnings[0]).toMatch(/^unknown flag --intervall ignored \(did you mean --interval\?/);
    expect(run(['--brand-new']).warnings[0]).not.toContain('did you mean');
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('ebpf-bash settings', () => {
  it('takes --bash-path as a comma list, repeatable, without duplicates', () => {
    expect(run(['--bash-path', '/opt/bash,/usr/bin/bash', '--bash-path', '/opt/bash']).bashPaths).toEqual(['/opt/bash', '/usr/bin/bash']);
    expect(invalid(['--bash-path', ' , '])).toMatch(/--bash-path.*expected a path/);
  });

  it('expands redaction presets: all, none clears, repeats accumulate', () => {
    expect(run(['--bash-redact', 'password,aws']).bashRedact).toEqual(['password', 'aws']);
    expect(run(['--bash-redact', 'all']).bashRedact).toEqual(['password', 'authorization', 'aws', 'url']);
    expect(run(['--bash-redact', 'all', '--bash-redact', 'none,url']).bashRedact).toEqual(['url']);
    expect(run(['--bash-redact', 'AWS', '--bash-redact', 'aws']).bashRedact).toEqual(['aws']);
  });

  it('names an unknown preset and the valid ones', () => {
    expect(invalid(['--bash-redact', 'passwords'])).toBe(
      '--bash-redact "passwords": unknown redaction preset "passwords"; expected a comma-separated list of password, authorization, aws, url, all or none',
    );
  });

  it('keeps --bash-redact-regex patterns, one per flag, and refuses ones that do not compile or match nothing', () => {
    expect(run(['--bash-redact-regex', 'token-[a-z]{3,5}', '--bash-redact-regex', '/pin=(\\d+)/i']).bashRedactRegex).toEqual([
      'token-[a-z]{3,5}',
      '/pin=(\\d+)/i',
    ]);
    expect(invalid(['--bash-redact-regex', '(unclosed'])).toMatch(/^--bash-redact-regex "\(unclosed": not a usable regular expression \(.*\)/);
    expect(invalid(['--bash-redact-regex', 'x*'])).toMatch(/matches the empty string/);
  });

  it('reads bash_path, bash_redact and bash_redact_regex from ebpf.conf; flags win', () => {
    const p = confFile(`[[inputs.ebpf]]
  enabled_plugins = ["ebpf-net", "ebpf-bash"]
  bash_path = "/opt/bash"
  bash_redact = ["password", "authorization"]
  bash_redact_regex = ['secret-(\\w+)']
`);
    const c = run(['--config', p]);
    expect(c).toMatchObject({ enabled: ['ebpf-net', 'ebpf-bash'], bashPaths: ['/opt/bash'], bashRedact: ['password', 'authorization'], bashRedactRegex: ['secret-(\\w+)'] });
    expect(c.warnings).toEqual([]);
    expect(run(['--config', p, '--bash-redact', 'none', '--bash-path', '/bin/bash'])).toMatchObject({ bashRedact: [], bashPaths: ['/bin/bash'] });
    const q = confFile('[[inputs.ebpf]]\n  bash_path = ["/a", "/b"]\n  args = ["--bash-redact", "aws"]\n');
    expect(run(['--config', q])).toMatchObject({ bashPaths: ['/a', '/b'], bashRedact: ['aws'] });
  });

  it('reports a bad bash key with file:line', () => {
    const p = confFile('[[inputs.ebpf]]\n  daemon = true\n  bash_redact = ["pasword"]\n');
    expect(failure(() => readEbpfConf(p)).message).toMatch(new RegExp(`^${escape(p)}:3: key "bash_redact" value "pasword": unknown redaction preset`));
    const q = confFile('[[inputs.ebpf]]\n  bash_redact_regex = ["[a-"]\n');
    expect(failure(() => readEbpfConf(q)).message).toMatch(new RegExp(`^${escape(q)}:2: key "bash_redact_regex" value "\\[a-": not a usable regular expression`));
    const r = confFile('[[inputs.ebpf]]\n  bash_path = 3\n');
    expect(failure(() => readEbpfConf(r)).message).toBe(`${r}:2: key "bash_path": expected a path or an array of paths such as ["/usr/bin/bash"]`);
  });
});

describe('dnsflow settings', () => {
  it('takes --dns-ports as a comma list of distinct ports, "off" for none', () => {
    expect(run(['--dns-ports', '53,5353, 53']).dnsPorts).toEqual([53, 5353]);
    expect(run(['--dns-ports', '5353']).dnsPorts).toEqual([5353]);
    expect(run(['--dns-ports', 'off']).dnsPorts).toEqual([]);
    expect(run(['--dns-ports=none']).dnsPorts).toEqual([]);
  });

  it('refuses ports out of range, junk and more than the BPF filter holds', () => {
    expect(invalid(['--dns-ports', '0'])).toBe('--dns-ports "0": expected ports from 1 to 65535 separated by commas, such as 53,5353, or off');
    expect(invalid(['--dns-ports', '53,65536'])).toMatch(/^--dns-ports "53,65536": expected ports from 1 to 65535/);
    expect(invalid(['--dns-ports', 'dns'])).toMatch(/expected ports from 1 to 65535/);
    expect(invalid(['--dns-ports', ','])).toMatch(/expected ports from 1 to 65535/);
    expect(invalid(['--dns-ports', '1,2,3,4,5,6,7,8,9'])).toBe('--dns-ports "1,2,3,4,5,6,7,8,9": expected at most 8 ports');
  });

  it('takes --dns-timeout as a Go duration from 100ms to 5m', () => {
    expect(run(['--dns-timeout', '2s']).dnsTimeoutMs).toBe(2000);
    expect(run(['--dns-timeout', '1m30s']).dnsTimeoutMs).toBe(90_000);
    expect(run(['--dns-timeout', '100ms']).dnsTimeoutMs).toBe(100);
    expect(invalid(['--dns-timeout', '50ms'])).toBe('--dns-timeout "50ms": expected a duration from 100ms to 5m such as 6s');
    expect(invalid(['--dns-timeout', '6'])).toMatch(/expected a duration from 100ms to 5m/);
    expect(invalid(['--dns-timeout', '10m'])).toMatch(/expected a duration from 100ms to 5m/);
  });

  it('reads them from an ebpf.conf args line; the command line wins', () => {
    const p = confFile('[[inputs.ebpf]]\n  args = ["--dns-ports", "5353", "--dns-timeout", "3s"]\n');
    expect(run(['--config', p])).toMatchObject({ dnsPorts: [5353], dnsTimeoutMs: 3000 });
    expect(run(['--config', p, '--dns-ports', '53'])).toMatchObject({ dnsPorts: [53], dnsTimeoutMs: 3000 });
  });
});

describe('issue 13: what upstream users rely on', () => {
  it('honours an interval below 60 s and says once what it costs', () => {
    expect(run(['--interval', '10s'])).toMatchObject({
      intervalMs: 10_000,
      warnings: ["--interval 10s sends 6x the points upstream's 60 s floor would; Guance bills per point"],
    });
    expect(run(['--interval', '45s']).warnings).toEqual(["--interval 45s sends 1.3x the points upstream's 60 s floor would; Guance bills per point"]);
    expect(run(['--interval', '1500ms']).warnings[0]).toMatch(/^--interval 1.5s sends 40x the points/);
    for (const ok of ['60s', '1m', '5m']) expect(run(['--interval', ok]).warnings).toEqual([]);
    // Given twice (conf args, then the command line): the value that counts, said once.
    const p = confFile('[[inputs.ebpf]]\n  args = ["--interval", "20s"]\n');
    expect(run(['--config', p, '--interval', '30s']).warnings).toEqual(["--interval 30s sends 2x the points upstream's 60 s floor would; Guance bills per point"]);
  });

  it('caps flow keys per interval: --max-flows / max_flows, 0 for no cap (with a note)', () => {
    expect(run(['--max-flows', '500']).maxFlows).toBe(500);
    expect(run(['--max-flows=0'])).toMatchObject({ maxFlows: 0, warnings: [expect.stringMatching(/^--max-flows 0 puts no cap on flow keys/)] });
    expect(invalid(['--max-flows', '-1'])).toBe('--max-flows "-1": expected an integer from 0 (no cap) to 10000000 such as 10000');
    expect(invalid(['--max-flows', '1e4'])).toMatch(/^--max-flows "1e4": expected an integer/);
    expect(invalid(['--max-flows', '10000001'])).toMatch(/expected an integer from 0 \(no cap\) to 10000000/);
    const p = confFile('[[inputs.ebpf]]\n  max_flows = 2000\n  args = ["--max-flows", "100"]\n');
    expect(run(['--config', p]).maxFlows).toBe(2000);
    expect(run(['--config', p, '--max-flows', '300']).maxFlows).toBe(300);
    const q = confFile('[[inputs.ebpf]]\n  max_flows = "2000"\n');
    expect(failure(() => readEbpfConf(q)).message).toBe(`${q}:2: key "max_flows": expected an integer from 0 to 10000000`);
  });

  it('forgets orphaned connections after --orphan-timeout / orphan_timeout, by default the larger of 10m and 10 intervals', () => {
    expect(run([]).orphanTimeoutMs).toBe(600_000);
    expect(run(['--interval', '2m']).orphanTimeoutMs).toBe(1_200_000);
    expect(run(['--interval', '10s']).orphanTimeoutMs).toBe(600_000);
    expect(run(['--orphan-timeout', '1h', '--interval', '2m']).orphanTimeoutMs).toBe(3_600_000);
    expect(invalid(['--orphan-timeout', '5s'])).toBe('--orphan-timeout "5s": expected a duration from 10s to 168h such as 10m');
    expect(invalid(['--orphan-timeout', '200h'])).toMatch(/expected a duration from 10s to 168h/);
    const p = confFile('[[inputs.ebpf]]\n  orphan_timeout = "6h"\n  interval = "2m"\n');
    expect(run(['--config', p])).toMatchObject({ orphanTimeoutMs: 6 * 3_600_000, intervalMs: 120_000 });
    // The default follows the interval wherever it came from.
    const q = confFile('[[inputs.ebpf]]\n  interval = "3m"\n');
    expect(run(['--config', q]).orphanTimeoutMs).toBe(1_800_000);
  });

  it('accepts ipv6_disabled in ebpf.conf without dropping IPv6, with a note', () => {
    const p = confFile('[[inputs.ebpf]]\n  ipv6_disabled = true\n');
    expect(run(['--config', p])).toMatchObject({ ipv6Disabled: false, warnings: [expect.stringMatching(/^ipv6_disabled has no effect: IPv6 flows are still reported/)] });
    const q = confFile('[[inputs.ebpf]]\n  ipv6_disabled = false\n');
    expect(run(['--config', q]).warnings).toEqual([]);
  });
});

describe('one table defines every option', () => {
  it('the README lists exactly the table\'s flags (regenerate: node dist/src/cli/main.js help --markdown)', () => {
    const readme = fs.readFileSync(path.join(__dirname, '../../README.md'), 'utf8');
    const block = flagsMarkdownIn(readme);
    expect(block, 'README.md has no generated flag table').toBeDefined();
    const flagsIn = (text: string): string[] => [...text.matchAll(/`(--[a-z0-9_-]+)`/g)].map((m) => m[1]!).sort();
    // Named first, so a missing or extra flag is what the failure shows.
    expect(flagsIn(block!)).toEqual(flagsIn(flagsMarkdown()));
    expect(block).toBe(flagsMarkdown());
  });

  it('prints the table with `help --markdown`', () => {
    expect(parseCommandLine(['help', '--markdown'], NO_ENV)).toEqual({ kind: 'exit', code: 0, output: flagsMarkdown() });
  });

  it('every option has one flag spelling and key of its own, and --help shows each real option with its key', () => {
    const spellings = ALL_OPTIONS.flatMap((o) => [o.spec.flag, ...(o.spec.aliases ?? [])]);
    expect(new Set(spellings).size).toBe(spellings.length);
    expect(BY_FLAG.size).toBe(spellings.length);
    const keys = ALL_OPTIONS.flatMap((o) => (o.spec.key ? [o.spec.key.name] : []));
    expect(BY_KEY.size).toBe(keys.length);
    const r = parseCommandLine(['--help'], NO_ENV);
    if (r.kind !== 'exit') throw new Error('expected exit');
    for (const { spec } of ALL_OPTIONS) {
      expect(r.output, spec.flag).toContain(spec.flag);
      if (spec.key && spec.group !== 'compat') expect(r.output.replace(/\s+/g, ' '), spec.flag).toContain(`ebpf.conf: ${spec.key.shown ?? spec.key.name}`);
    }
  });

  it('every option with a default resolves to it, with no warning', () => {
    const c = run([]) as unknown as Record<string, unknown>;
    for (const { name, spec } of ALL_OPTIONS) {
      if (spec.default && name in c) expect(c[name], name).toEqual(spec.default({ env: NO_ENV, confEnvs: {}, value: (n) => c[n] }));
    }
    expect(c.warnings).toEqual([]);
  });
});
