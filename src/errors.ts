// One place for every error the collector raises on purpose. Each has a stable
// `code` so callers (and tests) branch on the code, never on message text, and
// each message is one line that names the cause and the fix.

export type ErrorCode =
  | 'CONFIG_INVALID' // a flag, an ebpf.conf key or value is wrong
  | 'CONFIG_FILE' // the config file cannot be read or parsed
  | 'KERNEL_UNSUPPORTED' // the kernel lacks BTF or every hook set we can use
  | 'PRIVILEGE' // not root / missing CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN
  | 'EBPF_LOAD' // libbpf or the verifier refused a program or map
  | 'EBPF_ATTACH' // a program loaded but could not be attached
  | 'LOADER_EXITED' // the privileged loader child died
  | 'UPLOAD_FAILED' // DataKit answered non-200 or could not be reached
  | 'PATH_UNUSABLE' // the log, state or pin directory cannot be used by the daemon's user
  | 'IN_USE' // another collector holds the pin root
  | 'NOT_IMPLEMENTED';

/** Errors a restart will not fix (exit code 2: systemd's unit does not restart on it). */
export const EXIT_2_CODES: readonly ErrorCode[] = ['CONFIG_INVALID', 'PATH_UNUSABLE', 'IN_USE'];

export class CollectorError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CollectorError';
    this.code = code;
  }
}

export function isCollectorError(err: unknown, code?: ErrorCode): err is CollectorError {
  return err instanceof CollectorError && (code === undefined || err.code === code);
}
