/* Reading a struct sock into our records, shared by the tracepoint programs. */
#ifndef DKE_SOCK_COMMON_BPF_H
#define DKE_SOCK_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "netflow.h"

#define DKE_AF_INET 2
#define DKE_AF_INET6 10

/* Fill the tuple from the socket. Ports come from inet_sock, not skc_num,
 * because skc_num is already 0 by the time a socket closes. Returns 0 when
 * the socket is not IPv4/IPv6 or IPv6 is disabled. */
static __always_inline int dke_read_tuple(const struct sock *sk, struct dke_tuple *t, __u8 ipv6_disabled)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	const struct inet_sock *inet = (const struct inet_sock *)sk;

	t->family = family;
	if (family == DKE_AF_INET) {
		__u32 saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(t->local_addr, &saddr, 4);
		__builtin_memcpy(t->remote_addr, &daddr, 4);
	} else if (family == DKE_AF_INET6 && !ipv6_disabled) {
		BPF_CORE_READ_INTO(&t->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->remote_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return 0;
	}
	t->local_port = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
	t->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return 1;
}

static __always_inline void dke_read_tcp_metrics(const struct sock *sk, struct dke_tcp_conn *c)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	c->total_retrans = BPF_CORE_READ(tp, total_retrans);
	c->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	c->rttvar_us = BPF_CORE_READ(tp, mdev_us) >> 2;
}

static __always_inline void dke_set_owner(struct dke_tcp_conn *c)
{
	c->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(c->comm, sizeof(c->comm));
}

#endif
