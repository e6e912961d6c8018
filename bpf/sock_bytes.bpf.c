/* Bytes per send/recv syscall from the sock_send_length / sock_recv_length
 * tracepoints (Linux >= 6.4), or fexit on tcp_sendmsg/tcp_recvmsg before. They fire in the caller's context, so they also
 * tell us which process owns a socket. Cost is per syscall, not per packet:
 * a socket-local storage look-up and one flow-counter add. UDP bytes are
 * counted per packet (skb.bpf.c, which sees the peer); here a UDP socket
 * only learns its owner. */
#include "sock_common.bpf.h"

#define DKE_MSG_PEEK 2

/* A UDP socket's owner: the process of its latest syscall. Checked before
 * the control block: a socket whose owner is already this process (a
 * resolver's or a client's every datagram after its first) costs one
 * storage look-up and no clock read. */
static __always_inline void dke_udp_owner(struct sock *sk)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct dke_sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, 0);

	if (st && st->key.pid == pid && (st->flags & DKE_SOCK_OWNED))
		return;
	if (!dke_control_live())
		return;
	if (!st)
		st = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		dke_count(DKE_TEL_STATE_FAILED);
		return;
	}
	dke_take_owner(&st->key.pid, st->key.comm);
	st->key.netns = sk->__sk_common.skc_net.net->ns.inum;
	st->flags |= DKE_SOCK_OWNED;
}

static __always_inline int dke_on_bytes(struct sock *sk, int ret, int flags, int sending)
{
	struct dke_control *ctl;
	struct dke_sock_state *st;
	struct dke_flow_stats *fs;
	__u32 pid;
	__u16 proto;

	if (ret <= 0 || (!sending && (flags & DKE_MSG_PEEK)))
		return 0;
	proto = sk->sk_protocol;
	if (proto == IPPROTO_UDP) {
		dke_udp_owner(sk);
		return 0;
	}
	if (proto != IPPROTO_TCP)
		return 0;
	ctl = dke_control_live();
	if (!ctl)
		return 0;
	pid = bpf_get_current_pid_tgid() >> 32;

	st = bpf_sk_storage_get(&sock_state, sk, 0, 0);
	if (!st || !(st->flags & DKE_SOCK_COUNTED))
		st = dke_recover_tcp(sk, st, ctl, 0);
	if (!st || !(st->flags & DKE_SOCK_COUNTED))
		return 0;
	if (st->key.pid != pid) {
		/* A worker took the connection from the listener (or a
		 * forked child inherited it): its counts go to the new owner's
		 * flow from now on. */
		dke_take_owner(&st->key.pid, st->key.comm);
	}
	fs = dke_flow(&st->key);
	if (!fs)
		return 0;
	if (sending)
		__sync_fetch_and_add(&fs->bytes_sent, ret);
	else
		__sync_fetch_and_add(&fs->bytes_received, ret);
	if (st->flags & DKE_SOCK_EST_PENDING) {
		st->flags &= ~DKE_SOCK_EST_PENDING;
		__sync_fetch_and_add(&fs->established, 1);
	}
	dke_sample_rtt(sk, st, fs, ctl->epoch);
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

/* Kernels without those tracepoints (before 6.4: Debian 12, Ubuntu 22.04,
 * RHEL 9): the same from fexit on the TCP send and receive functions, where
 * the kernel has BPF trampolines. The loader loads one set or the other. */
SEC("fexit/tcp_sendmsg")
int BPF_PROG(dke_tcp_sendmsg_exit, struct sock *sk, struct msghdr *msg, size_t size, int ret)
{
	return dke_on_bytes(sk, ret, 0, 1);
}

SEC("fexit/tcp_recvmsg")
int BPF_PROG(dke_tcp_recvmsg_exit, struct sock *sk, struct msghdr *msg, size_t len, int flags, int *addr_len, int ret)
{
	return dke_on_bytes(sk, ret, flags, 0);
}

/* Before 5.19 tcp_recvmsg had a `nonblock` argument. */
SEC("fexit/tcp_recvmsg")
int BPF_PROG(dke_tcp_recvmsg_exit_nb, struct sock *sk, struct msghdr *msg, size_t len, int nonblock, int flags, int *addr_len,
	     int ret)
{
	return dke_on_bytes(sk, ret, flags, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
