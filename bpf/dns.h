/* Records that cross the kernel/user boundary for dnsflow (ebpf-net).
 * Plain C with fixed-width types only: written by bpf/skb.bpf.c, read by the
 * loader's DNS module (native/dns), nowhere else. */
#ifndef DKE_DNS_H
#define DKE_DNS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Bytes of one packet's DNS payload that are copied (a power of two: the BPF
 * side masks lengths with it). Covers classic 512-byte UDP answers and the
 * 1232-byte EDNS size resolvers use since DNS flag day 2020; the parser in user
 * space reads what is there of a longer message (its header always is). */
#define DKE_DNS_PAYLOAD_MAX 2048

enum dke_dns_flags {
	DKE_DNS_EGRESS = 1, /* sent by a local socket (else received by one) */
	/* Which local side: set when the local port is the DNS port (a resolver on
	 * this host answering), clear when the remote one is (a local client). */
	DKE_DNS_LOCAL_SERVER = 2,
};

/* Ring-buffer reservations have a constant size, so a payload goes in the
 * smallest of three record sizes it fits: most queries and answers fit the
 * tiny one (a name and an address or two), and the ring's bandwidth is what
 * a DNS-heavy host pays for. */
#define DKE_DNS_PAYLOAD_TINY 128
#define DKE_DNS_PAYLOAD_SMALL 512

/* One packet to or from a DNS port, as a ring-buffer record of the header
 * below and DKE_DNS_PAYLOAD_TINY, _SMALL or _MAX payload bytes, of which the
 * first cap_len are the packet's. */
struct dke_dns_event {
	__u64 ktime_ns;   /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when the packet passed */
	__u8 saddr[16];   /* packet source, network order; IPv4 in the first 4 bytes */
	__u8 daddr[16];   /* packet destination */
	__u16 sport;      /* host order */
	__u16 dport;
	__u16 family;     /* AF_INET (2) or AF_INET6 (10) */
	__u8 proto;       /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 flags;       /* enum dke_dns_flags */
	__u32 tcp_seq;    /* TCP: sequence number of the first payload byte; UDP: 0 */
	__u32 wire_len;   /* payload bytes on the wire (UDP/TCP header excluded) */
	__u32 cap_len;    /* bytes of payload[] that are the packet's (<= DKE_DNS_PAYLOAD_MAX); the rest is unused */
	__u32 netns;      /* inode of the local socket's network namespace (0: unknown) */
	__u8 payload[];
};

#endif
