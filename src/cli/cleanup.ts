// `datakit-ebpf cleanup [--pin-root DIR]`: lists and removes every pinned
// object of the collector (any build) so no program stays attached, e.g.
// after DataKit stopped the collector for good with SIGKILL, or before an
// uninstall. Refuses while a collector runs on that pin root.
import fs from 'node:fs';
import path from 'node:path';
import { OPTIONS } from '../config/options';
import { PinRootLock } from '../daemon/pinlock';
import { legacyPins, removeEmptyPinRoot, removePins } from '../daemon/pins';
import { isCollectorError } from '../errors';

const DEFAULT_PIN_ROOT = OPTIONS.pinRoot.default!({} as never);
const USAGE = `usage: datakit-ebpf cleanup [--pin-root <dir>]   (default pin root: ${DEFAULT_PIN_ROOT})`;

function parse(args: string[]): { pinRoot: string } | string {
  let pinRoot: string = DEFAULT_PIN_ROOT;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--pin-root' && args[i + 1] !== undefined) pinRoot = args[++i]!;
    else if (a.startsWith('--pin-root=')) pinRoot = a.slice('--pin-root='.length);
    else if (a === '-h' || a === '--help') return USAGE;
    else return `datakit-ebpf cleanup: unexpected argument ${JSON.stringify(a)}\n${USAGE}`;
  }
  if (!pinRoot.startsWith('/sys/fs/bpf/') || path.resolve(pinRoot) === '/sys/fs/bpf') return `datakit-ebpf cleanup: --pin-root must be a directory under /sys/fs/bpf/\n${USAGE}`;
  return { pinRoot: path.resolve(pinRoot) };
}

export async function cleanup(args: string[], out: (line: string) => void, err: (line: string) => void): Promise<number> {
  const opts = parse(args);
  if (typeof opts === 'string') {
    (opts === USAGE ? out : err)(opts);
    return opts === USAGE ? 0 : 2;
  }
  const { pinRoot } = opts;
  let lock: PinRootLock | undefined;
  if (fs.existsSync(pinRoot)) {
    try {
      lock = await PinRootLock.acquire(pinRoot, { what: 'cleanup' });
    } catch (e) {
      err(`datakit-ebpf cleanup: ${(e as Error).message}`);
      return isCollectorError(e, 'IN_USE') ? 2 : 1;
    }
  }
  const failed: string[] = [];
  let removed = 0;
  try {
    if (lock) {
      const r = removePins(pinRoot);
      for (const p of r.removed) out(`removed ${p}`);
      for (const f of r.failed) failed.push(`${f.path}: ${f.error}`);
      removed += r.removed.length;
    }
    const legacy = legacyPins(path.dirname(pinRoot));
    for (const p of legacy.ours) {
      try {
        fs.unlinkSync(p);
        out(`removed ${p} (pinned by an older build)`);
        removed++;
      } catch (e) {
        failed.push(`${p}: ${(e as Error).message}`);
      }
    }
    for (const u of legacy.unverified) out(`left alone ${u.path}: ${u.why}`);
  } finally {
    lock?.release();
    // Only if empty: a collector that started meanwhile has its lock in it.
    if (lock) removeEmptyPinRoot(pinRoot);
  }
  for (const f of failed) err(`datakit-ebpf cleanup: cannot remove ${f}`);
  if (failed.length > 0) {
    err(`datakit-ebpf cleanup: ${failed.length} pinned object(s) left${process.getuid?.() === 0 ? '' : ': run it as root'}`);
    return 1;
  }
  out(removed > 0 ? `datakit-ebpf cleanup: removed ${removed} pinned object(s); their programs are detached` : `datakit-ebpf cleanup: nothing pinned under ${pinRoot}`);
  return 0;
}
