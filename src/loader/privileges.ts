// Whether this process may load eBPF programs, in one readable sentence if not.
import fs from 'node:fs';
import { LoaderFatal } from './plugins/types';

const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

export function effectiveCapabilities(status = fs.readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export function checkBpfPrivileges(): void {
  const eff = effectiveCapabilities();
  const has = (cap: bigint): boolean => (eff & (1n << cap)) !== 0n;
  const bpfOk = has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
  if (!bpfOk || !has(CAP_NET_ADMIN)) {
    throw new LoaderFatal(
      'PRIVILEGE',
      `loading eBPF programs needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN) but this process (uid ${process.getuid?.()}) lacks them: run the collector as root`,
    );
  }
}
