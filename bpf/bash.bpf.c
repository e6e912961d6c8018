/* ebpf-bash: every line an interactive bash reads, from a uretprobe on
 * readline() in the bash binary. The probe has no fixed target in its
 * section: user space attaches it to each bash binary it finds
 * (bpf_program__attach_uprobe_opts, func_name "readline").
 *
 * Finding bash binaries in containers: dke_bash_exec and dke_bash_exit tell
 * the loader (bash_procs) when a process in another mount namespace starts
 * running a bash binary and when it stops, so the loader attaches each
 * distinct binary while a process runs it; dke_bash_iter reports what already
 * runs at start-up and identifies files for the loader. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "bash.h"

/* Set by the loader before load. */
const volatile __u32 host_mntns = 0; /* the host's mount namespace (pid 1's): its shells are not watched */

/* struct dke_bash_line records, one per line read. 512 KiB holds ~120
 * lines, far more than people type or paste before the loader, woken by the
 * first record after it caught up, drains them. (The ring is mapped twice
 * into the loader: its size counts twice in the loader's RSS.) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 << 10);
} bash_lines SEC(".maps");

/* enum dke_bash_telemetry -> u64 count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DKE_BASH_TEL_MAX);
	__type(key, __u32);
	__type(value, __u64);
} bash_telemetry SEC(".maps");

/* struct dke_bash_proc records: EXEC and EXIT of watched processes. Rare
 * (bash starts in containers), but a burst of scripts must fit: 256 KiB
 * holds ~6,500. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} bash_procs SEC(".maps");

/* pid (tgid) -> struct dke_bash_bin: processes running a watched bash
 * binary, so their exit (or next exec) is reported. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct dke_bash_bin);
} bash_pids SEC(".maps");

/* struct dke_bash_bin -> u8 (unused): binaries whose starts are not
 * reported: the ones probed for good (--bash-path or the defaults) and the
 * ones that cannot be probed (no readline symbol). Written by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct dke_bash_bin);
	__type(value, __u8);
} bash_ignore SEC(".maps");

/* pid -> u8 (unused): shells that may have been inside readline() when the
 * loader probed their binary. The uretprobe misses that call (its return
 * was not hooked on entry), so dke_bash_readline_entry takes the line it
 * returned from readline's buffer when the next call begins. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} bash_catchup SEC(".maps");

/* 0 -> struct dke_bash_iter_cfg: what the next iterator run reports. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dke_bash_iter_cfg);
} bash_iter_cfg SEC(".maps");

/* Atomic: a preemptible kernel can run another bash's program on this CPU
 * between a load and its store. */
static __always_inline void dke_bash_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&bash_telemetry, &idx);
	if (v)
		__sync_fetch_and_add(v, 1);
}

/* Sends `line` (user memory) as a struct dke_bash_line. */
static __always_inline void dke_bash_send(const char *line, __u32 flags)
{
	struct dke_bash_line *e;
	long n;
	char next = 0;

	/* The record is larger than the BPF stack: fill it in place. */
	e = bpf_ringbuf_reserve(&bash_lines, sizeof(*e), 0);
	if (!e) {
		dke_bash_count(DKE_BASH_TEL_RINGBUF_FULL);
		return;
	}
	n = bpf_probe_read_user_str(e->line, DKE_BASH_LINE_MAX + 1, line);
	if (n < 0) {
		dke_bash_count(DKE_BASH_TEL_READ_FAILED);
		bpf_ringbuf_discard(e, 0);
		return;
	}
	/* An empty line (just Enter) is not a command. */
	if (n <= 1) {
		bpf_ringbuf_discard(e, 0);
		return;
	}
	e->flags = flags;
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
}

SEC("uretprobe")
int BPF_KRETPROBE(dke_bash_readline, const char *line)
{
	/* NULL is EOF (Ctrl-D). */
	if (line)
		dke_bash_send(line, 0);
	return 0;
}

/* Attached (to found binaries only) at readline's entry, with a cookie:
 * rl_line_buffer's address minus readline's in that binary. Does nothing
 * unless the shell is in bash_catchup, i.e. at most once per shell. */
SEC("uprobe")
int BPF_KPROBE(dke_bash_readline_entry)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	const char *buf = NULL;

	if (!bpf_map_lookup_elem(&bash_catchup, &pid))
		return 0;
	bpf_map_delete_elem(&bash_catchup, &pid);
	/* At a uprobe the instruction pointer is the probed address: readline.
	 * NULL until the first call initialised readline (then the uretprobe
	 * saw that call). */
	if (bpf_probe_read_user(&buf, sizeof(buf), (void *)(PT_REGS_IP(ctx) + bpf_get_attach_cookie(ctx))) || !buf)
		return 0;
	dke_bash_send(buf, DKE_BASH_LATE);
	return 0;
}

/* ---------------------------------------------------- bash in containers */

static __always_inline bool dke_is_bash(const char *s)
{
	return s[0] == 'b' && s[1] == 'a' && s[2] == 's' && s[3] == 'h' && s[4] == 0;
}

/* bpf_find_vma callback: the mapped file's inode. */
static long dke_vma_inode(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct dke_bash_bin *b = data;
	struct inode *inode = BPF_CORE_READ(vma, vm_file, f_inode);

	if (inode) {
		b->ino = BPF_CORE_READ(inode, i_ino);
		b->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	}
	return 0;
}

/* The file mapped at `addr` in `task`: what a uprobe on it attaches to. */
static __always_inline bool dke_mapped_bin(struct task_struct *task, __u64 addr, struct dke_bash_bin *b)
{
	b->ino = 0;
	b->dev = 0;
	b->_pad = 0;
	if (!addr || bpf_find_vma(task, addr, dke_vma_inode, b, 0) != 0)
		return false;
	return b->ino != 0;
}

/* Whether `task` (a thread group leader that just exec'd, or any at
 * start-up) runs a bash binary: the file's name is bash (also when run as a
 * symlink such as sh or rbash, or as a script's interpreter) or its comm is. */
static __always_inline bool dke_runs_bash(struct task_struct *task, struct file *exe)
{
	char name[8] = {};
	char comm[8] = {};

	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(exe, f_path.dentry, d_name.name));
	if (dke_is_bash(name))
		return true;
	bpf_probe_read_kernel(comm, sizeof(comm), &task->comm);
	return dke_is_bash(comm);
}

/* Fills `rec` for a process of `task` running `exe`; false when it is not
 * watched (host namespace, or a binary the loader ignores). */
static __always_inline bool dke_watch(struct task_struct *task, struct file *exe, struct dke_bash_proc *rec)
{
	rec->mntns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	if (rec->mntns == host_mntns)
		return false;
	if (!dke_runs_bash(task, exe))
		return false;
	rec->flags = 0;
	if (dke_mapped_bin(task, BPF_CORE_READ(task, mm, start_code), &rec->bin)) {
		rec->flags = DKE_BASH_BIN_EXACT;
	} else {
		struct inode *inode = BPF_CORE_READ(exe, f_inode);

		dke_bash_count(DKE_BASH_TEL_NO_VMA);
		rec->bin.ino = BPF_CORE_READ(inode, i_ino);
		rec->bin.dev = BPF_CORE_READ(inode, i_sb, s_dev);
		rec->bin._pad = 0;
	}
	if (bpf_map_lookup_elem(&bash_ignore, &rec->bin))
		return false;
	if (bpf_map_update_elem(&bash_pids, &rec->pid, &rec->bin, BPF_ANY)) {
		dke_bash_count(DKE_BASH_TEL_PIDS_FULL);
		return false;
	}
	return true;
}

static __always_inline void dke_bash_emit(const struct dke_bash_proc *rec)
{
	if (bpf_ringbuf_output(&bash_procs, (void *)rec, sizeof(*rec), 0))
		dke_bash_count(DKE_BASH_TEL_PROCS_FULL);
}

/* A tracked process stopped running its bash: report it once (the delete
 * that succeeds reports). */
static __always_inline void dke_bash_release(__u32 pid, __u32 mntns)
{
	struct dke_bash_bin *was = bpf_map_lookup_elem(&bash_pids, &pid);
	struct dke_bash_proc rec = {};

	if (!was)
		return;
	rec.bin = *was;
	rec.pid = pid;
	rec.kind = DKE_BASH_PROC_EXIT;
	rec.mntns = mntns;
	rec.ktime_ns = bpf_ktime_get_ns();
	bpf_map_delete_elem(&bash_catchup, &pid);
	if (bpf_map_delete_elem(&bash_pids, &pid) == 0)
		dke_bash_emit(&rec);
}

/* Once per exec on the host: one hash lookup, an 8-byte name read. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(dke_bash_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct dke_bash_proc rec = {};

	rec.pid = BPF_CORE_READ(p, tgid);
	/* A watched bash that exec'd (exec ls, or another bash) has stopped
	 * running its binary. */
	dke_bash_release(rec.pid, 0);
	if (!dke_watch(p, BPF_CORE_READ(bprm, file), &rec))
		return 0;
	rec.kind = DKE_BASH_PROC_EXEC;
	rec.ktime_ns = bpf_ktime_get_ns();
	dke_bash_emit(&rec);
	return 0;
}

/* Once per thread exit: one hash lookup. Only the last thread of a group
 * ends the process (signal->live is already decremented here). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(dke_bash_exit, struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, tgid);

	if (!bpf_map_lookup_elem(&bash_pids, &pid))
		return 0;
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	dke_bash_release(pid, 0);
	return 0;
}

/* Run by the loader (read(2) of an iterator fd, so `current` is the
 * loader): FILE records for the loader's own mappings named in
 * bash_iter_cfg, and with cfg.seed, a SEED record for every process already
 * running a watched bash binary (tracked from here on, as an exec is). */
SEC("iter/task")
int dke_bash_iter(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct dke_bash_iter_cfg *cfg;
	struct dke_bash_proc rec = {};
	__u32 zero = 0;
	struct file *exe;

	if (!task)
		return 0;
	cfg = bpf_map_lookup_elem(&bash_iter_cfg, &zero);
	if (!cfg)
		return 0;
	rec.pid = BPF_CORE_READ(task, pid);
	if (rec.pid != BPF_CORE_READ(task, tgid))
		return 0; /* threads: their leader stands for the process */
	if (rec.pid == bpf_get_current_pid_tgid() >> 32) {
		for (__u32 i = 0; i < DKE_BASH_IDENTIFY_MAX; i++) {
			struct dke_bash_proc file = {};

			if (!dke_mapped_bin(task, cfg->addr[i], &file.bin))
				continue;
			file.pid = i;
			file.kind = DKE_BASH_PROC_FILE;
			file.flags = DKE_BASH_BIN_EXACT;
			bpf_seq_write(seq, &file, sizeof(file));
		}
		return 0;
	}
	if (!cfg->seed)
		return 0;
	exe = BPF_CORE_READ(task, mm, exe_file);
	if (!exe || !dke_watch(task, exe, &rec))
		return 0;
	rec.kind = DKE_BASH_PROC_SEED;
	rec.ktime_ns = bpf_ktime_get_ns();
	bpf_seq_write(seq, &rec, sizeof(rec));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
