/* Records that cross the kernel/user boundary for the ebpf-bash plugin.
 * Plain C with fixed-width types only: included by bpf/bash.bpf.c, by the
 * native addon (native/bash_tracer.cc static_asserts the layout and exports
 * the offsets) and decoded by src/bash/record.ts, whose unit test checks it
 * against the offsets the addon reports. Change all three together. */
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
};

/* One line returned by readline() in a bash process; a ring-buffer record of
 * fixed size. */
struct dke_bash_line {
	__u64 ktime_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when readline returned */
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
	DKE_BASH_TEL_MAX = 4,
};

#endif
