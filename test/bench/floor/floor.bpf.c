/* The floor of any collector on our hooks: programs that do nothing, on the
 * same tracepoints and cgroup hooks the net loader uses. What they cost (the
 * kernel's own price for running a BPF program there) is the part of our
 * cost no change to our programs can remove. Named dkf_*, never dke_*. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(dkf_tcp_set_state, struct sock *sk, const int oldstate, const int newstate) { return 0; }

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(dkf_tcp_destroy, struct sock *sk) { return 0; }

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(dkf_tcp_retransmit_synack, struct sock *sk, struct request_sock *req) { return 0; }

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(dkf_tcp_retransmit, struct sock *sk, const struct sk_buff *skb) { return 0; }

SEC("tp_btf/sock_send_length")
int BPF_PROG(dkf_sock_send, struct sock *sk, int ret, int flags) { return 0; }

SEC("tp_btf/sock_recv_length")
int BPF_PROG(dkf_sock_recv, struct sock *sk, int ret, int flags) { return 0; }

SEC("cgroup_skb/egress")
int dkf_skb_egress(struct __sk_buff *skb) { return 1; }

SEC("cgroup_skb/ingress")
int dkf_skb_ingress(struct __sk_buff *skb) { return 1; }

SEC("cgroup/sock_create")
int dkf_sock_create(struct bpf_sock *ctx) { return 1; }

SEC("cgroup/sock_release")
int dkf_sock_release(struct bpf_sock *ctx) { return 1; }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
