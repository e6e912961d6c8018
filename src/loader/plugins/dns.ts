// dnsflow's capture, opened by the ebpf-net loader next to netflow (same
// child, separate BPF object): cgroup_skb on the cgroup v2 root copying DNS
// packets (bpf/dns.bpf.c). Whatever goes wrong here costs dnsflow only: it
// comes back as `degraded` lines, never as an exception that would stop netflow.
import { assertDnsLayout } from '../../dnsflow/record';
import { loadAddon, type AttachResult, type NativeDnsTracer, type NativeError } from '../native';

/** The loader's event stream of DNS packet records. */
export const NET_STREAM_DNS = 'dns_packets';

export interface DnsCapture {
  /** Undefined when dnsflow is off or could not start. */
  tracer?: NativeDnsTracer;
  attached: AttachResult[];
  degraded: string[];
}

export function openDnsCapture(
  opts: { dnsPorts: number[]; ipv6Disabled: boolean },
  cgroupPath: string | undefined,
  onRecords: (records: Buffer) => void,
): DnsCapture {
  if (opts.dnsPorts.length === 0) return { attached: [], degraded: [] };
  if (!cgroupPath) return { attached: [], degraded: ['no cgroup v2 mount found: no dnsflow'] };
  let tracer: NativeDnsTracer;
  try {
    const addon = loadAddon();
    assertDnsLayout(addon.DnsTracer.layout);
    tracer = new addon.DnsTracer({ ports: opts.dnsPorts, ipv6Disabled: opts.ipv6Disabled });
  } catch (e) {
    const err = e as NativeError;
    const tail = err.libbpfLog ? ` [libbpf: ${err.libbpfLog.split('\n').slice(-3).join(' | ')}]` : '';
    return { attached: [], degraded: [`no dnsflow: ${err.message}${tail}`] };
  }
  const attached = tracer.attach(cgroupPath);
  const failed = attached.filter((a) => !a.ok);
  if (failed.length > 0) {
    // One direction alone pairs nothing.
    tracer.close();
    return { attached, degraded: failed.map((a) => `no dnsflow: attaching ${a.section} to ${cgroupPath} failed: ${a.error}`) };
  }
  try {
    tracer.startEvents(onRecords);
  } catch (e) {
    tracer.close();
    return { attached, degraded: [`no dnsflow: ${(e as Error).message}`] };
  }
  return { tracer, attached, degraded: [] };
}
