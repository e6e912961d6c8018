/* Reading a struct sock into a flow key and taking its owner, shared by the
 * tracepoint programs. */
#ifndef DKE_SOCK_COMMON_BPF_H
#define DKE_SOCK_COMMON_BPF_H

#include "netflow_maps.bpf.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define DKE_AF_INET 2
#define DKE_AF_INET6 10

/* TCP states (include/net/tcp_states.h). */
#define DKE_TCP_ESTABLISHED 1
#define DKE_TCP_SYN_SENT 2
#define DKE_TCP_SYN_RECV 3
#define DKE_TCP_CLOSE 7
#define DKE_TCP_CLOSE_WAIT 8
#define DKE_TCP_LISTEN 10

/* The addresses of a socket or a connection request (both begin with a
 * struct sock_common) into the key, written as a socket of family `as` has
 * them: an IPv4 peer of a dual-stack listener becomes ::ffff:a.b.c.d, as in
 * the IPv6 socket accepted for it. Returns 0 when neither IPv4 nor IPv6. */
static __always_inline int dke_read_addrs(struct sock_common *c, __u16 as, struct dke_flow_key *k)
{
	__u16 family = c->skc_family;

	if (family == DKE_AF_INET) {
		__u32 saddr = c->skc_rcv_saddr;
		__u32 daddr = c->skc_daddr;
		__builtin_memset(k->local_addr, 0, 16);
		__builtin_memset(k->remote_addr, 0, 16);
		if (as == DKE_AF_INET6) {
			k->local_addr[10] = k->local_addr[11] = 0xff;
			k->remote_addr[10] = k->remote_addr[11] = 0xff;
			__builtin_memcpy(k->local_addr + 12, &saddr, 4);
			__builtin_memcpy(k->remote_addr + 12, &daddr, 4);
		} else {
			__builtin_memcpy(k->local_addr, &saddr, 4);
			__builtin_memcpy(k->remote_addr, &daddr, 4);
		}
	} else if (family == DKE_AF_INET6) {
		BPF_CORE_READ_INTO(&k->local_addr, c, skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&k->remote_addr, c, skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return 0;
	}
	return 1;
}

/* Fill the key's addresses and ports from the socket. Tracing programs get
 * `sk` as a typed (BTF) pointer: its fields are read with plain loads (the
 * verifier makes them fault-safe), not one probe-read helper call each.
 * Ports come from inet_sock, not skc_num, because skc_num is already 0 by the
 * time a socket closes. Returns 0 when the socket is neither IPv4 nor IPv6. */
static __always_inline int dke_read_tuple(struct sock *sk, struct dke_flow_key *k)
{
	struct tcp_sock *tp;

	k->family = sk->__sk_common.skc_family;
	if (!dke_read_addrs(&sk->__sk_common, k->family, k))
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (tp)
		k->local_port = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	else
		k->local_port = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	k->remote_port = bpf_ntohs(sk->__sk_common.skc_dport);
	k->netns = sk->__sk_common.skc_net.net->ns.inum;
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


/* The request a socket is born of, from the socket's key before its
 * client port collapses. */
static __always_inline void dke_request_key_of(const struct dke_flow_key *k, struct dke_request_key *rk)
{
	__builtin_memcpy(rk->local_addr, k->local_addr, 16);
	__builtin_memcpy(rk->remote_addr, k->remote_addr, 16);
	rk->netns = k->netns;
	rk->local_port = k->local_port;
	rk->remote_port = k->remote_port;
}

/* An accepted socket is born with its request's SYN-ACK retransmits in
 * total_retrans. Those dke_tcp_retransmit_synack counted are not counted
 * again; those it missed (a softirq the kernel ran no program for) still
 * are. Called with the key read and not yet collapsed. */
static __always_inline void dke_born_retrans(struct sock *sk, struct dke_sock_state *st, const struct dke_control *ctl)
{
	struct dke_request_key rk = {};
	struct tcp_sock *tp;
	__u32 *seen, born;

	if (!(ctl->flags & DKE_CTL_SYNACK_COUNTED))
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !(born = tp->total_retrans))
		return;
	dke_request_key_of(&st->key, &rk);
	seen = bpf_map_lookup_elem(&synack_retrans, &rk);
	if (!seen)
		return;
	st->retrans_seen = *seen < born ? *seen : born;
	/* A later connection of the same four ports starts afresh. */
	bpf_map_delete_elem(&synack_retrans, &rk);
}

/*
 * The kernel skips a tracing program that fires while the same program runs
 * on this CPU (a softirq interrupting it: bpftool shows recursion_misses), so
 * under load the ESTABLISHED of a connection can go unseen. The hooks that run
 * in the process's context (send, recv) and destroy complete here what they
 * find of such a connection, so it is still counted whole:
 *  - connect() was seen (SYN_SENT) but not ESTABLISHED: finish it, if the
 *    peer ever answered (an RTT sample exists);
 *  - nothing was seen of an accepted connection: a listener we know (seen
 *    at listen() or found at start-up) owns it, so it is new and incoming
 *    (at destroy: only if it moved data);
 *  - anything else predates the collector: tracked from now on, direction
 *    left to user space (not at destroy: a connection we never saw move).
 */
static __always_inline struct dke_sock_state *dke_recover_tcp(struct sock *sk, struct dke_sock_state *st,
							     const struct dke_control *ctl, int at_destroy)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	struct dke_listen_key lk = {};
	struct dke_owner *owner;
	__u8 state;

	if (!tp)
		return st;
	if (st) {
		if ((st->flags & DKE_SOCK_COUNTED) || !tp->srtt_us || !dke_read_tuple(sk, &st->key))
			return st;
		dke_collapse(&st->key, ctl);
		st->flags |= DKE_SOCK_COUNTED | DKE_SOCK_EST_PENDING;
		return st;
	}
	state = sk->__sk_common.skc_state;
	if (!at_destroy && state != DKE_TCP_ESTABLISHED && state != DKE_TCP_CLOSE_WAIT)
		return 0;
	lk.netns = sk->__sk_common.skc_net.net->ns.inum;
	lk.port = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	owner = bpf_map_lookup_elem(&listeners, &lk);
	if (!owner && at_destroy)
		return 0;
	/* At destroy, only a connection that moved data: a listener's child
	 * can be born and destroyed without ever being accepted (two CPUs
	 * completing the same handshake under loss), and that is no connection. */
	if (at_destroy && !tp->bytes_received && !tp->bytes_acked)
		return 0;
	st = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		dke_count(DKE_TEL_STATE_FAILED);
		return 0;
	}
	if (!dke_read_tuple(sk, &st->key))
		return 0;
	st->key.proto = IPPROTO_TCP;
	if (owner) {
		st->key.direction = DKE_DIR_INCOMING;
		st->key.pid = owner->pid;
		__builtin_memcpy(st->key.comm, owner->comm, sizeof(st->key.comm));
		dke_born_retrans(sk, st, ctl);
		dke_collapse(&st->key, ctl);
		st->flags = DKE_SOCK_COUNTED | DKE_SOCK_EST_PENDING;
		return st;
	}
	st->key.direction = DKE_DIR_UNKNOWN;
	/* Retransmits from before we watched are not this interval's. */
	st->retrans_seen = tp->total_retrans;
	st->flags = DKE_SOCK_COUNTED;
	return st;
}

/* One rtt sample per socket per collect interval (epoch), taken at its first
 * syscall of the interval, or at its destroy when it made none: the flow's
 * rtt is the mean of its connections' readings, one each per interval, as
 * upstream's (which reads every connection once per interval). */
static __always_inline void dke_sample_rtt(struct sock *sk, struct dke_sock_state *st, struct dke_flow_stats *fs,
					   __u32 epoch)
{
	struct tcp_sock *tp;
	__u32 srtt;

	if (st->rtt_epoch == epoch)
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	srtt = tp->srtt_us >> 3;
	if (!srtt)
		return;
	st->rtt_epoch = epoch;
	__sync_fetch_and_add(&fs->rtt_sum_us, srtt);
	__sync_fetch_and_add(&fs->rttvar_sum_us, tp->mdev_us >> 2);
	__sync_fetch_and_add(&fs->rtt_count, 1);
}

/* Adds the retransmits the socket made since the last look. */
static __always_inline void dke_take_retrans(struct sock *sk, struct dke_sock_state *st, struct dke_flow_stats *fs)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u32 total;

	if (!tp)
		return;
	total = tp->total_retrans;

	if (total > st->retrans_seen) {
		__sync_fetch_and_add(&fs->retransmits, total - st->retrans_seen);
		st->retrans_seen = total;
	}
}

#endif
