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
  | 'NOT_IMPLEMENTED';

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
