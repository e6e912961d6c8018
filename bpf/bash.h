/* Records that cross a process boundary for the ebpf-bash plugin. Plain C
 * with fixed-width types only: included by bpf/bash.bpf.c, by the bash loader
 * (native/loader/bash_loader.cc) and, through bpf/layout.bpf.c, described to
 * the daemon (scripts/gen-layout -> src/loader/layout.generated.ts). */
#ifndef DKE_BASH_H
#define DKE_BASH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Bytes of one command line that are kept (upstream kept 128). A longer line
 * is cut here and flagged DKE_BASH_TRUNCATED. */
#define DKE_BASH_LINE_MAX 4096

enum dke_bash_flags {
	DKE_BASH_TRUNCATED = 1, /* the typed line was longer than DKE_BASH_LINE_MAX bytes */
	DKE_BASH_LATE = 2,      /* read from readline's buffer when the next call began (the
	                         * shell was inside readline() when its binary was probed):
	                         * ktime_ns is then, not when the line was returned */
};

/* One line returned by readline() in a bash process; a ring-buffer record of
 * fixed size. */
struct dke_bash_line {
	__u64 ktime_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when readline returned (see DKE_BASH_LATE) */
	__u32 pid;      /* tgid of the shell, in the initial pid namespace */
	__u32 uid;      /* real uid of the shell, in the initial user namespace */
	__u32 len;      /* bytes in line[] before the NUL */
	__u32 flags;    /* enum dke_bash_flags */
	/* NUL-terminated; bytes after the NUL are stale ring-buffer memory. The
	 * size leaves room for DKE_BASH_LINE_MAX bytes and the NUL, rounded up. */
	char line[DKE_BASH_LINE_MAX + 8];
};

/* Indexes of the bash_telemetry array. */
enum dke_bash_telemetry {
	DKE_BASH_TEL_LINES = 0,        /* records submitted */
	DKE_BASH_TEL_RINGBUF_FULL = 1, /* lines lost: no room in the ring buffer */
	DKE_BASH_TEL_READ_FAILED = 2,  /* lines lost: the string could not be read (paged out) */
	DKE_BASH_TEL_PROCS_FULL = 3,   /* process starts/exits lost: no room in bash_procs */
	DKE_BASH_TEL_PIDS_FULL = 4,    /* bash processes not tracked: bash_pids full */
	DKE_BASH_TEL_NO_VMA = 5,       /* identities taken from the executed file, not its mapping */
	DKE_BASH_TEL_MAX = 8,
};

/* ---- Bash binaries in other mount namespaces (kernel -> loader only) ----
 *
 * Upstream probes the host's /bin/bash only. A bash in a container is
 * another file: the kernel watches process starts for bash binaries run in
 * a mount namespace other than the host's, and the loader attaches the
 * readline probe to each distinct file once, for as long as a process runs
 * it. */

/* A file as uprobes see it: the inode that is mapped (under overlayfs the
 * real file of the layer, which two containers of one image share), not the
 * overlay inode stat(2) shows. */
struct dke_bash_bin {
	__u64 ino;
	__u32 dev;  /* its superblock's s_dev, kernel encoding: major << 20 | minor */
	__u32 _pad;
};

enum dke_bash_proc_kind {
	DKE_BASH_PROC_EXEC = 1, /* a process started running a bash binary (sched_process_exec) */
	DKE_BASH_PROC_EXIT = 2, /* a tracked process exited, or exec'd another program */
	DKE_BASH_PROC_SEED = 3, /* a process that ran a bash binary when the loader started (iterator) */
	DKE_BASH_PROC_FILE = 4, /* the loader's own mapping at iter_cfg.addr[pid] is this file (iterator) */
};

enum dke_bash_proc_flags {
	DKE_BASH_BIN_EXACT = 1, /* bin is the mapped file's inode (else the executed file's: find_vma failed) */
};

/* A bash_procs ring-buffer record, or an iterator's output record. */
struct dke_bash_proc {
	struct dke_bash_bin bin;
	__u32 pid;   /* tgid, in the initial pid namespace (FILE: the addr[] index) */
	__u32 kind;  /* enum dke_bash_proc_kind */
	__u32 mntns; /* inode of the process's mount namespace */
	__u32 flags; /* enum dke_bash_proc_flags */
	__u64 ktime_ns; /* bpf_ktime_get_ns() of the event */
};

#define DKE_BASH_IDENTIFY_MAX 4

/* bash_iter_cfg[0]: what the next run of the dke_bash_iter iterator does. */
struct dke_bash_iter_cfg {
	__u64 addr[DKE_BASH_IDENTIFY_MAX]; /* loader addresses to identify (FILE records); 0: none */
	__u32 seed;                        /* 1: also report processes running a bash binary (SEED) */
	__u32 _pad;
};

/* ---- Loader -> daemon ----
 *
 * Where a pid's lines come from, sent before the first line of a pid whose
 * shell runs in a container (and again when its uid changes): the user name
 * from that container's own /etc/passwd, and the container's id where the
 * cgroup path names one. A record with an empty user and container_id ends
 * what an earlier one said for that pid (the process is gone). Lines of
 * pids without one are host shells: the daemon names their users itself. */
#define DKE_BASH_USER_MAX 64
#define DKE_BASH_CONTAINER_ID_MAX 72

struct dke_bash_origin {
	__u32 pid;
	__u32 uid;                                    /* the uid `user` names */
	char user[DKE_BASH_USER_MAX];                 /* NUL-padded; "": not known here */
	char container_id[DKE_BASH_CONTAINER_ID_MAX]; /* NUL-padded lower-case hex; "": none */
};

#endif
