/* Bytes per send/recv syscall from the sock_send_length / sock_recv_length
 * tracepoints. They fire in the caller's context, so they also tell us which
 * process owns a socket. Cost is per syscall, not per packet. */
#include "netflow_maps.bpf.h"
#include "sock_common.bpf.h"

#define DKE_MSG_PEEK 2
#define DKE_TCP_ESTABLISHED 1
#define DKE_TCP_CLOSE_WAIT 8

/* A connection that predates attach shows up here first. Track it from now
 * on; user space decides its direction from the listening ports. */
static __always_inline struct dke_tcp_conn *dke_adopt_tcp(struct sock *sk, __u64 cookie)
{
	struct dke_tcp_conn fresh = {};
	__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);

	if (state != DKE_TCP_ESTABLISHED && state != DKE_TCP_CLOSE_WAIT)
		return 0;
	if (!dke_read_tuple(sk, &fresh.tuple, dke_ipv6_disabled))
		return 0;
	fresh.tuple.proto = IPPROTO_TCP;
	fresh.tuple.direction = DKE_DIR_UNKNOWN;
	fresh.cookie = cookie;
	if (bpf_map_update_elem(&tcp_conns, &cookie, &fresh, BPF_NOEXIST) == -DKE_E2BIG)
		dke_count(DKE_TEL_TCP_MAP_FULL);
	return bpf_map_lookup_elem(&tcp_conns, &cookie);
}

static __always_inline void dke_note_udp_owner(struct sock *sk, __u64 cookie)
{
	struct dke_sock_owner owner = {}, *known;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	known = bpf_map_lookup_elem(&sock_owners, &cookie);
	if (known && known->pid == pid)
		return;
	owner.pid = pid;
	owner.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	bpf_get_current_comm(owner.comm, sizeof(owner.comm));
	if (bpf_map_update_elem(&sock_owners, &cookie, &owner, BPF_ANY))
		dke_count(DKE_TEL_OWNER_MAP_FULL);
}

static __always_inline int dke_on_bytes(struct sock *sk, int ret, int flags, int sending)
{
	struct dke_tcp_conn *c;
	__u64 cookie;
	__u16 proto;

	if (ret <= 0 || (!sending && (flags & DKE_MSG_PEEK)))
		return 0;
	proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	if (proto == IPPROTO_UDP) {
		/* UDP bytes are counted per packet by udp_skb.bpf.c, which sees the
		 * real peer; here we only learn the owner. */
		dke_note_udp_owner(sk, cookie);
		return 0;
	}

	c = bpf_map_lookup_elem(&tcp_conns, &cookie);
	if (!c)
		c = dke_adopt_tcp(sk, cookie);
	if (!c)
		return 0;
	if (sending)
		__sync_fetch_and_add(&c->bytes_sent, ret);
	else
		__sync_fetch_and_add(&c->bytes_received, ret);
	if (c->pid != (__u32)(bpf_get_current_pid_tgid() >> 32))
		dke_set_owner(c);
	dke_read_tcp_metrics(sk, c);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(dke_sock_send, struct sock *sk, int ret, int flags)
{
	return dke_on_bytes(sk, ret, flags, 1);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(dke_sock_recv, struct sock *sk, int ret, int flags)
{
	return dke_on_bytes(sk, ret, flags, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
