/* Records that cross the kernel/user boundary for the ebpf-net netflow plugin.
 * Plain C with fixed-width types only: included by the BPF programs, by the
 * native addon (which static_asserts the sizes and exports the offsets) and
 * mirrored by the TypeScript decoder (src/loader/layout.ts), whose unit test
 * checks it against the offsets the addon reports. Change all three together. */
#ifndef DKE_NETFLOW_H
#define DKE_NETFLOW_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define DKE_COMM_LEN 16

enum dke_direction {
	DKE_DIR_UNKNOWN = 0, /* connection predates attach: user space decides by listening ports */
	DKE_DIR_OUTGOING = 1,
	DKE_DIR_INCOMING = 2,
};

/* Addresses are in network byte order, IPv4 in the first 4 bytes; ports are in
 * host byte order. "local" is always this host's side of the socket. */
struct dke_tuple {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u16 family; /* AF_INET (2) or AF_INET6 (10) */
	__u8 proto;   /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 direction;
	__u32 netns; /* inode of the socket's network namespace */
	__u32 _pad;
};

/* Value of the tcp_conns map and payload of a close event. Counters are
 * cumulative for the life of the socket; user space turns them into deltas. */
struct dke_tcp_conn {
	struct dke_tuple tuple;
	__u64 cookie;
	__u64 bytes_sent;     /* payload accepted by send syscalls */
	__u64 bytes_received; /* payload returned by recv syscalls */
	__u32 pid;            /* tgid of the last process that sent or received, 0 if none yet */
	__u32 total_retrans;  /* tcp_sock.total_retrans (segments) */
	__u32 srtt_us;        /* tcp_sock.srtt_us >> 3 */
	__u32 rttvar_us;      /* tcp_sock.mdev_us >> 2 */
	__u32 established;    /* 1 once this socket reached ESTABLISHED after attach */
	__u32 closed;         /* 1 once the socket is destroyed: counters are final */
	char comm[DKE_COMM_LEN];
};

/* Key of the udp_flows map: one UDP socket talking to one peer. Filled from
 * packets (cgroup_skb), so unconnected sockets get their real peer and source. */
struct dke_udp_key {
	struct dke_tuple tuple; /* direction: who sent the first packet of the flow */
	__u64 cookie;
};

struct dke_udp_stats {
	__u64 bytes_sent;     /* UDP payload */
	__u64 bytes_received; /* UDP payload */
	__u64 last_seen_ns;   /* bpf_ktime_get_ns of the last packet */
};

/* Value of sock_owners, keyed by socket cookie: who owns a socket, learned in
 * process context (send/recv syscalls), for sockets whose packets are seen in
 * softirq context. */
struct dke_sock_owner {
	__u32 pid;
	__u32 netns;
	char comm[DKE_COMM_LEN];
};

/* Key of the listeners map: a listening TCP port in a network namespace. */
struct dke_listen_key {
	__u32 netns;
	__u16 port;
	__u16 _pad;
};

/* Indexes of the telemetry array: every place the kernel side loses data. */
enum dke_telemetry {
	DKE_TEL_TCP_MAP_FULL = 0,
	DKE_TEL_UDP_MAP_FULL = 1,
	DKE_TEL_OWNER_MAP_FULL = 2,
	DKE_TEL_RINGBUF_FULL = 3,
	DKE_TEL_TCP_CLOSED = 4, /* close events submitted */
	DKE_TEL_MAX = 8,
};

#endif
