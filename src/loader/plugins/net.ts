// Loader side of the ebpf-net plugin: the netflow BPF object (bpf/netflow*).
// Opens it with the best hook set this kernel offers, streams TCP close
// events and answers map reads. Keeps no flow state.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assertLayout } from '../layout';
import { loadAddon, type NativeError, type NativeTracer } from '../native';
import { openDnsCapture, NET_STREAM_DNS } from './dns';
import { LoaderFatal, type LoaderPlugin, type OpenedPlugin } from './types';

export interface NetLoaderOptions {
  ipv6Disabled: boolean;
  /** A cgroup v2 directory for the UDP programs; empty: find the mount. */
  cgroupPath: string;
  /** Where to pin maps and links on bpffs; empty: do not pin. */
  pinRoot: string;
  /** dnsflow's resolver ports; empty: no DNS capture. */
  dnsPorts: number[];
}

/** Pins live under here by default; uninstalling removes it. */
export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/datakit-ebpf';

/** Facts the daemon needs from the loader (ready.info). */
export interface NetLoaderInfo {
  /** TCP ports in LISTEN in the host namespace when the loader started. */
  listeningPorts: number[];
  /** Pinned maps directory ('' when not pinned). */
  pinDir: string;
  /** The maps (and counters) of an earlier loader were picked up. */
  mapsReused: boolean;
  /** DNS packets are captured (stream NET_STREAM_DNS); why not is in hookSet.degraded. */
  dns: boolean;
}

/** Raw map dumps; decode with src/loader/layout.ts. */
export interface NetSnapshotReply {
  tcp: Uint8Array;
  udp: Uint8Array;
  owners: Uint8Array;
  telemetry: number[];
}

export const NET_STREAM_TCP_CLOSED = 'tcp_closed';

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

/**
 * A bpffs directory for pins, mounting bpffs where the system did not (our
 * VMs boot without it). Undefined, with the reason, when pinning is impossible.
 */
function preparePinRoot(root: string): { dir?: string; why?: string } {
  if (!root) return { why: 'pinning disabled' };
  const mountPoint = path.dirname(root);
  const isBpffs = (): boolean => fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mountPoint && l.split(' ')[2] === 'bpf');
  try {
    if (!isBpffs()) execFileSync('mount', ['-t', 'bpf', 'bpf', mountPoint], { stdio: 'ignore' });
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    return { dir: root };
  } catch (err) {
    return { why: `cannot use bpffs at ${mountPoint} (${(err as Error).message.split('\n')[0]})` };
  }
}

/** Pins of other builds of the netflow object: their programs would keep counting into maps nobody reads. */
function removeStalePins(root: string, keep: string): string[] {
  const removed: string[] = [];
  for (const d of fs.readdirSync(root)) {
    const full = path.join(root, d);
    if (!d.startsWith('netflow-') || full === keep) continue;
    fs.rmSync(full, { recursive: true, force: true });
    removed.push(full);
  }
  return removed;
}

function openTracer(opts: NetLoaderOptions, cgroupPath: string | undefined): { tracer: NativeTracer; hookSet: OpenedPlugin['hookSet'] } {
  const addon = loadAddon();
  assertLayout(addon.layout);

  const probe = addon.probeKernel();
  if (!probe.btf) {
    throw new LoaderFatal(
      'KERNEL_UNSUPPORTED',
      `kernel ${os.release()} has no BTF (/sys/kernel/btf/vmlinux): the collector needs a kernel built with CONFIG_DEBUG_INFO_BTF=y`,
    );
  }
  const missing = Object.keys(REQUIRED_TRACEPOINTS).filter((tp) => !probe.tracepoints[tp]);
  if (missing.length > 0) {
    throw new LoaderFatal(
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
  const pin = preparePinRoot(opts.pinRoot);
  if (!pin.dir) degraded.push(`${pin.why}: counters restart when the loader or the daemon restarts`);
  for (let attempt = 0; ; attempt++) {
    let tracer: NativeTracer;
    try {
      tracer = new addon.Tracer({ ipv6Disabled: opts.ipv6Disabled, cgroupPath: cgroupPath ?? '', disabledPrograms: disabled, pinRoot: pin.dir ?? '' });
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
      throw new LoaderFatal('EBPF_LOAD', `${err.message}${tail}`);
    }
    const attached = tracer.attach();
    const failedRequired = attached.filter((a) => !a.ok && REQUIRED_PROGRAMS.includes(a.program));
    if (failedRequired.length > 0) {
      tracer.close();
      throw new LoaderFatal(
        'EBPF_ATTACH',
        `attaching ${failedRequired.map((a) => `${a.section} (${a.error})`).join(', ')} failed: the kernel must allow tp_btf programs`,
      );
    }
    for (const a of attached.filter((x) => !x.ok)) {
      degraded.push(`${a.section}: ${a.error}: ${OPTIONAL_PROGRAMS[a.program] ?? 'less data'}`);
    }
    if (pin.dir) {
      for (const d of removeStalePins(pin.dir, tracer.pinInfo().dir)) degraded.push(`removed pins of another build: ${d}`);
    }
    return { tracer, hookSet: { name: 'tracepoints (tp_btf) + cgroup_skb', attached, degraded } };
  }
}

export const netLoader: LoaderPlugin = {
  open(options, emit) {
    const opts = options as unknown as NetLoaderOptions;
    const cgroupPath = opts.cgroupPath || findCgroup2Mount(fs.readFileSync('/proc/self/mounts', 'utf8'));
    const { tracer, hookSet } = openTracer(opts, cgroupPath);
    tracer.startEvents((records) => emit(NET_STREAM_TCP_CLOSED, records));
    const dns = openDnsCapture(opts, cgroupPath, (records) => emit(NET_STREAM_DNS, records));
    hookSet.attached.push(...dns.attached);
    hookSet.degraded.push(...dns.degraded);
    if (dns.tracer) hookSet.name += ' + DNS packets (cgroup_skb)';
    const pinned = tracer.pinInfo();
    const info: NetLoaderInfo = { listeningPorts: readListeningPorts(), pinDir: pinned.dir, mapsReused: pinned.mapsReused, dns: dns.tracer !== undefined };
    return {
      hookSet,
      info,
      handle(op, args) {
        switch (op) {
          case 'snapshot':
            return {
              tcp: tracer.dumpMap('tcp_conns'),
              udp: tracer.dumpMap('udp_flows'),
              owners: tracer.dumpMap('sock_owners'),
              telemetry: tracer.readTelemetry(),
            } satisfies NetSnapshotReply;
          case 'deleteUdp':
            return tracer.lookupAndDelete('udp_flows', Buffer.from(args as Uint8Array));
          case 'deleteTcp':
            return tracer.deleteKeys('tcp_conns', Buffer.from(args as Uint8Array));
          case 'dnsTelemetry':
            return dns.tracer?.readTelemetry() ?? [];
          default:
            throw new Error(`unknown net loader operation ${op}`);
        }
      },
      close: (o) => {
        dns.tracer?.close();
        if (o?.unpin) tracer.unpin();
        tracer.close();
      },
    };
  },
};
