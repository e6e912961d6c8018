/* Packets, from cgroup_skb on the cgroup v2 root (every socket of every
 * process in every network namespace): UDP bytes per flow, and DNS messages
 * for dnsflow. One program per direction; TCP packets that are not DNS leave
 * after a few context reads (TCP bytes are counted per syscall in
 * sock_bytes.bpf.c). Packets, not syscalls, for UDP because an unconnected
 * socket's peer and source address exist only in the packet. Forwarded
 * traffic no local socket owns is not seen: it is not this host's. */
#include "netflow_maps.bpf.h"
#include <bpf/bpf_endian.h>

#define DKE_ETH_P_IP 0x0800
#define DKE_ETH_P_IPV6 0x86DD
#define DKE_IP_OFFMASK 0x1fff
#define DKE_DNS_HEADER_LEN 12
#define DKE_IPV6_EXT_MAX 4
/* Wake the loader each time another eighth of a ring waits; it drains the
 * rest on its own timer. A wake-up is a self-interrupt (a VM exit under a
 * hypervisor): several times the program's own run time, so never per packet. */
#define DKE_DNS_WAKEUP_PARTS 8

struct dke_l4 {
	__u16 sport;
	__u16 dport;
};

struct dke_pkt {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* host order */
	__u16 dport;
	__u16 family;
	__u8 proto;
	__u8 _pad;
	__u32 l4off;
	int udp_len; /* UDP payload bytes (from the UDP header); -1 for TCP */
};

static __always_inline int dke_is_dns_port(const struct dke_control *c, __u16 port)
{
#pragma unroll
	for (int i = 0; i < DKE_DNS_PORTS_MAX; i++) {
		if (c->dns_ports[i] == 0)
			return 0;
		if (c->dns_ports[i] == port)
			return 1;
	}
	return 0;
}

/* IP and transport headers; IPv6 extension headers are walked. Returns 0 for
 * anything that is not the first fragment of a UDP or TCP packet. */
static __always_inline int dke_parse(struct __sk_buff *skb, struct dke_pkt *p)
{
	struct {
		struct dke_l4 ports;
		__be16 len;
		__be16 check;
	} l4;

	if (skb->protocol == bpf_htons(DKE_ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 0;
		if (bpf_ntohs(ip.frag_off) & DKE_IP_OFFMASK)
			return 0;
		p->proto = ip.protocol;
		p->family = 2;
		__builtin_memcpy(p->saddr, &ip.saddr, 4);
		__builtin_memcpy(p->daddr, &ip.daddr, 4);
		p->l4off = (ip.ihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(DKE_ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		__u8 next;
		__u32 off = sizeof(ip6);

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 0;
		next = ip6.nexthdr;
#pragma unroll
		for (int i = 0; i < DKE_IPV6_EXT_MAX; i++) {
			__u8 ext[2];

			if (next != 0 && next != 43 && next != 60 && next != 44)
				break;
			if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)))
				return 0;
			if (next == 44) {
				__be16 frag;

				if (bpf_skb_load_bytes(skb, off + 2, &frag, sizeof(frag)))
					return 0;
				if (bpf_ntohs(frag) & 0xfff8)
					return 0; /* not the first fragment: no transport header */
				off += 8;
			} else {
				off += (ext[1] + 1) * 8;
			}
			next = ext[0];
		}
		p->proto = next;
		p->family = 10;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		p->l4off = off;
	} else {
		return 0;
	}
	if (p->proto != IPPROTO_UDP && p->proto != IPPROTO_TCP)
		return 0;
	/* UDP: the whole 8-byte header at once, for its length too. */
	if (bpf_skb_load_bytes(skb, p->l4off, &l4, p->proto == IPPROTO_UDP ? sizeof(l4) : sizeof(l4.ports)))
		return 0;
	p->sport = bpf_ntohs(l4.ports.sport);
	p->dport = bpf_ntohs(l4.ports.dport);
	p->udp_len = p->proto == IPPROTO_UDP ? (int)bpf_ntohs(l4.len) - (int)sizeof(l4) : -1;
	return 1;
}

/* Set by the loader before loading: 1 where the kernel has atomic fetch
 * operations (Linux 5.12) and runs a raw_tp program on a chosen CPU (5.10),
 * which staging needs. Else the verifier never walks the staging code (it
 * prunes branches on read-only constants) and every record goes straight
 * to the ring. In .rodata, not in control: an earlier loader's programs on
 * the same kernel were loaded with the same answer. */
const volatile __u8 dke_dns_staging = 0;

/* Whether the record of `size` bytes about to go into the ring should wake
 * the loader: when it takes what waits there across a multiple of a part of
 * the ring, not whenever that much waits (while the loader is on its way,
 * every packet would send another wake-up). */
static __always_inline __u64 dke_dns_wakeup(void *ring, __u64 size)
{
	__u64 avail = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) + size;
	__u64 part = bpf_ringbuf_query(ring, BPF_RB_RING_SIZE) / DKE_DNS_WAKEUP_PARTS;

	return part && avail / part != (avail - size) / part ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void *dke_dns_ring(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&dns_rings, &cpu);
}

/* Copies the payload straight into ring-buffer memory. `room` is a constant
 * power of two after inlining, as reservations and the verifier need. */
static __always_inline void dke_emit_dns(struct __sk_buff *skb, struct dke_dns_event *hdr, __u32 payload_off, __u32 n,
					 const __u32 room)
{
	struct dke_dns_event *rec;
	void *ring = dke_dns_ring();
	__u64 wakeup = ring ? dke_dns_wakeup(ring, sizeof(*hdr) + room) : 0;

	rec = ring ? bpf_ringbuf_reserve(ring, sizeof(*hdr) + room, 0) : 0;
	if (!rec) {
		dke_count(DKE_TEL_DNS_RINGBUF_FULL);
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
	bpf_ringbuf_submit(rec, wakeup);
	dke_count(DKE_TEL_DNS_PACKETS);
}

/* A CPU's stage (bpf/dns.h) is touched only by the one whose increment of its
 * `inflight` found 0: a softirq's program that interrupts a process-context
 * one, a task that preempts another's program, or the loader's flush in the
 * middle of either finds it taken and goes straight to the ring (or, the
 * flush, reports busy). `inflight` is raised before a packet's clock read
 * and lowered once its record is visible, staged or in the ring, so a flush
 * that finds it 0 leaves in the ring every record of a clock read before it.
 * Returns the stage when this caller owns it. */
static __always_inline struct dke_dns_stage *dke_dns_enter(struct dke_dns_stage **stage)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct dke_dns_stage *s;

	*stage = 0;
	if (!dke_dns_staging)
		return 0;
	s = bpf_map_lookup_elem(&dns_stage, &cpu);
	if (!s)
		return 0;
	*stage = s;
	return __sync_fetch_and_add(&s->inflight, 1) == 0 ? s : 0;
}

static __always_inline void dke_dns_leave(struct dke_dns_stage *stage)
{
	if (stage)
		__sync_fetch_and_sub(&stage->inflight, 1);
}

/* The stage's records into the CPU's ring, as one record. Owner only. */
static __always_inline void dke_dns_flush_stage(struct dke_dns_stage *s)
{
	__u64 size = s->used;
	void *ring;

	if (!size)
		return;
	if (size > DKE_DNS_STAGE_BYTES)
		size = DKE_DNS_STAGE_BYTES;
	ring = dke_dns_ring();
	/* Counted here, one telemetry add per batch instead of one per packet. */
	if (ring && !bpf_ringbuf_output(ring, s->bytes, size, dke_dns_wakeup(ring, size)))
		dke_count_n(DKE_TEL_DNS_PACKETS, s->count);
	else
		dke_count_n(DKE_TEL_DNS_RINGBUF_FULL, s->count);
	s->used = 0;
	s->count = 0;
}

/* A tiny record into the owned stage, which goes to the ring once it has no
 * room for another. */
static __always_inline void dke_stage_dns(struct dke_dns_stage *s, struct __sk_buff *skb, struct dke_dns_event *hdr,
					  __u32 payload_off, __u32 n)
{
	/* The last offset where a record of any tiny size fits. */
	const __u32 last = DKE_DNS_STAGE_BYTES - DKE_DNS_STAGED_LEN(DKE_DNS_PAYLOAD_TINY);
	__u32 off = s->used;

	/* Never past last (a stage goes to the ring as soon as it is), but the
	 * verifier must see off <= last and 1 <= n <= the tiny payload. */
	asm volatile("" : "+r"(off));
	if (off > last)
		return;
	asm volatile("" : "+r"(n));
	n = ((n - 1) & (DKE_DNS_PAYLOAD_TINY - 1)) + 1;
	if (bpf_skb_load_bytes(skb, payload_off, s->bytes + off + sizeof(*hdr), n))
		return;
	hdr->cap_len = n;
	hdr->flags |= DKE_DNS_STAGED;
	__builtin_memcpy(s->bytes + off, hdr, sizeof(*hdr));
	off += DKE_DNS_STAGED_LEN(n);
	s->used = off;
	s->count++;
	if (off > last)
		dke_dns_flush_stage(s);
}

/* A DNS message to or from a DNS port, either side of it local: a client
 * here asking, or a resolver here answering. */
static __always_inline void dke_capture_dns(struct __sk_buff *skb, const struct dke_pkt *p, __u32 netns,
					    const struct dke_control *ctl, int egress)
{
	struct dke_dns_event hdr = {};
	struct dke_dns_stage *stage, *owned;
	__u32 payload_off, wire_len, n;

	if (p->proto == IPPROTO_TCP) {
		__u8 doff;
		__be32 seq;

		if (bpf_skb_load_bytes(skb, p->l4off + 4, &seq, sizeof(seq)) ||
		    bpf_skb_load_bytes(skb, p->l4off + 12, &doff, sizeof(doff)))
			return;
		hdr.tcp_seq = bpf_ntohl(seq);
		payload_off = p->l4off + (doff >> 4) * 4;
	} else {
		payload_off = p->l4off + 8;
	}
	/* skb->len, not the IP length: an egress GSO packet is one skb of many segments. */
	if (skb->len <= payload_off)
		return; /* SYN, ACK, FIN: no payload */
	wire_len = skb->len - payload_off;
	hdr.flags = egress ? DKE_DNS_EGRESS : 0;
	if (p->proto == IPPROTO_UDP) {
		__u8 b2;

		if (wire_len < DKE_DNS_HEADER_LEN || bpf_skb_load_bytes(skb, payload_off + 2, &b2, 1))
			return;
		/* The local side answers when it sends an answer or receives a
		 * query (right even when both ports are DNS ports). */
		if ((b2 >> 7) == (egress ? 1 : 0))
			hdr.flags |= DKE_DNS_LOCAL_SERVER;
	} else if (dke_is_dns_port(ctl, egress ? p->sport : p->dport)) {
		hdr.flags |= DKE_DNS_LOCAL_SERVER;
	}
	__builtin_memcpy(hdr.saddr, p->saddr, 16);
	__builtin_memcpy(hdr.daddr, p->daddr, 16);
	hdr.sport = p->sport;
	hdr.dport = p->dport;
	hdr.family = p->family;
	hdr.proto = p->proto;
	hdr.netns = netns;
	hdr.wire_len = wire_len;
	owned = dke_dns_enter(&stage);
	hdr.ktime_ns = bpf_ktime_get_ns(); /* the packet's time: the only clock read of a packet */
	if (wire_len <= DKE_DNS_PAYLOAD_TINY) {
		if (owned)
			dke_stage_dns(owned, skb, &hdr, payload_off, wire_len);
		else
			dke_emit_dns(skb, &hdr, payload_off, wire_len, DKE_DNS_PAYLOAD_TINY);
	} else if (wire_len <= DKE_DNS_PAYLOAD_SMALL) {
		dke_emit_dns(skb, &hdr, payload_off, wire_len, DKE_DNS_PAYLOAD_SMALL);
	} else {
		n = wire_len;
		if (n > DKE_DNS_PAYLOAD_MAX) {
			n = DKE_DNS_PAYLOAD_MAX;
			dke_count(DKE_TEL_DNS_TRUNCATED);
		}
		dke_emit_dns(skb, &hdr, payload_off, n, DKE_DNS_PAYLOAD_MAX);
	}
	dke_dns_leave(stage);
}

/* UDP payload bytes into the flow of (socket owner, local, peer). A socket's
 * direction is who sent its first datagram; its owner is learnt at its first
 * socket() (dke_sock_create), first send (egress runs in the sender's
 * context) or first syscall (sock_bytes.bpf.c). */
static __always_inline void dke_count_udp(const struct dke_pkt *p, struct dke_sock_state *st,
					  const struct dke_control *ctl, int egress)
{
	struct dke_flow_stats *fs;
	struct dke_flow_key key;
	int len = p->udp_len;

	if (len < 0)
		return;
	if (!(st->flags & DKE_SOCK_UDP)) {
		st->flags |= DKE_SOCK_UDP;
		st->key.direction = egress ? DKE_DIR_OUTGOING : DKE_DIR_INCOMING;
	}
	__builtin_memcpy(&key, &st->key, sizeof(key));
	key.family = p->family;
	key.proto = IPPROTO_UDP;
	__builtin_memcpy(key.local_addr, egress ? p->saddr : p->daddr, 16);
	__builtin_memcpy(key.remote_addr, egress ? p->daddr : p->saddr, 16);
	key.local_port = egress ? p->sport : p->dport;
	key.remote_port = egress ? p->dport : p->sport;
	if (key.direction == DKE_DIR_OUTGOING)
		key.local_port = dke_client_port(key.local_port, ctl);
	else
		key.remote_port = dke_client_port(key.remote_port, ctl);
	fs = dke_flow(&key);
	if (!fs)
		return;
	if (egress)
		__sync_fetch_and_add(&fs->bytes_sent, len);
	else
		__sync_fetch_and_add(&fs->bytes_received, len);
}

/* The common case, plain TCP, decided from the packet's first bytes with
 * direct packet access: no helper call, no socket look-up. Returns 1 when the
 * packet is TCP between non-DNS ports (nothing for us), 0 when it needs the
 * full look (UDP, DNS, or headers not where we can read them directly). */
static __always_inline int dke_plain_tcp(struct __sk_buff *skb, const struct dke_control *c)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct dke_l4 *ports;

	if (skb->protocol == bpf_htons(DKE_ETH_P_IP)) {
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP)
			return 0;
		ports = data + (ip->ihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(DKE_ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return 0;
		ports = (void *)(ip6 + 1);
	} else {
		return 1; /* neither IPv4 nor IPv6 */
	}
	if ((void *)(ports + 1) > end)
		return 0;
	return !dke_is_dns_port(c, bpf_ntohs(ports->sport)) && !dke_is_dns_port(c, bpf_ntohs(ports->dport));
}

static __always_inline int dke_on_skb(struct __sk_buff *skb, int egress)
{
	struct bpf_sock *sk;
	struct dke_control *ctl;
	struct dke_sock_state *st;
	struct dke_pkt p = {};
	__u32 netns;

	ctl = dke_control();
	if (!ctl || dke_plain_tcp(skb, ctl))
		return 1;
	sk = skb->sk;
	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || (sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_UDP))
		return 1;
	if (!dke_live(ctl) || !dke_parse(skb, &p))
		return 1;
	st = bpf_sk_storage_get(&sock_state, sk, 0, p.proto == IPPROTO_UDP ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (!st && p.proto == IPPROTO_UDP)
		dke_count(DKE_TEL_STATE_FAILED);
	if (st && egress && p.proto == IPPROTO_UDP && !(st->flags & DKE_SOCK_OWNED)) {
		/* A UDP socket older than us: egress runs in the sender's context. */
		st->flags |= DKE_SOCK_OWNED;
		dke_take_owner(&st->key.pid, st->key.comm);
		st->key.netns = dke_current_netns();
	}
	if (dke_is_dns_port(ctl, p.sport) || dke_is_dns_port(ctl, p.dport)) {
		/* The socket's namespace, or 0 until it is known (an older socket
		 * that has only received so far; the loader pairs across that). */
		netns = st ? st->key.netns : 0;
		dke_capture_dns(skb, &p, netns, ctl, egress);
	}
	if (st && p.proto == IPPROTO_UDP)
		dke_count_udp(&p, st, ctl, egress);
	return 1; /* never drop: we only observe */
}

SEC("cgroup_skb/egress")
int dke_skb_egress(struct __sk_buff *skb)
{
	return dke_on_skb(skb, 1);
}

SEC("cgroup_skb/ingress")
int dke_skb_ingress(struct __sk_buff *skb)
{
	return dke_on_skb(skb, 0);
}

/* Run by the loader on each CPU (BPF_PROG_TEST_RUN with
 * BPF_F_TEST_RUN_ON_CPU) before it reads the rings: what waits in this CPU's
 * stage goes to its ring. Returns 1 when a DNS packet on this CPU is between
 * its clock read and its record (this run interrupted it, or it is
 * preempted): the loader cannot know then that the rings hold everything
 * from before it began reading, and asks again. */
SEC("raw_tp")
int dke_dns_flush(void *ctx)
{
	struct dke_dns_stage *stage, *owned = dke_dns_enter(&stage);

	if (owned)
		dke_dns_flush_stage(owned);
	dke_dns_leave(stage);
	return stage && !owned;
}

/* A UDP socket's owner from the moment it exists (socket() runs in the
 * creator's context), so a server that receives before it ever sends is
 * named from its first datagram. */
SEC("cgroup/sock_create")
int dke_sock_create(struct bpf_sock *ctx)
{
	struct dke_sock_state *st;

	if (ctx->protocol != IPPROTO_UDP || !dke_control_live())
		return 1;
	st = bpf_sk_storage_get(&sock_state, ctx, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		dke_count(DKE_TEL_STATE_FAILED);
		return 1;
	}
	dke_take_owner(&st->key.pid, st->key.comm);
	st->key.netns = dke_current_netns();
	st->flags |= DKE_SOCK_OWNED;
	return 1; /* never refuse a socket */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
