/* Maps shared by the netflow programs. netflow_maps.bpf.c defines them
 * (DKE_DEFINE_MAPS); every other object declares them extern and
 * `bpftool gen object` links the objects so all programs share one instance. */
#ifndef DKE_NETFLOW_MAPS_BPF_H
#define DKE_NETFLOW_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "netflow.h"

#define DKE_E2BIG 7 /* errno.h is not available to BPF objects */

#ifdef DKE_DEFINE_MAPS
#define DKE_MAP
#else
#define DKE_MAP extern
#endif

/* socket cookie -> struct dke_tcp_conn; one entry per live TCP connection,
 * deleted when the socket is destroyed, after its final counters went out
 * as a close event. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct dke_tcp_conn);
} tcp_conns SEC(".maps");

/* struct dke_udp_key -> struct dke_udp_stats; LRU so a UDP flood can never
 * fill it; user space removes idle flows with lookup-and-delete. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct dke_udp_key);
	__type(value, struct dke_udp_stats);
} udp_flows SEC(".maps");

/* socket cookie -> struct dke_sock_owner (UDP sockets only). */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct dke_sock_owner);
} sock_owners SEC(".maps");

/* struct dke_listen_key -> struct dke_sock_owner: who called listen() on a
 * port, so an accepted connection (established in softirq) gets its server
 * process before the server's first read. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dke_listen_key);
	__type(value, struct dke_sock_owner);
} listeners SEC(".maps");

/* struct dke_tcp_conn of every tracked connection that closed. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} tcp_closed_events SEC(".maps");

/* enum dke_telemetry -> u64 count. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DKE_TEL_MAX);
	__type(key, __u32);
	__type(value, __u64);
} telemetry SEC(".maps");

/* Set by the loader before load. */
extern const volatile __u8 dke_ipv6_disabled;

static __always_inline void dke_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&telemetry, &idx);
	if (v)
		*v += 1;
}

#endif
