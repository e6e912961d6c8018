// How the collector process ends, in one place: a signal (SIGTERM/SIGINT:
// a clean stop; the second one: at once, saying what was cut short), an
// error nothing else handled (a clean stop, exit 1), a failed start. Every
// way out undoes, in order: the daemon (its plugins detach and unpin), pins
// a dead loader could not remove (only while we hold the pin root's lock,
// and only once we started loaders: then they are ours; before that, only
// what the start itself pinned), the lock, the pidfile. src/cli/main.ts wires the
// process's signals and last-resort handlers here.
import type { Logger } from 'pino';
import type { CollectorConfig } from '../config/types';
import type { Pidfile } from '../daemon/pidfile';
import type { PinRootLock } from '../daemon/pinlock';
import { removePinned, removePins } from '../daemon/pins';
import { EXIT_2_CODES, isCollectorError } from '../errors';

/** How long a clean stop may take before it is cut short. */
export const CLOSE_TIMEOUT_MS = 15_000;

export function exitCodeOf(err: unknown): number {
  return isCollectorError(err) && EXIT_2_CODES.includes(err.code) ? 2 : 1;
}

/** What of the daemon (src/daemon/daemon.ts) ending it needs. */
export interface StoppableDaemon {
  /** Never rejects. */
  close(): Promise<void>;
  destroy(): void;
  unflushed(): string;
}

export interface CollectorOptions {
  /** Ends the process (tests pass their own). */
  exit?: (code: number) => void;
  closeTimeoutMs?: number;
}

export class Collector {
  daemon?: StoppableDaemon;
  lock?: PinRootLock;
  pidfile?: Pidfile;
  /** What the start pinned before any loader ran (preparePaths): a start that fails removes it. */
  madePins: string[] = [];
  private stopping = false;
  private exiting = false;
  private readonly exitProcess: (code: number) => void;
  private readonly closeTimeoutMs: number;

  constructor(
    private readonly config: CollectorConfig,
    private readonly log: Logger,
    opts: CollectorOptions = {},
  ) {
    this.exitProcess = opts.exit ?? ((code) => process.exit(code));
    this.closeTimeoutMs = opts.closeTimeoutMs ?? CLOSE_TIMEOUT_MS;
  }

  /** Ends the process at once after undoing what can be undone synchronously. Idempotent. */
  exit(code: number): void {
    if (this.exiting) return;
    this.exiting = true;
    this.daemon?.destroy();
    // Pins are removed only once this process started loaders: before that
    // they are an earlier (SIGKILLed) run's, which the next start resumes.
    if (this.lock?.held && this.daemon) {
      const r = removePins(this.config.pinRoot);
      if (r.removed.length > 0) {
        this.log.info({ pinRoot: this.config.pinRoot, removed: r.removed.length }, `removed ${r.removed.length} pinned object(s) the eBPF loader left in ${this.config.pinRoot}`);
      }
      for (const f of r.failed) this.log.warn({ path: f.path, err: f.error }, `cannot remove the pinned object ${f.path}: ${f.error}; datakit-ebpf cleanup removes it`);
    }
    if (!this.daemon) removePinned(this.madePins);
    this.lock?.release();
    this.pidfile?.remove(this.log);
    this.exitProcess(code);
  }

  /** A failure before the daemon runs: one line on stderr and in the log, then exit. Returns the exit code. */
  failStart(err: unknown): number {
    const msg = (err as Error).message;
    this.log.fatal({ code: isCollectorError(err) ? err.code : undefined }, msg);
    process.stderr.write(`datakit-ebpf: ${msg}\n`);
    const code = exitCodeOf(err);
    this.exit(code);
    return code;
  }

  /** SIGTERM/SIGINT: a clean stop; the second one stops at once and says what it cut short. */
  onSignal(signal: NodeJS.Signals): void {
    if (this.stopping) {
      this.log.warn({ signal }, `second ${signal}: stopping at once; ${this.daemon?.unflushed() ?? 'nothing was collected yet'}`);
      this.exit(1);
      return;
    }
    this.log.info({ signal }, `${signal}: stopping: flushing the current interval, then detaching (a second SIGINT/SIGTERM stops at once)`);
    this.stop(0);
  }

  /** An error nothing else caught: stop as cleanly as we still can, then exit 1. */
  onFatal(err: unknown, what: string): void {
    const message = err instanceof Error ? err.message : String(err);
    if (this.stopping) {
      this.log.fatal({ err }, `${what} while stopping: ${message}; stopping at once${this.daemon ? `; ${this.daemon.unflushed()}` : ''}`);
      this.exit(1);
      return;
    }
    this.log.fatal({ err }, `${what}: ${message}; stopping (flushing and detaching first)`);
    this.stop(1);
  }

  private stop(code: number): void {
    this.stopping = true;
    const daemon = this.daemon;
    if (!daemon) {
      this.exit(code);
      return;
    }
    const force = setTimeout(() => {
      this.log.error(`stop took longer than ${this.closeTimeoutMs} ms; stopping at once; ${daemon.unflushed()}`);
      this.exit(1);
    }, this.closeTimeoutMs);
    force.unref();
    void daemon.close().then(() => {
      clearTimeout(force);
      this.exit(code);
    });
  }
}
