// The daemon's lifecycle without the kernel: plugins (and, for the process's
// ways out, the daemon) stand in for the real ones, so what broke can be made
// to break on purpose. Each test names the defect it guards against. The real
// daemon under real signals: test/e2e/lifecycle.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseCommandLine } from '../../src/config/cli';
import type { CollectorConfig } from '../../src/config/types';
import type { CollectorPlugin, PluginContext } from '../../src/plugins/types';
import type { LoaderReady } from '../../src/loader/supervisor';
import { capture, waitUntil } from '../helpers/log-capture';

/** What each test's fake plugins do; read by the mocked factory below. */
const behaviour: { tick?: () => Promise<void>; close?: () => Promise<void>; start?: () => Promise<LoaderReady> } = {};
const made: FakePlugin[] = [];

class FakePlugin implements CollectorPlugin {
  readonly name = 'ebpf-net' as const;
  readonly loaderPid = 4242;
  destroyed = 0;
  closed = 0;
  ticks = 0;
  constructor(readonly ctx: PluginContext) {}
  start(): Promise<LoaderReady> {
    return behaviour.start?.() ?? Promise.resolve({ kernel: 'test', hookSet: { name: 'fake', attached: [], degraded: [] }, info: {}, generation: 1, pid: 4242 } as unknown as LoaderReady);
  }
  async tick(): Promise<void> {
    this.ticks++;
    await behaviour.tick?.();
  }
  async close(): Promise<void> {
    this.closed++;
    await behaviour.close?.();
  }
  destroy(): void {
    this.destroyed++;
  }
}

vi.mock('../../src/plugins', () => ({
  PLUGIN_FACTORIES: {
    'ebpf-net': (ctx: PluginContext) => {
      const p = new FakePlugin(ctx);
      made.push(p);
      return p;
    },
  },
}));

const { Daemon } = await import('../../src/daemon/daemon');
const { Collector } = await import('../../src/cli/lifecycle');
const { PinRootLock } = await import('../../src/daemon/pinlock');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-life-unit-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function config(extra: string[] = []): CollectorConfig {
  const r = parseCommandLine(['run', '--datakit-apiserver', '127.0.0.1:1', '--interval', '1s', '--state-dir', fs.mkdtempSync(path.join(tmp, 's-')), '--pin-root', 'off', ...extra], {});
  if (r.kind !== 'run') throw new Error('bad test config');
  return r.config;
}

let unhandled: unknown[];
const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
beforeEach(() => {
  unhandled = [];
  made.length = 0;
  for (const k of Object.keys(behaviour)) delete behaviour[k as keyof typeof behaviour];
  process.on('unhandledRejection', onUnhandled);
});
afterEach(() => {
  process.off('unhandledRejection', onUnhandled);
});

describe('Daemon', () => {
  it('a plugin whose interval fails is logged, not an unhandled rejection that kills the daemon', async () => {
    behaviour.tick = () => Promise.reject(new Error('maps unreadable'));
    const { logger, lines } = capture();
    const d = new Daemon(config(), logger);
    await d.start();
    await waitUntil('a failed interval to be logged', () => lines.some((l) => l.msg === 'plugin ebpf-net failed this interval: maps unreadable'), 5_000);
    await d.close();
    await new Promise((r) => setImmediate(r));
    expect(unhandled).toEqual([]);
  });

  it('close() closes every plugin even when one fails to (was: Promise.all stopped there and the rest stayed attached)', async () => {
    behaviour.close = () => Promise.reject(new Error('EACCES: marks'));
    const { logger, lines } = capture();
    const d = new Daemon(config(['--enabled', 'ebpf-net,ebpf-net']), logger);
    await d.start();
    await d.close();
    await d.close();
    expect(made.every((p) => p.closed === 1)).toBe(true);
    expect(lines.filter((l) => l.msg === 'closing plugin ebpf-net failed: EACCES: marks').length).toBeGreaterThan(0);
    expect(unhandled).toEqual([]);
  });

  it('a crash during start-up reaches the loaders being started (was: destroy() knew only started plugins)', async () => {
    let release!: () => void;
    behaviour.start = () =>
      new Promise((resolve) => {
        release = () => resolve({ kernel: 'k', hookSet: { name: 'fake', attached: [], degraded: [] }, info: {}, generation: 1, pid: 4242 } as unknown as LoaderReady);
      });
    const recorded: (number | undefined)[][] = [];
    const d = new Daemon(config(), capture().logger, { recordLoaders: (pids) => void recorded.push([...pids]) });
    const starting = d.start();
    await waitUntil('the plugin to start', () => made.length === 1, 1_000);
    // The pin-root lock learns the loader's pid before it is ready.
    expect(recorded[0]).toEqual([4242]);
    d.destroy();
    expect(made[0]!.destroyed).toBe(1);
    release();
    await starting;
  });

  it('says what a stop cut short leaves unflushed, by stage', async () => {
    let block!: () => void;
    const { logger } = capture();
    const d = new Daemon(config(), logger);
    await d.start();
    expect(d.unflushed()).toMatch(/^the current interval \(everything counted since \S+\) was not flushed; nothing waits in the spool$/);
    behaviour.tick = () => new Promise<void>((r) => (block = r));
    const closing = d.close();
    await waitUntil('the last interval to start', () => block !== undefined, 1_000);
    expect(d.unflushed()).toMatch(/^the current interval .* was not flushed/);
    block();
    await closing;
    expect(d.unflushed()).toBe('everything was flushed; the eBPF programs were being detached');
  });
});

describe('LoaderSupervisor while the daemon stops', () => {
  it('a loader that exits during the stop is not restarted (was: the supervisor started a new one during shutdown)', async () => {
    const { LoaderSupervisor } = await import('../../src/loader/supervisor');
    const { encodeFrame } = await import('../../src/loader/frames');
    const { DKE_FRAME_READY } = await import('../../src/loader/layout.generated');
    const ready = encodeFrame(DKE_FRAME_READY, Buffer.from(JSON.stringify({ kernel: 'k', hookSet: { name: 'x', attached: [], degraded: [] }, info: {} })));
    // Ready, then gone, as a loader that crashes while the daemon stops.
    const script = `require('fs').writeSync(3, Buffer.from('${ready.toString('hex')}', 'hex')); setTimeout(() => process.exit(0), 100);`;
    const { logger, lines } = capture();
    const sup = new LoaderSupervisor({ plugin: 'net', file: process.execPath, args: ['-e', script] }, logger);
    const exits: unknown[] = [];
    sup.on('exit', (e) => exits.push(e));
    await sup.start();
    LoaderSupervisor.holdRestarts();
    await waitUntil('the loader to exit', () => exits.length === 1, 5_000);
    // Longer than the first restart's backoff (500 ms).
    await new Promise((r) => setTimeout(r, 800));
    expect(sup.generation).toBe(1);
    expect(sup.childPid).toBeUndefined();
    expect(lines.filter((l) => /restarting/.test(l.msg))).toEqual([]);
  });
});

describe('BashPlugin', () => {
  it('a batch the spool refuses (disk full) is logged without its text, not an unhandled rejection', async () => {
    const { BashPlugin } = await import('../../src/plugins/bash');
    const { Metrics } = await import('../../src/daemon/metrics');
    const { logger, lines } = capture();
    const sink = { durable: true, committed: () => false, write: () => Promise.reject(new Error('ENOSPC: no space left on device')) };
    const plugin = new BashPlugin({ config: config(), log: logger, uploader: sink, metrics: new Metrics(), commonTags: { host: 'h' } });
    (plugin as unknown as { buffer: unknown[] }).buffer.push({ timeNs: 1n, pid: 7, user: 'alice', cmd: 'mysql -phunter2', truncated: false });
    await plugin.tick();
    await new Promise((r) => setImmediate(r));
    expect(unhandled).toEqual([]);
    expect(lines.some((l) => l.msg === 'could not queue 1 bash line(s): ENOSPC: no space left on device')).toBe(true);
    expect(JSON.stringify(lines)).not.toContain('hunter2');
    plugin.destroy();
  });
});

describe('Collector: every way out detaches', () => {
  /** A daemon whose close() takes `closeMs`, and a pin root with what a dead loader left. */
  async function rig(closeMs: number) {
    const pinRoot = fs.mkdtempSync(path.join(tmp, 'pins-'));
    fs.mkdirSync(path.join(pinRoot, 'net-0123'));
    fs.writeFileSync(path.join(pinRoot, 'net-0123', 'link_dke_tcp_set_state'), '');
    const cfg = { ...config(), pinRoot };
    const { logger, lines } = capture();
    const exits: number[] = [];
    const calls: string[] = [];
    const c = new Collector(cfg, logger, { exit: (code) => void exits.push(code), closeTimeoutMs: 1_000 });
    c.lock = await PinRootLock.acquire(pinRoot, { waitMs: 0 });
    c.daemon = {
      close: () => {
        calls.push('close');
        return new Promise((r) => setTimeout(r, closeMs));
      },
      destroy: () => void calls.push('destroy'),
      unflushed: () => 'the last interval was flushed; 7 point(s) not yet delivered stay in the spool for the next start',
    };
    return { c, pinRoot, lines, exits, calls };
  }

  it('an uncaught error stops as cleanly as a SIGTERM, then exits 1 with nothing pinned (was: exit without detaching)', async () => {
    const { c, pinRoot, lines, exits, calls } = await rig(10);
    c.onFatal(new Error('EACCES: permission denied'), 'uncaught exception');
    await waitUntil('the exit', () => exits.length > 0, 2_000);
    expect(exits).toEqual([1]);
    expect(calls).toEqual(['close', 'destroy']);
    expect(fs.readdirSync(pinRoot)).toEqual([]);
    expect(lines.map((l) => l.msg)).toEqual([
      'uncaught exception: EACCES: permission denied; stopping (flushing and detaching first)',
      `removed 1 pinned object(s) the eBPF loader left in ${pinRoot}`,
    ]);
  });

  it('a second signal stops at once, says what was not flushed, and still detaches', async () => {
    const { c, pinRoot, lines, exits, calls } = await rig(60_000);
    c.onSignal('SIGINT');
    c.onSignal('SIGINT');
    expect(exits).toEqual([1]);
    expect(calls).toEqual(['close', 'destroy']);
    expect(fs.readdirSync(pinRoot)).toEqual([]);
    expect(lines.filter((l) => l.msg.startsWith('second SIGINT'))).toMatchObject([
      { level: 40, msg: 'second SIGINT: stopping at once; the last interval was flushed; 7 point(s) not yet delivered stay in the spool for the next start' },
    ]);
  });

  it('a start refused before any loader ran (a path, the lock) leaves an earlier run\'s pins for the next start, and gives the lock up', async () => {
    const { c, pinRoot, exits } = await rig(0);
    c.daemon = undefined;
    const { CollectorError } = await import('../../src/errors');
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(c.failStart(new CollectorError('PATH_UNUSABLE', 'state directory /x cannot be used by user nobody: ...'))).toBe(2);
    } finally {
      stderr.mockRestore();
    }
    expect(exits).toEqual([2]);
    expect(fs.readdirSync(pinRoot)).toEqual(['net-0123']);
  });

  it('a stop that hangs is cut short after its bound, saying what was not flushed', async () => {
    const { c, lines, exits } = await rig(60_000);
    c.onSignal('SIGTERM');
    await waitUntil('the forced exit', () => exits.length > 0, 3_000);
    expect(exits).toEqual([1]);
    expect(lines.some((l) => l.msg === 'stop took longer than 1000 ms; stopping at once; the last interval was flushed; 7 point(s) not yet delivered stay in the spool for the next start')).toBe(true);
  });
});
