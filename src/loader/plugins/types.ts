// What a plugin's loader module provides to the generic loader child.
import type { HookSetReport } from '../protocol';

/** Thrown for a start-up failure the user must fix; `code` is an ErrorCode. */
export class LoaderFatal extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface OpenedPlugin {
  hookSet: HookSetReport;
  /** Plugin-specific facts for the daemon (sent with 'ready'). */
  info: unknown;
  /** Answers a daemon request; the result must be structured-cloneable. */
  handle(op: string, args: unknown): unknown;
  /**
   * Detaches everything. Idempotent. `unpin` (a clean stop) also removes
   * pinned maps and links; without it (the daemon died) pinned state stays
   * and keeps counting for the next loader.
   */
  close(opts?: { unpin?: boolean }): void;
}

export interface LoaderPlugin {
  /** Loads and attaches; `emit` streams raw records to the daemon. Throws LoaderFatal. */
  open(options: Record<string, unknown>, emit: (stream: string, records: Buffer) => void): OpenedPlugin;
}
