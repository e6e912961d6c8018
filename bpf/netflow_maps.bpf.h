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

/* Every map is pinned by name under the loader's pin root
 * (/sys/fs/bpf/datakit-ebpf/netflow-<object hash>/), so counting survives a
 * restart of the loader or the daemon and a new loader continues with the
 * same counters. */

/* socket cookie -> struct dke_tcp_conn; one entry per TCP connection. A
 * destroyed socket's entry stays, marked closed with its final counters,
 * until user space has durably reported them and deletes it: a crash between
 * reading and reporting can then never lose a closed connection. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct dke_tcp_conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tcp_conns SEC(".maps");

/* struct dke_udp_key -> struct dke_udp_stats; LRU so a UDP flood can never
 * fill it; user space removes idle flows with lookup-and-delete. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct dke_udp_key);
	__type(value, struct dke_udp_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} udp_flows SEC(".maps");

/* socket cookie -> struct dke_sock_owner (UDP sockets only). */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct dke_sock_owner);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_owners SEC(".maps");

/* struct dke_listen_key -> struct dke_sock_owner: who called listen() on a
 * port, so an accepted connection (established in softirq) gets its server
 * process before the server's first read. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dke_listen_key);
	__type(value, struct dke_sock_owner);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} listeners SEC(".maps");

/* struct dke_tcp_conn of every tracked connection that closed. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tcp_closed_events SEC(".maps");

/* enum dke_telemetry -> u64 count. */
DKE_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DKE_TEL_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
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
