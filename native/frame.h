/* The one wire format between the native eBPF loader (dke-loader) and the
 * Node daemon. Plain C with fixed-width types only, little-endian (the host's).
 *
 * Both directions carry frames: a struct dke_frame header, then `len` bytes of
 * payload. A payload is either `count` fixed-size records of the struct the
 * frame type names (record size = len / count), or UTF-8 JSON for the rare
 * control frames (marked "JSON" below). The daemon never mirrors these
 * structs by hand: scripts/gen-layout reads their layout from the BTF of
 * bpf/.output/layout.bpf.o (compiled from this header and the bpf/ headers)
 * and writes src/loader/layout.generated.ts.
 *
 * Loader -> daemon (its fd 3), daemon -> loader (its stdin). */
#ifndef DKE_FRAME_H
#define DKE_FRAME_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif
#include "netflow.h"

/* Bump on any change to a frame or record layout: the daemon refuses a loader
 * that speaks another version (they ship together; a mismatch is a broken
 * install). */
#define DKE_FRAME_MAGIC 0x454b4400 /* "\0DKE" little-endian, low byte = version */
#define DKE_FRAME_VERSION 2

enum dke_frame_type {
	/* loader -> daemon */
	DKE_FRAME_READY = 1,      /* JSON: {kernel, hookSet:{name, attached[], degraded[]}, info:{...}} */
	DKE_FRAME_FATAL = 2,      /* JSON: {code, message}; the loader exits right after */
	DKE_FRAME_LOG = 3,        /* JSON: {level, msg, ...fields} */
	DKE_FRAME_FLOWS = 4,      /* struct dke_flow_delta records: one collect's changes */
	DKE_FRAME_TELEMETRY = 5,  /* struct dke_telemetry_rec records (name is inside) */
	DKE_FRAME_DNS_STATS = 6,  /* struct dke_dnsflow_stat records: one collect's lookups */
	DKE_FRAME_DNS_NAMES = 7,  /* struct dke_dns_name records: address -> domain learnt */
	DKE_FRAME_BASH_LINES = 8, /* struct dke_bash_line records (bpf/bash.h), trimmed: see there */
	DKE_FRAME_COLLECTED = 9,  /* struct dke_collect_cmd: the collect of that seq is complete */
	DKE_FRAME_PROCS = 11,     /* struct dke_proc_name records: pid -> process name */
	DKE_FRAME_BASH_ORIGINS = 12, /* struct dke_bash_origin records (bpf/bash.h): before the lines of a shell in a container */

	/* daemon -> loader */
	DKE_CMD_COLLECT = 64, /* struct dke_collect_cmd: read what changed, send FLOWS/DNS/TELEMETRY, then COLLECTED */
	DKE_CMD_COMMIT = 65,  /* struct dke_collect_cmd: the daemon durably holds seq's points */
	DKE_CMD_RESUME = 66,  /* struct dke_collect_cmd: seq = the last seq the daemon's spool holds (0: none) */
	DKE_CMD_STOP = 67,    /* struct dke_stop_cmd: detach (and unpin) and exit 0 */
};

struct dke_frame {
	__u32 magic; /* DKE_FRAME_MAGIC | DKE_FRAME_VERSION */
	__u16 type;  /* enum dke_frame_type */
	__u16 _pad;
	__u32 len;   /* payload bytes after this header */
	__u32 count; /* records in the payload (0 for JSON) */
};

enum dke_collect_what {
	DKE_COLLECT_FLOWS = 1, /* netflow deltas (seq is then a commit id) */
	DKE_COLLECT_DNS = 2,   /* dnsflow stats and names */
};

struct dke_collect_cmd {
	__u64 seq;  /* increasing across restarts of the daemon (it persists the last one) */
	__u32 what; /* enum dke_collect_what */
	__u32 _pad;
};

/* One flow that changed since the last durable collect. */
struct dke_flow_delta {
	struct dke_flow_key key;
	struct dke_flow_stats delta;
};

struct dke_stop_cmd {
	__u32 unpin; /* 1: remove the pins too (a clean stop); 0: keep them for a restart */
	__u32 _pad;
};

/* A named counter of the loader or the kernel side. Cumulative since the
 * pinned maps were created; the daemon reports increases. */
struct dke_telemetry_rec {
	char name[24]; /* NUL-padded, e.g. "tcp_map_full" */
	__u64 value;
};

/* pid -> the process's own name (not a thread's): the thread group leader's
 * comm, or the command line's basename when comm was cut at 15 characters. */
struct dke_proc_name {
	__u32 pid;
	__u32 _pad;
	char name[64]; /* NUL-padded */
};

/* dnsflow: the lookups of one collect, aggregated by key. Ports are host
 * order; the side that is not a DNS port (--dns-ports) is 0 (`*`). */
enum dke_dns_side {
	DKE_DNS_SIDE_CLIENT = 1, /* a local socket asked: direction=outgoing, conn_side=client */
	DKE_DNS_SIDE_SERVER = 2, /* a local socket answered: direction=incoming, conn_side=server */
};

struct dke_dnsflow_stat {
	__u8 client_addr[16]; /* network order; IPv4 in the first 4 bytes */
	__u8 server_addr[16];
	__u16 client_port;
	__u16 server_port;
	__u16 family; /* AF_INET (2) or AF_INET6 (10) */
	__u8 proto;   /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 side;    /* enum dke_dns_side */
	__u32 netns;  /* inode of the network namespace of the local socket */
	__s32 rcode;  /* the answer's rcode, or -1: no answer within --dns-timeout */
	__u32 count;  /* lookups */
	__u32 _pad;
	__u64 latency_sum_ns; /* over answered lookups (0 for rcode -1) */
	__u64 latency_max_ns;
};

/* An address a local client resolved (A/AAAA, through CNAMEs: domain is the
 * name it asked for), sent once when learnt or changed. */
struct dke_dns_name {
	__u8 addr[16];
	__u16 family;
	__u16 _pad;
	__u32 ttl_s; /* the answer's TTL; the daemon applies its floor and cap */
	char domain[256]; /* NUL-terminated, lower case, no trailing dot */
};

#endif
