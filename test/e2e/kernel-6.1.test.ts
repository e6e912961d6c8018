// Debian 12's own kernel (6.1) under QEMU: one boot for the whole file runs every
// check below inside the guest (scripts/kernel-vm, test/helpers/guest.ts), each
// `it` then reads its check's result. To add a case: append a check to CHECKS
// (bash, runs from the repository as root; $CHECK_OUT is its own directory for
// files, e.g. JSON) and an `it` that asserts on `result('<name>')`.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runChecksInGuest, type CheckResult, type GuestCheck, type GuestChecks } from '../helpers/guest';

const CHECKS: GuestCheck[] = [
  { name: 'uname', script: 'uname -r' },
  { name: 'btf', script: 'stat -c %s /sys/kernel/btf/vmlinux' },
  { name: 'node', script: `node -e 'console.log(process.version)'` },
  {
    name: 'mounts',
    // What the collector and our tests look for: found from /proc/self/mounts.
    script: `awk '{print $3, $2}' /proc/self/mounts | grep -E '^(cgroup2|bpf|tracefs|debugfs|tmpfs|devpts) ' | sort -u`,
  },
  {
    name: 'root',
    // / is the host's under a throwaway overlay: writable (useradd works), and the root of
    // its mount namespace, so setns into another mount namespace (nsenter -m) still sees it.
    script: `awk '$2 == "/" {print $3}' /proc/self/mounts
touch /etc/kernel-vm-write-test && echo writable
unshare -m --propagation private sleep 30 & pid=$!
for i in $(seq 50); do [ "$(readlink /proc/$pid/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] && break; sleep 0.1; done
nsenter -m -t $pid test -x /usr/bin/node && echo nsenter-sees-root
kill $pid`,
  },
  {
    name: 'bpf-features',
    script: 'bpftool -j feature probe kernel >"$CHECK_OUT/features.json"',
    timeoutSec: 240,
  },
  {
    name: 'tracepoints',
    // 6.1 has the socket state tracepoint but not the per-send/recv ones (Linux 6.4).
    script: `cd /sys/kernel/tracing/events
for t in sock/inet_sock_set_state tcp/tcp_retransmit_skb sock/sock_send_length sock/sock_recv_length; do
  [ -d "$t" ] && echo "$t yes" || echo "$t no"
done`,
  },
  {
    name: 'kprobe',
    // A kprobe on the function upstream hooks: created, listed, removed.
    script: `cd /sys/kernel/tracing
echo 'p:dke_smoke tcp_sendmsg' >>kprobe_events
grep dke_smoke kprobe_events
echo '-:dke_smoke' >>kprobe_events`,
  },
  {
    name: 'netns-veth',
    // Two namespaces joined by a veth pair (the module loads on demand) and a TCP exchange between them.
    script: `set -e
ip netns add dkeA; ip netns add dkeB
ip link add dkeVa netns dkeA type veth peer name dkeVb netns dkeB
ip -n dkeA addr add 10.203.0.1/24 dev dkeVa; ip -n dkeA link set dkeVa up; ip -n dkeA link set lo up
ip -n dkeB addr add 10.203.0.2/24 dev dkeVb; ip -n dkeB link set dkeVb up; ip -n dkeB link set lo up
ip netns exec dkeB nc -l 10.203.0.2 7000 >"$CHECK_OUT/received" &
for i in $(seq 100); do ip netns exec dkeB ss -Hltn | grep -q 10.203.0.2:7000 && break; sleep 0.1; done
echo hello-from-dkeA | ip netns exec dkeA nc -N 10.203.0.2 7000
wait
ip netns del dkeA; ip netns del dkeB`,
  },
  {
    name: 'collector',
    // The collector end to end (test/guest/collector-checks.cjs): netflow TCP
    // and UDP, dnsflow both sides, ebpf-bash, SIGKILL exactness, the orphan
    // guard, a clean stop. Timeouts scaled 8x for TCG.
    script: 'node test/guest/collector-checks.cjs "$CHECK_OUT" 8',
    timeoutSec: 600,
  },
];

let guest: GuestChecks;

function result(name: string): CheckResult {
  const r = guest.results[name];
  if (!r) throw new Error(`no check named ${name}`);
  return r;
}

/** The check exited 0; its stderr is in the failure message otherwise. */
function ok(name: string): CheckResult {
  const r = result(name);
  expect(r.code, `check ${name} exited ${r.code}: ${r.stderr}`).toBe(0);
  return r;
}

describe('Debian 12 kernel 6.1 under QEMU (TCG)', () => {
  beforeAll(async () => {
    // The first run on a machine also installs QEMU and downloads the kernel (~20 s).
    guest = await runChecksInGuest(CHECKS, { timeoutMs: 900_000 });
    const each = Object.entries(guest.results).map(([n, r]) => `${n} ${(r.ms / 1000).toFixed(1)}`);
    console.log(`kernel-6.1: guest ${guest.kernel}, boot and ${CHECKS.length} checks in ${(guest.elapsedMs / 1000).toFixed(1)} s (${each.join(', ')} s)`);
  }, 960_000);

  it('boots the 6.1 kernel', () => {
    expect(guest.kernel).toMatch(/^6\.1\./);
    expect(ok('uname').stdout.trim()).toBe(guest.kernel);
    expect(guest.runnerStderr).toBe('');
  });

  it('has BTF', () => {
    expect(Number(ok('btf').stdout)).toBeGreaterThan(1_000_000);
  });

  it('runs this machine node', () => {
    expect(ok('node').stdout.trim()).toBe(process.version);
  });

  it('mounts cgroup2, bpffs, tracefs and debugfs where the collector looks', () => {
    const lines = ok('mounts').stdout.split('\n');
    for (const want of ['cgroup2 /sys/fs/cgroup', 'bpf /sys/fs/bpf', 'tracefs /sys/kernel/tracing', 'debugfs /sys/kernel/debug', 'tmpfs /tmp', 'tmpfs /run']) {
      expect(lines).toContain(want);
    }
  });

  it('gives a writable root that is the root of its mount namespace', () => {
    expect(ok('root').stdout.split('\n')).toEqual(['overlay', 'writable', 'nsenter-sees-root', '']);
  });

  it('offers BTF trampolines (tracing programs), kprobes, cgroup_skb, ring buffers and socket storage', () => {
    const f = JSON.parse(ok('bpf-features').files['features.json']) as {
      program_types: Record<string, boolean>;
      map_types: Record<string, boolean>;
      helpers: Record<string, string[]>;
    };
    // have_tracing_prog_type is false on our 6.18 VMs (fentry/fexit fail with EPERM there).
    for (const t of ['tracing', 'kprobe', 'tracepoint', 'raw_tracepoint', 'cgroup_skb', 'cgroup_sock_addr', 'sock_ops', 'sched_cls']) {
      expect(f.program_types[`have_${t}_prog_type`], t).toBe(true);
    }
    for (const m of ['ringbuf', 'sk_storage', 'lru_percpu_hash', 'percpu_array']) {
      expect(f.map_types[`have_${m}_map_type`], m).toBe(true);
    }
    // bpftool 7.1 cannot probe helpers of tracing programs (it lists none); kprobe's show the kernel has them.
    expect(f.helpers.kprobe_available_helpers).toEqual(
      expect.arrayContaining(['bpf_get_current_task_btf', 'bpf_ringbuf_reserve', 'bpf_get_current_cgroup_id']),
    );
  });

  it('has sock:inet_sock_set_state but not sock:sock_send_length / sock_recv_length (Linux 6.4)', () => {
    expect(ok('tracepoints').stdout.trim().split('\n')).toEqual([
      'sock/inet_sock_set_state yes',
      'tcp/tcp_retransmit_skb yes',
      'sock/sock_send_length no',
      'sock/sock_recv_length no',
    ]);
  });

  it('can place a kprobe on tcp_sendmsg', () => {
    expect(ok('kprobe').stdout).toMatch(/^p:kprobes\/dke_smoke tcp_sendmsg/m);
  });

  it('creates network namespaces joined by veth and carries TCP between them', () => {
    expect(ok('netns-veth').files.received).toBe('hello-from-dkeA\n');
  });

  describe('the collector, on 6.1 and on this machine for the same traffic', () => {
    interface Check {
      want?: Record<string, unknown>;
      got?: Record<string, unknown>;
      error?: string;
    }
    interface Results {
      kernel: string;
      started?: { hookSet: string };
      fatal?: string;
      checks: Record<string, Check>;
    }
    let onGuest: Results;
    let onHost: Results;

    beforeAll(() => {
      const r = result('collector');
      expect(r.code, `the guest's checks exited ${r.code}: ${r.stderr}`).toBe(0);
      onGuest = JSON.parse(r.files['results.json'] ?? '{}') as Results;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dke-checks-host-'));
      execFileSync(process.execPath, [path.join(__dirname, '../guest/collector-checks.cjs'), dir, '1'], { stdio: 'inherit', timeout: 240_000 });
      onHost = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8')) as Results;
      fs.rmSync(dir, { recursive: true, force: true });
      const rows = Object.keys(onGuest.checks).map((k) => `  ${k.padEnd(8)} 6.1: ${JSON.stringify(onGuest.checks[k]?.got)}  |  ${onHost.kernel}: ${JSON.stringify(onHost.checks[k]?.got)}`);
      console.log([`collector on ${onGuest.kernel}: ${onGuest.started?.hookSet}`, `collector on ${onHost.kernel}: ${onHost.started?.hookSet}`, ...rows].join('\n'));
    }, 300_000);

    it('starts on 6.1 with the fexit hook set, and on this machine with the syscall tracepoints; DNS batched on both', () => {
      expect(onGuest.fatal).toBeUndefined();
      expect(onGuest.started?.hookSet).toMatch(/^ebpf-net: tracepoints \(tp_btf\) \+ fexit on tcp_sendmsg\/tcp_recvmsg \+ cgroup_skb/);
      expect(onHost.started?.hookSet).toMatch(/^ebpf-net: tracepoints \(tp_btf\) \+ cgroup_skb/);
      // Both have what staging DNS records per CPU needs (atomic fetch, raw_tp run on a CPU).
      for (const r of [onGuest, onHost]) expect(r.started?.hookSet).toMatch(/\+ DNS packets \(cgroup_skb, batched per CPU\)(;|$)/);
    });

    for (const name of ['tcp', 'udp', 'dns', 'bash', 'sigkill', 'orphan', 'stop']) {
      it(`${name}: what was sent is what arrives, on both kernels`, () => {
        for (const [where, res] of [['6.1', onGuest], ['host', onHost]] as const) {
          const c = res.checks[name];
          expect(c?.error, `${where}: ${c?.error}`).toBeUndefined();
          expect(c?.got, where).toEqual(c?.want);
        }
      });
    }
  });
});
