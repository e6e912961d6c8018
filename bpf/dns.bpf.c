/* dnsflow: DNS packets of local clients, captured with cgroup_skb on the
 * cgroup v2 root. Why cgroup_skb and not upstream's AF_PACKET socket or tc:
 * attached at the root it sees every socket of every process in every network
 * namespace (containers included) without following interfaces as they come
 * and go, and it runs on kernels without kprobes. It sees packets at the
 * socket (egress before fragmentation, ingress after reassembly), so a UDP
 * answer is always whole. Forwarded traffic that no local socket owns is not
 * seen; DNS that does not start or end on this host is not ours to report.
 *
 * Only the client's side is kept: queries leaving a local socket for a DNS
 * port and answers arriving from one. A resolver on this host would otherwise
 * show every exchange twice (once as the client's, once as its own).
 * BPF only recognises DNS packets; user space parses and pairs them. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "dns.h"

#define DKE_ETH_P_IP 0x0800
#define DKE_ETH_P_IPV6 0x86DD
#define DKE_IP_OFFMASK 0x1fff
#define DKE_DNS_HEADER_LEN 12
/* Wake user space only once this much waits; the poller drains the rest on
 * its 100 ms timeout. Waking per packet costs ~6x the program's run time. */
#define DKE_DNS_WAKEUP_BYTES (64 * 1024)

/* --dns-ports; set before load. Slots after the last port are 0. */
const volatile __u16 dke_dns_ports[DKE_DNS_PORTS_MAX] = {53};
const volatile __u8 dke_dns_ipv6_disabled = 0;

/* struct dke_dns_event records of two sizes (see DKE_DNS_PAYLOAD_SMALL). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} dns_events SEC(".maps");

/* enum dke_dns_telemetry -> u64 count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DKE_DNS_TEL_MAX);
	__type(key, __u32);
	__type(value, __u64);
} dns_telemetry SEC(".maps");

static __always_inline void dke_dns_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&dns_telemetry, &idx);
	if (v)
		*v += 1;
}

static __always_inline int dke_is_dns_port(__u16 port)
{
#pragma unroll
	for (int i = 0; i < DKE_DNS_PORTS_MAX; i++) {
		if (dke_dns_ports[i] != 0 && dke_dns_ports[i] == port)
			return 1;
	}
	return 0;
}

struct dke_l4 {
	__u16 sport;
	__u16 dport;
};

/* Copies the payload straight into ring-buffer memory: no per-CPU scratch
 * that a softirq on the same CPU could overwrite halfway (egress runs in
 * process context and can be interrupted by ingress). `room` is a constant
 * power of two after inlining, as reservations and the verifier need. */
static __always_inline void dke_emit(struct __sk_buff *skb, struct dke_dns_event *hdr, __u32 payload_off, __u32 n,
				     const __u32 room)
{
	struct dke_dns_event *rec;
	__u64 wakeup;

	rec = bpf_ringbuf_reserve(&dns_events, sizeof(*hdr) + room, 0);
	if (!rec) {
		dke_dns_count(DKE_DNS_TEL_RINGBUF_FULL);
		return;
	}
	/* The verifier must see 1 <= n <= room whatever clang made of the caller's min. */
	asm volatile("" : "+r"(n));
	n = ((n - 1) & (room - 1)) + 1;
	if (bpf_skb_load_bytes(skb, payload_off, rec->payload, n)) {
		bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
		return;
	}
	hdr->cap_len = n;
	__builtin_memcpy(rec, hdr, sizeof(*hdr));
	wakeup = bpf_ringbuf_query(&dns_events, BPF_RB_AVAIL_DATA) >= DKE_DNS_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(rec, wakeup);
	dke_dns_count(DKE_DNS_TEL_PACKETS);
}

static __always_inline int dke_capture(struct __sk_buff *skb, int egress)
{
	struct dke_dns_event hdr = {};
	struct dke_l4 ports;
	__u32 l4off, payload_off, wire_len, n;
	__u8 proto;

	if (skb->protocol == bpf_htons(DKE_ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 1;
		if (ip.protocol != IPPROTO_UDP && ip.protocol != IPPROTO_TCP)
			return 1;
		if (bpf_ntohs(ip.frag_off) & DKE_IP_OFFMASK)
			return 1;
		proto = ip.protocol;
		hdr.family = 2;
		__builtin_memcpy(hdr.saddr, &ip.saddr, 4);
		__builtin_memcpy(hdr.daddr, &ip.daddr, 4);
		l4off = (ip.ihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(DKE_ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (dke_dns_ipv6_disabled)
			return 1;
		/* Extension headers before the transport header are rare for DNS; not followed. */
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 1;
		if (ip6.nexthdr != IPPROTO_UDP && ip6.nexthdr != IPPROTO_TCP)
			return 1;
		proto = ip6.nexthdr;
		hdr.family = 10;
		__builtin_memcpy(hdr.saddr, &ip6.saddr, 16);
		__builtin_memcpy(hdr.daddr, &ip6.daddr, 16);
		l4off = sizeof(ip6);
	} else {
		return 1;
	}
	if (bpf_skb_load_bytes(skb, l4off, &ports, sizeof(ports)))
		return 1;
	hdr.sport = bpf_ntohs(ports.sport);
	hdr.dport = bpf_ntohs(ports.dport);
	/* The client's side: queries out to a DNS port, answers in from one. */
	if (!dke_is_dns_port(egress ? hdr.dport : hdr.sport))
		return 1;

	if (proto == IPPROTO_TCP) {
		__u8 doff;
		__be32 seq;

		if (bpf_skb_load_bytes(skb, l4off + 4, &seq, sizeof(seq)) ||
		    bpf_skb_load_bytes(skb, l4off + 12, &doff, sizeof(doff)))
			return 1;
		hdr.tcp_seq = bpf_ntohl(seq);
		payload_off = l4off + (doff >> 4) * 4;
	} else {
		payload_off = l4off + 8;
	}
	/* skb->len, not the IP length: an egress GSO packet is one skb of many segments. */
	if (skb->len <= payload_off)
		return 1; /* SYN, ACK, FIN: no payload */
	wire_len = skb->len - payload_off;
	if (proto == IPPROTO_UDP) {
		__u8 b2;

		if (wire_len < DKE_DNS_HEADER_LEN)
			return 1;
		/* Both ends on DNS ports (resolver to resolver): the QR bit says
		 * whether this is the client's query or the server's answer. */
		if (bpf_skb_load_bytes(skb, payload_off + 2, &b2, 1))
			return 1;
		if ((b2 >> 7) == (egress ? 1 : 0))
			return 1;
	}

	hdr.ktime_ns = bpf_ktime_get_ns();
	hdr.proto = proto;
	hdr.flags = egress ? DKE_DNS_EGRESS : 0;
	hdr.wire_len = wire_len;
	if (wire_len <= DKE_DNS_PAYLOAD_SMALL) {
		dke_emit(skb, &hdr, payload_off, wire_len, DKE_DNS_PAYLOAD_SMALL);
		return 1;
	}
	n = wire_len;
	if (n > DKE_DNS_PAYLOAD_MAX) {
		n = DKE_DNS_PAYLOAD_MAX;
		dke_dns_count(DKE_DNS_TEL_TRUNCATED);
	}
	dke_emit(skb, &hdr, payload_off, n, DKE_DNS_PAYLOAD_MAX);
	return 1; /* never drop: we only observe */
}

SEC("cgroup_skb/egress")
int dke_dns_egress(struct __sk_buff *skb)
{
	return dke_capture(skb, 1);
}

SEC("cgroup_skb/ingress")
int dke_dns_ingress(struct __sk_buff *skb)
{
	return dke_capture(skb, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
