/* Maps shared by the ebpf-net programs. netflow_maps.bpf.c defines them
 * (DKE_DEFINE_MAPS); every other object declares them extern and
 * `bpftool gen object` links the objects so all programs share one instance.
 *
 * Every map is pinned by name under the loader's pin directory
 * (/sys/fs/bpf/datakit-ebpf/net-<object hash>/), and so are the links: a
 * loader or daemon that dies (DataKit stops it with SIGKILL) leaves the
 * programs counting, and the next loader continues with the same counters. */
#ifndef DKE_NETFLOW_MAPS_BPF_H
#define DKE_NETFLOW_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "netflow.h"
#include "dns.h"

#define DKE_E2BIG 7 /* errno.h is not available to BPF objects */
#define DKE_EEXIST 17

#ifdef DKE_DEFINE_MAPS
#define DKE_MAP
#else
#define DKE_MAP extern
#endif

/* socket -> struct dke_sock_state, for TCP and UDP sockets we count. Freed
 * by the kernel with the socket: nothing to clean up, no capacity limit. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct dke_sock_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_state SEC(".maps");

/* One generation of per-flow counters: struct dke_flow_key -> struct
 * dke_flow_lanes, what each flow key moved since the generation began. The
 * programs add to the current one, flow_gen[0]; at each collect the loader
 * puts an empty one there and reads the old one whole. The kernel returns
 * from that update only once no program can still be running with the old
 * one (map-in-map updates wait for an RCU grace period), so the read is
 * exact and nothing is ever removed from under a program: a flow exists in
 * a generation only if it moved in that interval, and the loader's work per
 * collect is the flows that changed. */
struct dke_flow_generation {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dke_flow_key);
	__type(value, struct dke_flow_lanes);
};

DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct dke_flow_generation);
} flow_gen SEC(".maps");

/* struct dke_listen_key -> struct dke_owner: who called listen() on a port. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dke_listen_key);
	__type(value, struct dke_owner);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} listeners SEC(".maps");

/* struct dke_request_key -> __u32: SYN-ACK retransmits dke_tcp_retransmit_synack
 * counted for a request, until its socket is born (dke_born_retrans). LRU: a
 * request that never completes is simply forgotten. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dke_request_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} synack_retrans SEC(".maps");

/* pid -> struct dke_exec_name: the file each recent process executed. LRU:
 * only pids seen lately matter (the loader reads it for new flow owners). */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct dke_exec_name);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} exec_names SEC(".maps");

/* 0 -> struct dke_control. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dke_control);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} control SEC(".maps");

/* 0 -> struct dke_liveness (the programs' own; see netflow.h). */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dke_liveness);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} liveness SEC(".maps");

/* enum dke_telemetry -> u64 count. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DKE_TEL_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} telemetry SEC(".maps");

/* struct dke_dns_event records (bpf/dns.h), parsed by the loader: one ring
 * per CPU, each CPU's packets in its own. One ring shared by all CPUs made
 * every reservation take the ring's lock and producer position from the
 * other CPU: a DNS packet's capture cost twice as much on two CPUs as on one.
 * The loader sets max_entries to the number of possible CPUs and the rings'
 * size before loading, creates the rings and puts them here (an earlier
 * loader's stay, pinned with this map), and merges what they hold in time
 * order (a query and its answer can pass on different CPUs). */
struct dke_dns_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* a template: the loader makes the rings, sized for the host */
};

DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct dke_dns_ring);
} dns_rings SEC(".maps");

/* CPU -> its struct dke_dns_stage (bpf/dns.h): tiny DNS records waiting to
 * reach the CPU's ring as one batch. Not a per-CPU map: the loader maps it
 * and looks before it asks a CPU to flush, so an idle CPU is not
 * interrupted (the loader sets max_entries to the possible CPUs). Pinned with
 * the rings, so what waits survives a loader's restart. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dke_dns_stage);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dns_stage SEC(".maps");

/* Atomic although the slot is this CPU's: programs run with migration, not
 * preemption, disabled, and a softirq's program can interrupt a process-context
 * one between its load and its store; the loss being counted would then go
 * uncounted. */
static __always_inline void dke_count_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&telemetry, &idx);
	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline void dke_count(__u32 idx)
{
	dke_count_n(idx, 1);
}

static __always_inline struct dke_control *dke_control(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&control, &zero);
}

/* `c`, or NULL (counted) when it says no reader was left at `now`. */
static __always_inline struct dke_control *dke_live_at(struct dke_control *c, __u64 now)
{
	if (c && c->orphan_timeout_ns && now - c->last_commit_ns > c->orphan_timeout_ns) {
		dke_count(DKE_TEL_ORPHAN_SKIPPED);
		return 0;
	}
	return c;
}

#define DKE_NS_PER_S 1000000000ULL
/* A jiffy is 1 ms (HZ 1000) to 10 ms (HZ 100) on the kernels we meet; a
 * measure far outside is two CPUs' readings mixed, and is not taken. */
#define DKE_JIFFY_NS_MIN 500000ULL
#define DKE_JIFFY_NS_MAX 50000000ULL

/* The first look since a collect (or since the length of a jiffy is known):
 * one clock read, for the answer and for the deadline in jiffies. Programs on
 * two CPUs may both get here and interleave their writes: a mixed pair gives
 * a measure out of range (not taken), and a wrong deadline can only cost a
 * clock read, never skip a run (dke_live asks the clock before it does). */
static __always_inline struct dke_control *dke_live_recompute(struct dke_control *c, struct dke_liveness *l, __u64 j)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 end = c->last_commit_ns + c->orphan_timeout_ns;
	__u64 cal_ns = l->cal_ns, cal_jiffies = l->cal_jiffies, per;

	if (!cal_ns || now < cal_ns || now - cal_ns >= DKE_NS_PER_S) {
		if (cal_ns && now > cal_ns && j > cal_jiffies) {
			per = (now - cal_ns) / (j - cal_jiffies);
			if (per >= DKE_JIFFY_NS_MIN && per <= DKE_JIFFY_NS_MAX)
				l->ns_per_jiffy = per;
		}
		l->cal_ns = now;
		l->cal_jiffies = j;
	}
	if (l->ns_per_jiffy) {
		l->live_until_jiffies = j + (end > now ? (end - now) / l->ns_per_jiffy : 0);
		l->commit_ns = c->last_commit_ns; /* after the deadline it stands for */
	}
	return dke_live_at(c, now);
}

/* `c` (the control block), or NULL when no reader has collected for
 * --orphan-timeout: then the programs do nothing (and count that) until a
 * loader collects again. Compares jiffies, not the clock (struct dke_liveness). */
static __always_inline struct dke_control *dke_live(struct dke_control *c)
{
	struct dke_liveness *l;
	__u32 zero = 0;
	__u64 j;

	if (!c || !c->orphan_timeout_ns)
		return c;
	l = bpf_map_lookup_elem(&liveness, &zero);
	if (!l)
		return dke_live_at(c, bpf_ktime_get_ns());
	j = bpf_jiffies64();
	if (l->commit_ns != c->last_commit_ns || !l->ns_per_jiffy)
		return dke_live_recompute(c, l, j);
	if (j > l->live_until_jiffies)
		return dke_live_at(c, bpf_ktime_get_ns()); /* the clock decides; jiffies only spare reading it */
	return c;
}

static __always_inline struct dke_control *dke_control_live(void)
{
	return dke_live(dke_control());
}

/* This CPU's lane of the flow's counters in the current generation, the
 * flow created there on first use. Adds stay atomic: the lane is shared with
 * other CPUs of its group, and a softirq can interrupt a program adding to it. */
static __always_inline struct dke_flow_stats *dke_flow(const struct dke_flow_key *key)
{
	static const struct dke_flow_lanes zero;
	struct dke_flow_lanes *fl;
	__u32 current = 0;
	void *gen = bpf_map_lookup_elem(&flow_gen, &current);

	if (!gen) {
		/* The loader puts a generation there before it attaches and
		 * swaps one for another: never empty while programs run. */
		dke_count(DKE_TEL_FLOW_CREATE_FAILED);
		return 0;
	}
	fl = bpf_map_lookup_elem(gen, key);
	if (!fl) {
		long err = bpf_map_update_elem(gen, key, &zero, BPF_NOEXIST);

		if (err == -DKE_E2BIG)
			dke_count(DKE_TEL_FLOW_MAP_FULL);
		fl = bpf_map_lookup_elem(gen, key);
		if (!fl) {
			/* Not for want of room (no memory, a bucket busy on this
			 * CPU): a loss all the same. */
			if (err != -DKE_E2BIG)
				dke_count(DKE_TEL_FLOW_CREATE_FAILED);
			return 0;
		}
	}
	return &fl->lane[bpf_get_smp_processor_id() & (DKE_FLOW_LANES - 1)].stats;
}

/* The calling process: its tgid and its own name (the thread group leader's
 * comm), not the calling thread's: a Java or tokio program is one process. */
static __always_inline void dke_take_owner(__u32 *pid, char *comm)
{
	/* Through the task, not bpf_get_current_pid_tgid(): cgroup_skb
	 * programs have no such helper before Linux 6.2. */
	struct task_struct *task = bpf_get_current_task_btf();

	*pid = task->tgid;
	__builtin_memcpy(comm, task->group_leader->comm, DKE_COMM_LEN);
}

/* The calling process's network namespace (where the sockets it creates live). */
static __always_inline __u32 dke_current_netns(void)
{
	return bpf_get_current_task_btf()->nsproxy->net_ns->ns.inum;
}

/* The client's port, as it goes into the key (0 collapses to `*`). */
static __always_inline __u16 dke_client_port(__u16 port, const struct dke_control *c)
{
	return port >= c->ephemeral_port ? 0 : port;
}

#endif
