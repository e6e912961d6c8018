/* TCP connection lifecycle from tracepoints (no kprobes: they do not exist on
 * every kernel we run on). inet_sock_set_state tells us when a connection is
 * opened and by which side, tcp_destroy_sock when it is gone (its counts are
 * folded into its flow there and nothing of it stays), tcp_retransmit_skb
 * counts retransmits as they happen. */
#include "sock_common.bpf.h"


static __always_inline void dke_note_listener(struct sock *sk, int listening)
{
	struct dke_listen_key lk = {
		.netns = sk->__sk_common.skc_net.net->ns.inum,
		.port = sk->__sk_common.skc_num,
	};
	struct dke_owner owner = {};

	if (!listening) {
		bpf_map_delete_elem(&listeners, &lk);
		return;
	}
	/* listen() runs in the server's context. */
	dke_take_owner(&owner.pid, owner.comm);
	if (bpf_map_update_elem(&listeners, &lk, &owner, BPF_ANY))
		dke_count(DKE_TEL_LISTEN_MAP_FULL);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(dke_tcp_set_state, struct sock *sk, const int oldstate, const int newstate)
{
	struct dke_control *ctl;
	struct dke_sock_state *st;
	struct dke_listen_key lk = {};
	struct dke_owner *owner;

	/* A connection passes ~10 transitions; four matter: connect(),
	 * ESTABLISHED, listen() and a listener's close. (LISTEN -> SYN_RECV is a
	 * request socket born from a listener, not the listener leaving.) Leave
	 * before any memory is read for the others. */
	if (newstate != DKE_TCP_ESTABLISHED && newstate != DKE_TCP_SYN_SENT && newstate != DKE_TCP_LISTEN &&
	    !(oldstate == DKE_TCP_LISTEN && newstate == DKE_TCP_CLOSE))
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	ctl = dke_control_live();
	if (!ctl)
		return 0;

	if (newstate == DKE_TCP_LISTEN || oldstate == DKE_TCP_LISTEN) {
		dke_note_listener(sk, newstate == DKE_TCP_LISTEN);
		return 0;
	}

	/* connect() runs in the caller's context: the moment to learn the
	 * client process, and to have a state that says a connection was
	 * begun here, should the kernel skip its ESTABLISHED
	 * (dke_recover_tcp). The tuple is final at ESTABLISHED. */
	if (newstate == DKE_TCP_SYN_SENT) {
		st = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st) {
			dke_count(DKE_TEL_STATE_FAILED);
			return 0;
		}
		st->key.proto = IPPROTO_TCP;
		st->key.direction = DKE_DIR_OUTGOING;
		dke_take_owner(&st->key.pid, st->key.comm);
		return 0;
	}

	/* ESTABLISHED, in softirq for both sides (the SYN-ACK or the ACK
	 * arrived): the tuple is final. The connection is counted by its
	 * first syscall or its release (DKE_SOCK_EST_PENDING), in the same
	 * visit to the flow as its bytes or its close, and there an accepted
	 * socket learns its owner; until then it belongs to whoever listens
	 * on the port. */
	st = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		dke_count(DKE_TEL_STATE_FAILED);
		return 0;
	}
	if (st->flags & DKE_SOCK_COUNTED)
		return 0; /* already taken up (dke_recover_tcp) */
	st->key.proto = IPPROTO_TCP;
	st->key.direction = oldstate == DKE_TCP_SYN_RECV ? DKE_DIR_INCOMING : DKE_DIR_OUTGOING;
	if (!dke_read_tuple(sk, &st->key))
		return 0;
	if (st->key.direction == DKE_DIR_INCOMING) {
		lk.netns = st->key.netns;
		lk.port = st->key.local_port;
		owner = bpf_map_lookup_elem(&listeners, &lk);
		if (owner) {
			st->key.pid = owner->pid;
			__builtin_memcpy(st->key.comm, owner->comm, sizeof(st->key.comm));
		}
		dke_born_retrans(sk, st, ctl);
	}
	dke_collapse(&st->key, ctl);
	st->flags = DKE_SOCK_COUNTED | DKE_SOCK_EST_PENDING;
	return 0;
}

/* A connection is closed when its owner releases it (close() of its last
 * descriptor: dke_sock_release) and ends when its socket is destroyed: an
 * active closer reaches CLOSE (via TIME_WAIT) in softirq while the
 * application may still have the peer's last bytes to read, a passive closer
 * retransmits its FIN after close(). The close is counted at release, in the
 * closing process's context, where the kernel always runs the program; a
 * softirq can go without its tracing programs (a run skipped because it
 * interrupted the same program, and on this VM every event handled on top of
 * its init process's thread: the exact bench lost one close in ~10,000 that
 * way). Destroy adds what happened after release (the last retransmits, the
 * rtt sample of an interval that had none yet), and closes a connection no
 * process released (a listener's child that moved data but was never
 * accepted). A short connection has taken its sample at its first syscall
 * and made no retransmit: its destroy leaves without visiting the flow. */
static __always_inline void dke_count_close(struct dke_sock_state *st, struct dke_flow_stats *fs)
{
	if (st->flags & DKE_SOCK_EST_PENDING)
		__sync_fetch_and_add(&fs->established, 1);
	__sync_fetch_and_add(&fs->closed, 1);
	st->flags = (st->flags & ~DKE_SOCK_EST_PENDING) | DKE_SOCK_CLOSED;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(dke_tcp_destroy, struct sock *sk)
{
	struct dke_control *ctl;
	struct dke_sock_state *st;
	struct dke_flow_stats *fs;
	struct tcp_sock *tp;

	ctl = dke_control_live();
	if (!ctl)
		return 0;
	st = bpf_sk_storage_get(&sock_state, sk, 0, 0);
	if (!st || !(st->flags & DKE_SOCK_COUNTED))
		st = dke_recover_tcp(sk, st, ctl, 1);
	/* A connect that never completed is not a connection. */
	if (!st || !(st->flags & DKE_SOCK_COUNTED))
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if ((st->flags & DKE_SOCK_CLOSED) && st->rtt_epoch == ctl->epoch && (!tp || tp->total_retrans <= st->retrans_seen)) {
		st->flags = 0;
		return 0;
	}
	fs = dke_flow(&st->key);
	if (!fs)
		return 0;
	dke_take_retrans(sk, st, fs);
	dke_sample_rtt(sk, st, fs, ctl->epoch);
	if (!(st->flags & DKE_SOCK_CLOSED))
		dke_count_close(st, fs);
	/* Nothing more is counted for it (a second destroy event: there is none today). */
	st->flags = 0;
	return 0;
}

/* close() of a socket's last descriptor (inet_release), in the closing
 * process's context. cgroup hook on the root cgroup, like dke_sock_create. */
SEC("cgroup/sock_release")
int dke_sock_release(struct bpf_sock *ctx)
{
	struct dke_sock_state *st;
	struct dke_flow_stats *fs;

	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	st = bpf_sk_storage_get(&sock_state, ctx, 0, 0);
	if (!st || (st->flags & (DKE_SOCK_COUNTED | DKE_SOCK_CLOSED)) != DKE_SOCK_COUNTED || !dke_control_live())
		return 1;
	fs = dke_flow(&st->key);
	if (fs)
		dke_count_close(st, fs);
	return 1;
}

/* A SYN-ACK retransmitted for a connection request (the listener's, or a
 * Fast Open child's), counted into the flow its connection has: netstat's
 * RetransSegs counts it here. The accepted socket is born with its request's
 * count in total_retrans, but a SYN-ACK sent again while two CPUs complete
 * the same handshake, or after the socket was born, is in no socket's count;
 * it is in this event. synack_retrans keeps how many this program counted
 * per request, so the socket born of it adds only those it missed
 * (dke_born_retrans). Softirq only: it cannot interrupt itself, so the kernel
 * never skips it for recursion. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(dke_tcp_retransmit_synack, struct sock *sk, struct request_sock *req)
{
	struct dke_control *ctl = dke_control_live();
	struct sock_common *rc = &req->__req_common;
	struct dke_request_key rk = {};
	struct dke_flow_key key = {};
	struct dke_listen_key lk = {};
	struct dke_owner *owner;
	struct dke_flow_stats *fs;
	__u32 one = 1, *seen;

	if (!ctl)
		return 0;
	key.family = sk->__sk_common.skc_family;
	if (!dke_read_addrs(rc, key.family, &key))
		return 0;
	key.local_port = rc->skc_num;
	key.remote_port = bpf_ntohs(rc->skc_dport);
	key.proto = IPPROTO_TCP;
	key.direction = DKE_DIR_INCOMING;
	key.netns = sk->__sk_common.skc_net.net->ns.inum;
	dke_request_key_of(&key, &rk);
	seen = bpf_map_lookup_elem(&synack_retrans, &rk);
	if (seen)
		__sync_fetch_and_add(seen, 1);
	else
		bpf_map_update_elem(&synack_retrans, &rk, &one, BPF_NOEXIST);
	lk.netns = key.netns;
	lk.port = key.local_port;
	owner = bpf_map_lookup_elem(&listeners, &lk);
	if (owner) {
		key.pid = owner->pid;
		__builtin_memcpy(key.comm, owner->comm, sizeof(key.comm));
	}
	dke_collapse(&key, ctl);
	fs = dke_flow(&key);
	if (fs)
		__sync_fetch_and_add(&fs->retransmits, 1);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(dke_tcp_retransmit, struct sock *sk, const struct sk_buff *skb)
{
	struct dke_sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, 0);
	struct dke_flow_stats *fs;

	if (!st || !(st->flags & DKE_SOCK_COUNTED) || !dke_control_live())
		return 0;
	fs = dke_flow(&st->key);
	if (fs)
		dke_take_retrans(sk, st, fs);
	return 0;
}

/* Listeners that existed before the collector: the loader runs this
 * iterator once over every open file of every process after attaching. An
 * accepted connection whose ESTABLISHED the kernel skipped (recursion) is
 * then still known as new and incoming (dke_recover_tcp), whoever listens.
 * private_data is a struct socket only for socket files: it must point back
 * at the file, and its sock at it. Existing entries (a listen() seen since
 * attaching) are kept. */
SEC("iter/task_file")
int dke_seed_listeners(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	struct dke_listen_key lk = {};
	struct dke_owner owner = {};
	struct socket *sock;
	struct sock *sk;

	if (!file || !task)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_socket) != sock || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
	    BPF_CORE_READ(sk, __sk_common.skc_state) != DKE_TCP_LISTEN)
		return 0;
	lk.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	lk.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	owner.pid = task->tgid;
	BPF_CORE_READ_INTO(&owner.comm, task, group_leader, comm);
	bpf_map_update_elem(&listeners, &lk, &owner, BPF_NOEXIST);
	return 0;
}

/* What each process executed: upstream names a process whose comm was cut
 * at 15 characters by its command line's basename. Once per exec. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(dke_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct dke_exec_name *e;
	__u32 pid = BPF_CORE_READ(p, tgid);
	static const struct dke_exec_name zero;
	char last;

	/* Only names the kernel cut (15 characters, comm is full) need it. */
	if (bpf_core_read(&last, 1, &p->comm[DKE_COMM_LEN - 2]) || !last || !dke_control_live())
		return 0;
	if (bpf_map_update_elem(&exec_names, &pid, &zero, BPF_ANY))
		return 0;
	e = bpf_map_lookup_elem(&exec_names, &pid);
	if (e)
		bpf_probe_read_kernel_str(e->path, sizeof(e->path), BPF_CORE_READ(bprm, filename));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
