/* ebpf-bash: every line an interactive bash reads, from a uretprobe on
 * readline() in the bash binary. The probe has no fixed target in its
 * section: user space attaches it to each bash binary it finds
 * (bpf_program__attach_uprobe_opts, func_name "readline"). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "bash.h"

/* struct dke_bash_line records, one per line read. 1 MiB holds ~250 lines:
 * far more than people type between two polls (100 ms). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} bash_lines SEC(".maps");

/* enum dke_bash_telemetry -> u64 count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DKE_BASH_TEL_MAX);
	__type(key, __u32);
	__type(value, __u64);
} bash_telemetry SEC(".maps");

static __always_inline void dke_bash_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&bash_telemetry, &idx);
	if (v)
		*v += 1;
}

SEC("uretprobe")
int BPF_KRETPROBE(dke_bash_readline, const char *line)
{
	struct dke_bash_line *e;
	long n;
	char next = 0;

	/* NULL is EOF (Ctrl-D). */
	if (!line)
		return 0;
	/* The record is larger than the BPF stack: fill it in place. */
	e = bpf_ringbuf_reserve(&bash_lines, sizeof(*e), 0);
	if (!e) {
		dke_bash_count(DKE_BASH_TEL_RINGBUF_FULL);
		return 0;
	}
	n = bpf_probe_read_user_str(e->line, DKE_BASH_LINE_MAX + 1, line);
	if (n < 0) {
		dke_bash_count(DKE_BASH_TEL_READ_FAILED);
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	/* An empty line (just Enter) is not a command. */
	if (n <= 1) {
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	e->flags = 0;
	/* A full buffer means the line had at least DKE_BASH_LINE_MAX bytes: it
	 * was cut unless the byte after them ends the string. */
	if (n == DKE_BASH_LINE_MAX + 1 &&
	    (bpf_probe_read_user(&next, 1, line + DKE_BASH_LINE_MAX) != 0 || next != 0))
		e->flags |= DKE_BASH_TRUNCATED;
	e->len = n - 1;
	e->ktime_ns = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	bpf_ringbuf_submit(e, 0);
	dke_bash_count(DKE_BASH_TEL_LINES);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
