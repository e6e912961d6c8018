/* TCP connection lifecycle from tracepoints (no kprobes: they do not exist on
 * every kernel we run on). inet_sock_set_state tells us when a connection is
 * opened and by which side, tcp_destroy_sock when it is gone; tcp_retransmit_skb keeps the
 * retransmit snapshot fresh between syscalls. */
#include "netflow_maps.bpf.h"
#include "sock_common.bpf.h"

#define DKE_TCP_ESTABLISHED 1
#define DKE_TCP_SYN_SENT 2
#define DKE_TCP_SYN_RECV 3
#define DKE_TCP_LISTEN 10

/* Ring-buffer wake-ups cost more than the event itself; wake the poller only
 * once this much is queued (it also drains on its own timeout). */
#define DKE_WAKEUP_BYTES (64 * 1024)

static __always_inline void dke_emit_closed(const struct sock *sk, struct dke_tcp_conn *c)
{
	struct dke_tcp_conn *ev;
	__u64 flags;

	dke_read_tcp_metrics(sk, c);
	ev = bpf_ringbuf_reserve(&tcp_closed_events, sizeof(*ev), 0);
	if (!ev) {
		dke_count(DKE_TEL_RINGBUF_FULL);
		return;
	}
	__builtin_memcpy(ev, c, sizeof(*ev));
	flags = bpf_ringbuf_query(&tcp_closed_events, BPF_RB_AVAIL_DATA) >= DKE_WAKEUP_BYTES ?
			BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(ev, flags);
	dke_count(DKE_TEL_TCP_CLOSED);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(dke_tcp_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct dke_tcp_conn *c, fresh = {};
	__u64 cookie;

	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	cookie = bpf_get_socket_cookie((struct sock *)sk);

	if (newstate == DKE_TCP_LISTEN || oldstate == DKE_TCP_LISTEN) {
		struct dke_listen_key lk = {
			.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum),
			.port = BPF_CORE_READ(sk, __sk_common.skc_num),
		};
		if (newstate == DKE_TCP_LISTEN) {
			/* listen() runs in the server's context. */
			struct dke_sock_owner owner = { .netns = lk.netns };
			owner.pid = bpf_get_current_pid_tgid() >> 32;
			bpf_get_current_comm(owner.comm, sizeof(owner.comm));
			bpf_map_update_elem(&listeners, &lk, &owner, BPF_ANY);
		} else {
			bpf_map_delete_elem(&listeners, &lk);
		}
		return 0;
	}

	if (newstate == DKE_TCP_SYN_SENT) {
		/* connect() runs in the caller's context: the only reliable moment
		 * to learn the client process. */
		if (!dke_read_tuple(sk, &fresh.tuple, dke_ipv6_disabled))
			return 0;
		fresh.tuple.proto = IPPROTO_TCP;
		fresh.tuple.direction = DKE_DIR_OUTGOING;
		fresh.cookie = cookie;
		dke_set_owner(&fresh);
		if (bpf_map_update_elem(&tcp_conns, &cookie, &fresh, BPF_ANY))
			dke_count(DKE_TEL_TCP_MAP_FULL);
		return 0;
	}

	if (newstate == DKE_TCP_ESTABLISHED) {
		c = bpf_map_lookup_elem(&tcp_conns, &cookie);
		if (c) {
			/* The local port and address are final only now. */
			__u8 dir = c->tuple.direction;
			dke_read_tuple(sk, &c->tuple, dke_ipv6_disabled);
			c->tuple.proto = IPPROTO_TCP;
			c->tuple.direction = dir;
			c->established = 1;
			dke_read_tcp_metrics(sk, c);
			return 0;
		}
		if (!dke_read_tuple(sk, &fresh.tuple, dke_ipv6_disabled))
			return 0;
		fresh.tuple.proto = IPPROTO_TCP;
		/* Passive open: the child socket leaves SYN_RECV in softirq context;
		 * the owner is whoever listens on the port (refined at the first
		 * send or recv, e.g. when a worker process took the connection). */
		fresh.tuple.direction = oldstate == DKE_TCP_SYN_RECV ? DKE_DIR_INCOMING : DKE_DIR_OUTGOING;
		fresh.cookie = cookie;
		fresh.established = 1;
		if (fresh.tuple.direction == DKE_DIR_INCOMING) {
			struct dke_listen_key lk = { .netns = fresh.tuple.netns, .port = fresh.tuple.local_port };
			struct dke_sock_owner *owner = bpf_map_lookup_elem(&listeners, &lk);
			if (owner) {
				fresh.pid = owner->pid;
				__builtin_memcpy(fresh.comm, owner->comm, sizeof(fresh.comm));
			}
		}
		dke_read_tcp_metrics(sk, &fresh);
		if (bpf_map_update_elem(&tcp_conns, &cookie, &fresh, BPF_ANY))
			dke_count(DKE_TEL_TCP_MAP_FULL);
		return 0;
	}

	return 0;
}

/* The end of a connection is when its socket is destroyed, not when it
 * enters TCP_CLOSE: an active closer reaches CLOSE (via TIME_WAIT) in softirq
 * while the application may still have the peer's last bytes to read. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(dke_tcp_destroy, struct sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct dke_tcp_conn *c = bpf_map_lookup_elem(&tcp_conns, &cookie);

	if (!c || c->closed)
		return 0;
	/* A connect that never completed is not a connection. */
	if (!c->established && !c->bytes_sent && !c->bytes_received) {
		bpf_map_delete_elem(&tcp_conns, &cookie);
		return 0;
	}
	c->closed = 1;
	/* The entry stays until user space has reported it (see tcp_conns);
	 * the event only tells it early. */
	dke_emit_closed(sk, c);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(dke_tcp_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie((struct sock *)sk);
	struct dke_tcp_conn *c = bpf_map_lookup_elem(&tcp_conns, &cookie);

	if (c)
		dke_read_tcp_metrics(sk, c);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
