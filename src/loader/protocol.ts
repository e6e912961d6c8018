// Messages between the daemon and its privileged loader child (Node IPC with
// 'advanced' serialization, so byte arrays cross without re-encoding).
import type { AttachResult } from './native';

export interface LoaderOptions {
  ipv6Disabled: boolean;
  cgroupPath: string;
}

/** The hook set the child settled on, for the start-up log line. */
export interface HookSetReport {
  name: string;
  attached: AttachResult[];
  /** Optional hooks that are missing, with what the user loses. */
  degraded: string[];
}

export type ChildMessage =
  | {
      type: 'ready';
      kernel: string;
      hookSet: HookSetReport;
      /** TCP ports in LISTEN in the host namespace when the loader started. */
      listeningPorts: number[];
    }
  | { type: 'fatal'; code: string; message: string }
  | { type: 'closed'; records: Uint8Array }
  | {
      type: 'snapshot';
      id: number;
      tcp: Uint8Array;
      udp: Uint8Array;
      owners: Uint8Array;
      telemetry: number[];
    }
  | { type: 'deleted'; id: number; udp: Uint8Array }
  | { type: 'error'; id: number; message: string };

export type ParentMessage =
  | { type: 'snapshot'; id: number }
  | { type: 'deleteUdp'; id: number; keys: Uint8Array }
  | { type: 'stop' };

export const asBuffer = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
