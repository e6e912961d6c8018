/* Reading a struct sock into a flow key and taking its owner, shared by the
 * tracepoint programs. */
#ifndef DKE_SOCK_COMMON_BPF_H
#define DKE_SOCK_COMMON_BPF_H

#include "netflow_maps.bpf.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define DKE_AF_INET 2
#define DKE_AF_INET6 10

/* Fill the key's addresses and ports from the socket. Ports come from
 * inet_sock, not skc_num, because skc_num is already 0 by the time a socket
 * closes. Returns 0 when the socket is neither IPv4 nor IPv6. */
static __always_inline int dke_read_tuple(const struct sock *sk, struct dke_flow_key *k)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	const struct inet_sock *inet = (const struct inet_sock *)sk;

	k->family = family;
	if (family == DKE_AF_INET) {
		__u32 saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memset(k->local_addr, 0, 16);
		__builtin_memset(k->remote_addr, 0, 16);
		__builtin_memcpy(k->local_addr, &saddr, 4);
		__builtin_memcpy(k->remote_addr, &daddr, 4);
	} else if (family == DKE_AF_INET6) {
		BPF_CORE_READ_INTO(&k->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&k->remote_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return 0;
	}
	k->local_port = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
	k->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	k->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return 1;
}

/* Collapse the client's port by direction (the key's ports are then final). */
static __always_inline void dke_collapse(struct dke_flow_key *k, const struct dke_control *c)
{
	if (k->direction == DKE_DIR_OUTGOING)
		k->local_port = dke_client_port(k->local_port, c);
	else if (k->direction == DKE_DIR_INCOMING)
		k->remote_port = dke_client_port(k->remote_port, c);
}

/* One rtt sample per socket per collect epoch (and one at close): the
 * flow's rtt is the mean of its connections' readings, as upstream's. */
static __always_inline void dke_sample_rtt(const struct sock *sk, struct dke_sock_state *st, struct dke_flow_stats *fs,
					   __u32 epoch, int force)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u32 srtt;

	if (!force && st->rtt_epoch == epoch)
		return;
	srtt = BPF_CORE_READ(tp, srtt_us) >> 3;
	if (!srtt)
		return;
	st->rtt_epoch = epoch;
	__sync_fetch_and_add(&fs->rtt_sum_us, srtt);
	__sync_fetch_and_add(&fs->rttvar_sum_us, BPF_CORE_READ(tp, mdev_us) >> 2);
	__sync_fetch_and_add(&fs->rtt_count, 1);
}

/* Adds the retransmits the socket made since the last look. */
static __always_inline void dke_take_retrans(const struct sock *sk, struct dke_sock_state *st, struct dke_flow_stats *fs)
{
	__u32 total = BPF_CORE_READ((const struct tcp_sock *)sk, total_retrans);

	if (total > st->retrans_seen) {
		__sync_fetch_and_add(&fs->retransmits, total - st->retrans_seen);
		st->retrans_seen = total;
	}
}

#endif
