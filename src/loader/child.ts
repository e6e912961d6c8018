// The privileged loader child. It is the only process that holds BPF
// programs: it loads and attaches them, streams close events and answers map
// reads for the daemon over IPC. It keeps no flow state, so the daemon can
// restart it at any time without losing aggregated data.
import fs from 'node:fs';
import os from 'node:os';
import type { ChildMessage, HookSetReport, LoaderOptions, ParentMessage } from './protocol';
import { asBuffer } from './protocol';
import { assertLayout } from './layout';
import { loadAddon, type AttachResult, type NativeError, type NativeTracer } from './native';

/** Without these there is no netflow at all. */
const REQUIRED_PROGRAMS = ['dke_tcp_set_state', 'dke_tcp_destroy', 'dke_sock_send', 'dke_sock_recv'];
/** Optional hooks and what their absence costs the user. */
const OPTIONAL_PROGRAMS: Record<string, string> = {
  dke_tcp_retransmit: 'retransmits and rtt refresh only on send/recv and close',
  dke_udp_egress: 'no UDP flows',
  dke_udp_ingress: 'no UDP flows',
};
const REQUIRED_TRACEPOINTS: Record<string, string> = {
  inet_sock_set_state: 'sock:inet_sock_set_state (Linux >= 4.16)',
  sock_send_length: 'sock:sock_send_length (Linux >= 6.4)',
  sock_recv_length: 'sock:sock_recv_length (Linux >= 6.4)',
  tcp_destroy_sock: 'tcp:tcp_destroy_sock (Linux >= 5.10)',
};

const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

class FatalError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function send(msg: ChildMessage): void {
  process.send?.(msg);
}

function checkPrivileges(): void {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  const eff = m ? BigInt(`0x${m[1]}`) : 0n;
  const has = (cap: bigint): boolean => (eff & (1n << cap)) !== 0n;
  const bpfOk = has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
  if (!bpfOk || !has(CAP_NET_ADMIN)) {
    throw new FatalError(
      'PRIVILEGE',
      `loading eBPF programs needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN) but this process (uid ${process.getuid?.()}) lacks them: run the collector as root`,
    );
  }
}

/** The cgroup v2 mount (root of the unified hierarchy), or undefined. */
export function findCgroup2Mount(mounts: string): string | undefined {
  for (const line of mounts.split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint) return mountPoint;
  }
  return undefined;
}

/** Local ports of TCP sockets in LISTEN, from /proc/net/tcp{,6} text. */
export function parseListeningPorts(procNetTcp: string): number[] {
  const ports = new Set<number>();
  for (const line of procNetTcp.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 4 || cols[3] !== '0A') continue;
    const port = parseInt(cols[1]!.split(':')[1] ?? '', 16);
    if (Number.isFinite(port)) ports.add(port);
  }
  return [...ports];
}

function readListeningPorts(): number[] {
  const texts = ['/proc/net/tcp', '/proc/net/tcp6'].map((p) => {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  });
  return [...new Set(texts.flatMap(parseListeningPorts))];
}

function openTracer(opts: LoaderOptions, cgroupPath: string | undefined): { tracer: NativeTracer; hookSet: HookSetReport } {
  const addon = loadAddon();
  assertLayout(addon.layout);

  const probe = addon.probeKernel();
  if (!probe.btf) {
    throw new FatalError(
      'KERNEL_UNSUPPORTED',
      `kernel ${os.release()} has no BTF (/sys/kernel/btf/vmlinux): the collector needs a kernel built with CONFIG_DEBUG_INFO_BTF=y`,
    );
  }
  const missing = Object.keys(REQUIRED_TRACEPOINTS).filter((tp) => !probe.tracepoints[tp]);
  if (missing.length > 0) {
    throw new FatalError(
      'KERNEL_UNSUPPORTED',
      `kernel ${os.release()} lacks the tracepoints netflow needs: ${missing.map((tp) => REQUIRED_TRACEPOINTS[tp]).join(', ')}; upgrade the kernel`,
    );
  }

  const disabled: string[] = [];
  const degraded: string[] = [];
  if (!probe.tracepoints.tcp_retransmit_skb) disabled.push('dke_tcp_retransmit');
  if (!cgroupPath) {
    disabled.push('dke_udp_egress', 'dke_udp_ingress');
    degraded.push('no cgroup v2 mount found: no UDP flows');
  }
  for (let attempt = 0; ; attempt++) {
    let tracer: NativeTracer;
    try {
      tracer = new addon.Tracer({ ipv6Disabled: opts.ipv6Disabled, cgroupPath: cgroupPath ?? '', disabledPrograms: disabled });
    } catch (e) {
      const err = e as NativeError;
      const prog = err.program;
      // An optional program the verifier refuses is dropped, not fatal.
      if (prog && prog in OPTIONAL_PROGRAMS && !disabled.includes(prog) && attempt < 5) {
        disabled.push(prog);
        degraded.push(`${prog} refused by the kernel (${err.message}): ${OPTIONAL_PROGRAMS[prog]}`);
        continue;
      }
      const tail = err.libbpfLog ? ` [libbpf: ${err.libbpfLog.split('\n').slice(-3).join(' | ')}]` : '';
      throw new FatalError('EBPF_LOAD', `${err.message}${tail}`);
    }
    const attached = tracer.attach();
    const failedRequired = attached.filter((a) => !a.ok && REQUIRED_PROGRAMS.includes(a.program));
    if (failedRequired.length > 0) {
      tracer.close();
      throw new FatalError(
        'EBPF_ATTACH',
        `attaching ${failedRequired.map((a) => `${a.section} (${a.error})`).join(', ')} failed: the kernel must allow tp_btf programs`,
      );
    }
    for (const a of attached.filter((x: AttachResult) => !x.ok)) {
      degraded.push(`${a.section}: ${a.error}: ${OPTIONAL_PROGRAMS[a.program] ?? 'less data'}`);
    }
    return {
      tracer,
      hookSet: { name: 'tracepoints (tp_btf) + cgroup_skb', attached, degraded },
    };
  }
}

function serve(tracer: NativeTracer): void {
  tracer.startEvents((records) => send({ type: 'closed', records }));
  process.on('message', (raw: ParentMessage) => {
    switch (raw.type) {
      case 'snapshot': {
        try {
          send({
            type: 'snapshot',
            id: raw.id,
            tcp: tracer.dumpMap('tcp_conns'),
            udp: tracer.dumpMap('udp_flows'),
            owners: tracer.dumpMap('sock_owners'),
            telemetry: tracer.readTelemetry(),
          });
        } catch (e) {
          send({ type: 'error', id: raw.id, message: (e as Error).message });
        }
        break;
      }
      case 'deleteUdp':
        try {
          send({ type: 'deleted', id: raw.id, udp: tracer.lookupAndDelete('udp_flows', asBuffer(raw.keys)) });
        } catch (e) {
          send({ type: 'error', id: raw.id, message: (e as Error).message });
        }
        break;
      case 'stop':
        tracer.close();
        process.exit(0);
    }
  });
  // The daemon is gone (crashed or SIGKILLed by DataKit): never keep probes
  // attached on our own.
  process.on('disconnect', () => {
    tracer.close();
    process.exit(0);
  });
}

function main(): void {
  const opts = JSON.parse(process.argv[2] ?? '{}') as LoaderOptions;
  try {
    checkPrivileges();
    const cgroupPath = opts.cgroupPath || findCgroup2Mount(fs.readFileSync('/proc/self/mounts', 'utf8'));
    const { tracer, hookSet } = openTracer(opts, cgroupPath);
    serve(tracer);
    send({ type: 'ready', kernel: os.release(), hookSet, listeningPorts: readListeningPorts() });
  } catch (e) {
    const err = e as FatalError;
    send({ type: 'fatal', code: err.code ?? 'EBPF_LOAD', message: err.message });
    // Let the IPC message flush before exiting.
    setTimeout(() => process.exit(3), 50);
  }
}

if (require.main === module) main();
