/* Records that cross the kernel/user boundary for the ebpf-net netflow plugin.
 * Plain C with fixed-width types only: included by the BPF programs and the
 * native loader; the daemon's decoder is generated from their BTF
 * (scripts/gen-layout), never written by hand.
 *
 * The design in one paragraph: the kernel aggregates. Every TCP/UDP socket
 * has a small socket-local state (struct dke_sock_state, freed with the
 * socket) that says which flow key its counts go to; every hook adds what it
 * saw straight into that flow's counters (the current generation in
 * flow_gen). A closed connection is counted into its flow at its release
 * (close() of its last descriptor; what came after, at tcp_destroy_sock) and
 * leaves nothing behind, so a generation's size is the number of flow keys
 * that moved in its interval, not of connections, and user space reads
 * O(flow keys that changed) per interval whatever the connection rate. */
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

/* Key of a flow generation (flow_gen): netflow's aggregation key as the kernel can build it.
 * Addresses are in network byte order, IPv4 in the first 4 bytes; ports in
 * host order. "local" is this host's side. The client's port is 0 when it
 * collapses (>= --ephemeral-port); with DKE_DIR_UNKNOWN both ports are kept
 * and user space decides which side is the client. */
struct dke_flow_key {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u16 family; /* AF_INET (2) or AF_INET6 (10) */
	__u8 proto;   /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 direction;
	__u32 netns; /* inode of the socket's network namespace */
	__u32 pid;   /* tgid of the owner; 0 while unknown */
	char comm[DKE_COMM_LEN]; /* the owner's thread group leader's comm */
};

/* A flow's counters: what it moved in one generation (one collect interval,
 * or more when a collect's points could not be made durable). */
struct dke_flow_stats {
	__u64 bytes_sent;     /* payload accepted by send syscalls (TCP), or UDP payload sent */
	__u64 bytes_received; /* payload returned by recv syscalls (TCP), or UDP payload received */
	__u64 retransmits;    /* tcp_sock.total_retrans increases (segments) */
	__u64 established;    /* connections that reached ESTABLISHED after attach */
	__u64 closed;         /* connections destroyed */
	__u64 rtt_sum_us;     /* sum of srtt samples (tcp_sock.srtt_us >> 3), one per socket per interval (epoch) */
	__u64 rttvar_sum_us;  /* sum of mdev_us >> 2 with the same samples */
	__u64 rtt_count;      /* samples */
};

/* Value of a flow generation: a flow's counters in lanes, one per group of CPUs
 * (cpu % DKE_FLOW_LANES), summed by the loader. Every connection of a busy
 * flow (one client host's connections to a server port, a resolver's
 * lookups) adds to the same flow from every CPU: with one copy each add
 * pulled its cache line from the other CPU (a DNS packet's program ran
 * twice as long on two CPUs as on one). Each lane's counters have 64
 * bytes of padding before them, and the last lane after them, so wherever
 * the kernel places the value (8-byte aligned, right after the key) no
 * counter shares a cache line with another lane or with the key: with the
 * first lane's counters on the key's line, every add on one CPU made the
 * other CPU's next look-up of the flow miss on its key compare. */
#define DKE_FLOW_LANES 2

struct dke_flow_lane {
	__u64 _lead[8];
	struct dke_flow_stats stats;
};

struct dke_flow_lanes {
	struct dke_flow_lane lane[DKE_FLOW_LANES];
	__u64 _tail[8];
};

enum dke_sock_flags {
	DKE_SOCK_COUNTED = 1,     /* reached ESTABLISHED or moved bytes: a connection worth reporting */
	DKE_SOCK_EST_PENDING = 2, /* ESTABLISHED; tcp_established is added at its first syscall (which names an accepted socket's owner) or at close */
	DKE_SOCK_UDP = 4,         /* a UDP socket whose direction is set (by its first datagram) */
	DKE_SOCK_OWNED = 8,       /* pid, comm and netns are set (UDP: at socket(), first send or first syscall) */
	DKE_SOCK_CLOSED = 16,     /* TCP: its close is counted (at release); destroy adds only what came after */
};

/* Value of sock_state (socket-local storage): where this socket's counts go. */
struct dke_sock_state {
	struct dke_flow_key key;
	__u32 retrans_seen; /* tcp_sock.total_retrans already added to the flow */
	__u32 rtt_epoch;    /* control.epoch of this socket's last rtt sample (0: none yet) */
	__u32 flags;        /* enum dke_sock_flags */
	__u32 _pad;
};

/* Key of the listeners map: a listening TCP port in a network namespace. */
struct dke_listen_key {
	__u32 netns;
	__u16 port;
	__u16 _pad;
};

/* Key of synack_retrans: a connection request, by the socket it becomes. */
struct dke_request_key {
	__u8 local_addr[16]; /* as in struct dke_flow_key */
	__u8 remote_addr[16];
	__u32 netns;
	__u16 local_port;
	__u16 remote_port; /* the client's port, never collapsed */
};

/* Value of listeners: who called listen(), the owner of accepted sockets
 * until one of its processes (a worker) uses them. */
struct dke_owner {
	__u32 pid;
	__u32 _pad;
	char comm[DKE_COMM_LEN];
};

/* Bytes of an executed file's path kept (struct dke_exec_name). */
#define DKE_EXEC_PATH_MAX 128

/* Value of exec_names, keyed by pid: what the process executed, so the loader
 * can name a process whose comm was cut at 15 characters even when it has
 * exited before the loader could read /proc. */
struct dke_exec_name {
	char path[DKE_EXEC_PATH_MAX]; /* bprm->filename, NUL-terminated (cut when longer) */
};

/* Resolver ports watched (--dns-ports) at the most. */
#define DKE_DNS_PORTS_MAX 8

/* control[0]: written by the loader, read by every program at its top. In a
 * pinned map, not in .rodata/.bss, so programs of an earlier loader (kept
 * attached through pinned links) obey the loader that runs now. */
struct dke_control {
	__u64 last_commit_ns;    /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the reader's last collect */
	__u64 orphan_timeout_ns; /* no collect for this long: programs stop working (0: never) */
	__u32 epoch;             /* bumped at every collect; never 0 */
	__u16 ephemeral_port;    /* --ephemeral-port */
	__u16 flags;             /* enum dke_control_flags */
	__u16 dns_ports[DKE_DNS_PORTS_MAX]; /* --dns-ports; 0 = unused slot; all 0: no DNS capture */
};

/* liveness[0]: the orphan check's own clock, kept by the programs (the
 * loader never writes it). A clock read (bpf_ktime_get_ns) cost 11-12 % of
 * all our programs' time under a hypervisor's paravirtual clock, once per
 * program run; jiffies are one load. So the first program to run after a
 * collect turns "last collect + orphan timeout" into jiffies with one clock
 * read, and every other run compares jiffies. How long a jiffy is (the
 * kernel's HZ) is measured here too, from pairs of readings at least a second
 * apart: the kernel's config is not on every host (containers have no /boot). */
struct dke_liveness {
	__u64 commit_ns;          /* control.last_commit_ns that live_until_jiffies is for (0: none yet) */
	__u64 live_until_jiffies; /* bpf_jiffies64() at which that collect is orphan_timeout_ns old */
	__u64 cal_ns;             /* a bpf_ktime_get_ns() and bpf_jiffies64() read together, */
	__u64 cal_jiffies;        /*   the start of the next measure of a jiffy */
	__u64 ns_per_jiffy;       /* 0 until measured: the clock is read every time */
};

enum dke_control_flags {
	/* dke_tcp_retransmit_synack is attached: it counts every SYN-ACK
	 * retransmit, so an accepted connection starts from the retransmits it
	 * was born with (its request's) instead of counting them. */
	DKE_CTL_SYNACK_COUNTED = 1,
};

/* Indexes of the telemetry array: every place the kernel side loses or skips data. */
enum dke_telemetry {
	DKE_TEL_FLOW_MAP_FULL = 0,  /* a flow could not be created: its counts are lost */
	DKE_TEL_STATE_FAILED = 1,   /* socket storage could not be created: the socket is not counted */
	DKE_TEL_LISTEN_MAP_FULL = 2,
	DKE_TEL_DNS_RINGBUF_FULL = 3, /* DNS packets lost */
	DKE_TEL_DNS_PACKETS = 4,      /* DNS packets captured */
	DKE_TEL_DNS_TRUNCATED = 5,    /* DNS payloads cut at DKE_DNS_PAYLOAD_MAX */
	DKE_TEL_ORPHAN_SKIPPED = 6,   /* program runs that did nothing: no reader for --orphan-timeout */
	DKE_TEL_FLOW_CREATE_FAILED = 7, /* a flow could not be created with room left (no memory, a busy bucket): its counts are lost */
	DKE_TEL_MAX = 8,
};

#endif
