/* The data model's floor: on the same hooks as floor.bpf.c, only what the
 * design the collector follows cannot do without for a TCP connection. A
 * socket-local state made at connect() (with its owner) and at ESTABLISHED
 * (with its tuple), and a flow counter, keyed by the same 64-byte flow key as
 * ours, added to at every send, receive and release (close() of the last
 * descriptor, where ours counts the close). No rtt, no retransmits,
 * no listeners, no recovery of skipped runs, no liveness check, no UDP or
 * DNS: what our programs cost beyond this is the price of those. Loaded by
 * floor.c like the floor; named dkm_*, never dke_*. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "netflow.h"

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct dke_sock_state);
} dkm_sock SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dke_flow_key);
	__type(value, struct dke_flow_lanes);
} dkm_flows SEC(".maps");

static __always_inline struct dke_flow_stats *dkm_flow(const struct dke_flow_key *key)
{
	struct dke_flow_lanes *fl = bpf_map_lookup_elem(&dkm_flows, key);
	static const struct dke_flow_lanes zero;

	if (!fl) {
		bpf_map_update_elem(&dkm_flows, key, &zero, BPF_NOEXIST);
		fl = bpf_map_lookup_elem(&dkm_flows, key);
		if (!fl)
			return 0;
	}
	return &fl->lane[bpf_get_smp_processor_id() & (DKE_FLOW_LANES - 1)].stats;
}

static __always_inline void dkm_owner(struct dke_flow_key *k)
{
	struct task_struct *task = bpf_get_current_task_btf();

	k->pid = task->tgid;
	__builtin_memcpy(k->comm, task->group_leader->comm, DKE_COMM_LEN);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(dkm_tcp_set_state, struct sock *sk, const int oldstate, const int newstate)
{
	struct dke_sock_state *st;
	struct sock_common *c = &sk->__sk_common;

	if (newstate == 2 /* SYN_SENT */) {
		st = bpf_sk_storage_get(&dkm_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st)
			dkm_owner(&st->key);
		return 0;
	}
	if (newstate == 1 /* ESTABLISHED */) {
		if (sk->sk_protocol != IPPROTO_TCP || c->skc_family != 2)
			return 0;
		st = bpf_sk_storage_get(&dkm_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st)
			return 0;
		__builtin_memcpy(st->key.local_addr, &c->skc_rcv_saddr, 4);
		__builtin_memcpy(st->key.remote_addr, &c->skc_daddr, 4);
		st->key.local_port = c->skc_num;
		st->key.remote_port = bpf_ntohs(c->skc_dport);
		st->key.family = 2;
		st->key.proto = IPPROTO_TCP;
		st->key.direction = oldstate == 3 /* SYN_RECV */ ? DKE_DIR_INCOMING : DKE_DIR_OUTGOING;
		/* The client's port collapses (as upstream's default, --ephemeral-port 0). */
		if (st->key.direction == DKE_DIR_INCOMING)
			st->key.remote_port = 0;
		else
			st->key.local_port = 0;
		st->key.netns = c->skc_net.net->ns.inum;
		st->flags = DKE_SOCK_COUNTED;
		return 0;
	}
	return 0;
}

SEC("cgroup/sock_release")
int dkm_sock_release(struct bpf_sock *ctx)
{
	struct dke_sock_state *st;
	struct dke_flow_stats *fs;

	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	st = bpf_sk_storage_get(&dkm_sock, ctx, 0, 0);
	if (!st || st->flags != DKE_SOCK_COUNTED)
		return 1;
	fs = dkm_flow(&st->key);
	if (fs)
		__sync_fetch_and_add(&fs->closed, 1);
	st->flags = DKE_SOCK_CLOSED;
	return 1;
}

static __always_inline int dkm_bytes(struct sock *sk, int ret, int sending)
{
	struct dke_sock_state *st;
	struct dke_flow_stats *fs;

	if (ret <= 0 || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	st = bpf_sk_storage_get(&dkm_sock, sk, 0, 0);
	if (!st || !st->flags)
		return 0;
	if (st->key.pid != bpf_get_current_pid_tgid() >> 32)
		dkm_owner(&st->key); /* an accepted socket's owner */
	fs = dkm_flow(&st->key);
	if (!fs)
		return 0;
	if (sending)
		__sync_fetch_and_add(&fs->bytes_sent, ret);
	else
		__sync_fetch_and_add(&fs->bytes_received, ret);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(dkm_sock_send, struct sock *sk, int ret, int flags)
{
	return dkm_bytes(sk, ret, 1);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(dkm_sock_recv, struct sock *sk, int ret, int flags)
{
	return dkm_bytes(sk, ret, 0);
}

/* The kernel frees the socket's state with it. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(dkm_tcp_destroy, struct sock *sk) { return 0; }

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(dkm_tcp_retransmit_synack, struct sock *sk, struct request_sock *req) { return 0; }

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(dkm_tcp_retransmit, struct sock *sk, const struct sk_buff *skb) { return 0; }

SEC("cgroup_skb/egress")
int dkm_skb_egress(struct __sk_buff *skb) { return 1; }

SEC("cgroup_skb/ingress")
int dkm_skb_ingress(struct __sk_buff *skb) { return 1; }

SEC("cgroup/sock_create")
int dkm_sock_create(struct bpf_sock *ctx) { return 1; }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
