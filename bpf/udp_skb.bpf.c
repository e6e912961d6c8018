/* UDP bytes per (socket, peer) from cgroup_skb on the cgroup v2 root, which
 * sees every packet of every process in every network namespace. Packets,
 * not syscalls, because an unconnected socket's peer and source address exist
 * only in the packet (the syscall tracepoints show 0.0.0.0:0). TCP packets
 * leave after one load: TCP is counted per syscall in sock_bytes.bpf.c. */
#include "netflow_maps.bpf.h"
#include <bpf/bpf_endian.h>

#define DKE_ETH_P_IP 0x0800
#define DKE_ETH_P_IPV6 0x86DD
#define DKE_IP_OFFMASK 0x1fff

struct dke_udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__be16 check;
};

/* Returns the UDP payload length, or -1 when the packet is not a first
 * fragment of a UDP datagram we track. */
static __always_inline int dke_parse_udp(struct __sk_buff *skb, struct dke_tuple *t, int egress)
{
	struct dke_udphdr uh;
	__u8 *local = t->local_addr, *remote = t->remote_addr;
	__u32 l4off;

	if (skb->protocol == bpf_htons(DKE_ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.protocol != IPPROTO_UDP)
			return -1;
		if (bpf_ntohs(ip.frag_off) & DKE_IP_OFFMASK)
			return -1;
		t->family = 2;
		__builtin_memcpy(local, egress ? &ip.saddr : &ip.daddr, 4);
		__builtin_memcpy(remote, egress ? &ip.daddr : &ip.saddr, 4);
		l4off = (ip.ihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(DKE_ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (dke_ipv6_disabled)
			return -1;
		/* Extension headers before UDP are rare on the wire; not followed. */
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) || ip6.nexthdr != IPPROTO_UDP)
			return -1;
		t->family = 10;
		__builtin_memcpy(local, egress ? &ip6.saddr : &ip6.daddr, 16);
		__builtin_memcpy(remote, egress ? &ip6.daddr : &ip6.saddr, 16);
		l4off = sizeof(ip6);
	} else {
		return -1;
	}
	if (bpf_skb_load_bytes(skb, l4off, &uh, sizeof(uh)))
		return -1;
	t->local_port = bpf_ntohs(egress ? uh.source : uh.dest);
	t->remote_port = bpf_ntohs(egress ? uh.dest : uh.source);
	t->proto = IPPROTO_UDP;
	return (int)bpf_ntohs(uh.len) - (int)sizeof(uh);
}

static __always_inline int dke_count_udp(struct __sk_buff *skb, int egress)
{
	struct dke_udp_key key = {};
	struct dke_udp_stats *st, fresh = {};
	int len = dke_parse_udp(skb, &key.tuple, egress);

	if (len < 0)
		return 1;
	key.cookie = bpf_get_socket_cookie(skb);
	st = bpf_map_lookup_elem(&udp_flows, &key);
	if (!st) {
		/* direction is part of the key only through the first packet:
		 * look the flow up under the other direction before creating it. */
		key.tuple.direction = egress ? DKE_DIR_INCOMING : DKE_DIR_OUTGOING;
		st = bpf_map_lookup_elem(&udp_flows, &key);
	}
	if (!st) {
		key.tuple.direction = egress ? DKE_DIR_OUTGOING : DKE_DIR_INCOMING;
		if (bpf_map_update_elem(&udp_flows, &key, &fresh, BPF_NOEXIST) == -DKE_E2BIG)
			dke_count(DKE_TEL_UDP_MAP_FULL);
		st = bpf_map_lookup_elem(&udp_flows, &key);
		if (!st)
			return 1;
	}
	if (egress)
		__sync_fetch_and_add(&st->bytes_sent, len);
	else
		__sync_fetch_and_add(&st->bytes_received, len);
	st->last_seen_ns = bpf_ktime_get_ns();
	return 1; /* never drop: we only observe */
}

SEC("cgroup_skb/egress")
int dke_udp_egress(struct __sk_buff *skb)
{
	return dke_count_udp(skb, 1);
}

SEC("cgroup_skb/ingress")
int dke_udp_ingress(struct __sk_buff *skb)
{
	return dke_count_udp(skb, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
