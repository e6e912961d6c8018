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
	/* Came through a CPU's stage: the ring record is a batch of records,
	 * this one first, each DKE_DNS_STAGED_LEN(cap_len) bytes long. */
	DKE_DNS_STAGED = 4,
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

/* Tiny records (the common query and answer) wait in their CPU's stage,
 * each taking only the bytes its packet has, and reach the CPU's ring
 * together, as one ring record, when the stage has no room for another: a
 * ring reservation and commit cost as much as everything else a DNS packet
 * does, and a query of some 40 bytes takes 104 bytes of ring instead of 200
 * (bpf/skb.bpf.c). The loader empties every stage before it hands records on
 * (dke_dns_flush). */
#define DKE_DNS_STAGE_BYTES 3072

/* Bytes a staged record takes: its header, then its payload padded to 8. */
#define DKE_DNS_STAGED_LEN(cap_len) (sizeof(struct dke_dns_event) + (((cap_len) + 7) & ~7u))

/* dns_stage's value, one per CPU. */
struct dke_dns_stage {
	/* DNS packets on this CPU between their clock read and their record's
	 * being visible (staged or in the ring); the one whose increment found
	 * 0 owns the stage until its decrement. */
	__u64 inflight;
	__u32 used;  /* bytes of bytes[] the staged records take */
	__u32 count; /* staged records */
	__u8 bytes[DKE_DNS_STAGE_BYTES];
	/* To a whole number of cache lines (the map's values lie back to back
	 * on a page of their own): without it the next CPU's inflight and used
	 * shared a line with the end of this CPU's bytes. */
	__u8 _pad[48];
};

#endif
