// Messages between the daemon and a privileged loader child (Node IPC with
// 'advanced' serialization, so byte arrays cross without re-encoding). The
// protocol is plugin-neutral: a plugin's loader module (plugins/*.ts) names
// its own event streams and request operations.
import type { AttachResult } from './native';

/** argv[2] of a loader child. */
export interface LoaderSpec {
  /** Module under src/loader/plugins/ that owns the BPF objects. */
  plugin: string;
  options: Record<string, unknown>;
}

/** The hook set a child settled on, for the start-up log line. */
export interface HookSetReport {
  name: string;
  attached: AttachResult[];
  /** Optional hooks that are missing, with what the user loses. */
  degraded: string[];
}

export type ChildMessage =
  | { type: 'ready'; kernel: string; hookSet: HookSetReport; info: unknown }
  | { type: 'fatal'; code: string; message: string }
  | { type: 'event'; stream: string; records: Uint8Array }
  | { type: 'reply'; id: number; data: unknown }
  | { type: 'error'; id: number; message: string };

export type ParentMessage =
  | { type: 'request'; id: number; op: string; args?: unknown }
  /** unpin: a clean stop removes pinned state, so nothing keeps counting without us. */
  | { type: 'stop'; unpin?: boolean };

export const asBuffer = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
