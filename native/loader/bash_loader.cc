#include "bash_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "bash_origin.h"
#include "bash.skel.h"
#include "elf_symbols.h"
#include "libbpf_log.h"

namespace dke {

namespace {

// Indexed by enum dke_bash_telemetry; then the loader's own counters.
const char* const kTelemetryNames[] = {"bash_lines",      "bash_ringbuf_full", "bash_read_failed",
                                       "bash_procs_full", "bash_pids_full",    "bash_no_vma"};
constexpr uint32_t kKernelCounters = sizeof(kTelemetryNames) / sizeof(kTelemetryNames[0]);
constexpr size_t kPasswdMax = 8 << 20;


std::string ProcPath(uint32_t pid, const char* what) { return "/proc/" + std::to_string(pid) + "/" + what; }

std::string DevText(uint32_t kdev) { return std::to_string(kdev >> 20) + ":" + std::to_string(kdev & 0xfffff); }

// stat(2)'s st_dev in the kernel's s_dev encoding (major << 20 | minor).
uint32_t KernelDev(dev_t d) { return (major(d) << 20) | (minor(d) & 0xfffff); }

std::string ReadSmallFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0 && out.size() < kPasswdMax) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

// /etc/passwd as the process whose root `root_fd` is sees it: resolved inside
// that root (a symlink cannot lead out of it), a regular file only (a FIFO
// planted there must not block us), bounded.
std::string ReadPasswdIn(int root_fd) {
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(syscall(SYS_openat2, root_fd, "etc/passwd", &how, sizeof(how)));
  if (fd < 0 && errno == ENOSYS) fd = openat(root_fd, "etc/passwd", O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
  if (fd < 0) return "";
  std::string out;
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<size_t>(st.st_size) <= kPasswdMax) {
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 && out.size() < kPasswdMax) out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

bool HasEffectiveCap(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

// The host's mount namespace: pid 1's (ours may be private, e.g. under
// systemd's PrivateMounts=), else ours.
uint32_t HostMountNamespace() {
  struct stat st;
  if (stat("/proc/1/ns/mnt", &st) == 0 || stat("/proc/self/ns/mnt", &st) == 0) return static_cast<uint32_t>(st.st_ino);
  return 0;
}

}  // namespace

void BashLoader::LogEvent(const char* level, const std::string& msg, const std::string& fields) {
  out_->Json(DKE_FRAME_LOG, std::string("{\"level\":\"") + level + "\",\"msg\":" + JsonString(msg) + (fields.empty() ? "" : "," + fields) + "}");
}

bool BashLoader::LoadSkeleton(bool discover, std::string* why) {
  ResetLibbpfLog();
  skel_ = bash__open();
  if (!skel_) {
    *why = std::string("opening the bash BPF object failed: ") + strerror(errno);
    return false;
  }
  if (discover) {
    skel_->rodata->host_mntns = HostMountNamespace();
  } else {
    // Only the readline probe: the process-start hooks and their maps are not created.
    for (bpf_program* p : {skel_->progs.dke_bash_exec, skel_->progs.dke_bash_exit, skel_->progs.dke_bash_iter, skel_->progs.dke_bash_readline_entry})
      bpf_program__set_autoload(p, false);
    for (bpf_map* m : {skel_->maps.bash_procs, skel_->maps.bash_pids, skel_->maps.bash_ignore, skel_->maps.bash_iter_cfg, skel_->maps.bash_catchup})
      bpf_map__set_autocreate(m, false);
  }
  if (bash__load(skel_) == 0) return true;
  std::string tail = LibbpfLogTail(3);
  for (auto& c : tail)
    if (c == '\n') c = '|';
  *why = std::string(strerror(errno)) + " [libbpf: " + tail + "]";
  bash__destroy(skel_);
  skel_ = nullptr;
  return false;
}

bool BashLoader::RunIter(bool seed, const std::vector<uint64_t>& addrs, std::vector<dke_bash_proc>* out) {
  dke_bash_iter_cfg cfg{};
  for (size_t i = 0; i < addrs.size() && i < DKE_BASH_IDENTIFY_MAX; i++) cfg.addr[i] = addrs[i];
  cfg.seed = seed ? 1 : 0;
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.bash_iter_cfg), &zero, &cfg, BPF_ANY) != 0) return false;
  // Identifying needs only our own task; a kernel before 6.1 walks them all.
  bpf_link* link = !seed && self_iter_ ? self_iter_ : bpf_program__attach_iter(skel_->progs.dke_bash_iter, nullptr);
  if (!link) return false;
  int fd = bpf_iter_create(bpf_link__fd(link));
  bool ok = fd >= 0;
  if (ok) {
    std::vector<uint8_t> buf;
    uint8_t chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof(chunk))) > 0) buf.insert(buf.end(), chunk, chunk + n);
    ok = n == 0;
    for (size_t off = 0; off + sizeof(dke_bash_proc) <= buf.size(); off += sizeof(dke_bash_proc)) {
      dke_bash_proc rec;
      memcpy(&rec, buf.data() + off, sizeof(rec));
      out->push_back(rec);
    }
    close(fd);
  }
  if (link != self_iter_) bpf_link__destroy(link);
  return ok;
}

// The kernel's identity of each open file: what a uprobe on it attaches to
// (under overlayfs the layer's file, which stat(2) does not show). We map
// each file and have dke_bash_iter look the mapping up.
bool BashLoader::Identify(const std::vector<int>& fds, std::vector<BinKey>* keys) {
  keys->assign(fds.size(), BinKey{0, 0});
  bool all = true;
  for (size_t base = 0; base < fds.size(); base += DKE_BASH_IDENTIFY_MAX) {
    std::vector<uint64_t> addrs;
    std::vector<void*> maps;
    for (size_t i = base; i < fds.size() && i < base + DKE_BASH_IDENTIFY_MAX; i++) {
      void* m = mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, fds[i], 0);
      maps.push_back(m);
      addrs.push_back(m == MAP_FAILED ? 0 : reinterpret_cast<uint64_t>(m));
    }
    std::vector<dke_bash_proc> recs;
    bool ran = RunIter(false, addrs, &recs);
    for (const auto& r : recs)
      if (r.kind == DKE_BASH_PROC_FILE && r.pid < addrs.size()) (*keys)[base + r.pid] = {r.bin.dev, r.bin.ino};
    for (void* m : maps)
      if (m != MAP_FAILED) munmap(m, 4096);
    for (size_t i = base; i < base + addrs.size(); i++) all &= ran && (*keys)[i].second != 0;
  }
  return all;
}

void BashLoader::Ignore(const BinKey& key) {
  if (!discover_) return;
  dke_bash_bin b{};
  b.dev = key.first;
  b.ino = key.second;
  uint8_t one = 1;
  bpf_map_update_elem(bpf_map__fd(skel_->maps.bash_ignore), &b, &one, BPF_ANY);  // full: the loader still ignores it
}

bool BashLoader::AttachConfigured(const std::vector<std::string>& targets, std::vector<std::string>* attached,
                                  std::vector<std::string>* probed, std::vector<std::string>* degraded, bool* denied) {
  std::vector<std::string> errors;
  std::vector<int> fds;
  std::vector<std::string> fd_paths;
  for (const auto& path : targets) {
    LIBBPF_OPTS(bpf_uprobe_opts, uo, .retprobe = true, .func_name = "readline");
    ResetLibbpfLog();
    bpf_link* link = bpf_program__attach_uprobe_opts(skel_->progs.dke_bash_readline, -1, path.c_str(), 0, &uo);
    int err = link ? 0 : errno;
    std::string item = "{\"program\":\"dke_bash_readline\",\"section\":" + JsonString("uretprobe/" + path + ":readline") +
                       ",\"ok\":" + (link ? "true" : "false");
    if (link) {
      links_.push_back(link);
      probed->push_back(path);
      int fd = discover_ ? open(path.c_str(), O_RDONLY | O_CLOEXEC) : -1;
      if (fd >= 0) {
        fds.push_back(fd);
        fd_paths.push_back(path);
      }
    } else {
      std::string why = err == ENOENT ? path + " has no readline symbol (not bash, or a bash linked against a shared libreadline): point --bash-path at a bash that exports readline"
                                      : path + ": " + strerror(err) + " (errno " + std::to_string(err) + ")";
      *denied |= err == EPERM || err == EACCES;
      errors.push_back(why);
      item += ",\"error\":" + JsonString(why);
      degraded->push_back("attaching the readline uretprobe to " + why);
    }
    attached->push_back(item + "}");
  }
  // Their kernel identities, so a container running one of them (a bind
  // mount of the host's bash) is not probed a second time.
  if (discover_) {
    std::vector<BinKey> keys;
    Identify(fds, &keys);
    for (size_t i = 0; i < fds.size(); i++) {
      BinKey key = keys[i];
      struct stat st;
      if (key.second == 0 && fstat(fds[i], &st) == 0) key = {KernelDev(st.st_dev), st.st_ino};
      Binary& b = binaries_[key];
      b.name = fd_paths[i];
      b.permanent = true;
      Ignore(key);
    }
  }
  for (int fd : fds) close(fd);
  if (!probed->empty()) return true;
  std::string msg = "attaching the readline uretprobe failed: ";
  for (size_t i = 0; i < errors.size(); i++) msg += (i ? "; " : "") + errors[i];
  if (*denied) msg += "; a perf uprobe needs CAP_SYS_ADMIN: run the bash loader as root";
  out_->Json(DKE_FRAME_FATAL, "{\"code\":\"EBPF_ATTACH\",\"message\":" + JsonString(msg) + "}");
  return false;
}

// The process-start hooks, then what already runs. Any failure leaves the
// configured binaries probed and says why.
bool BashLoader::StartDiscovery(std::string* why) {
  for (bpf_program* p : {skel_->progs.dke_bash_exit, skel_->progs.dke_bash_exec}) {
    ResetLibbpfLog();
    bpf_link* l = bpf_program__attach(p);
    if (!l) {
      *why = std::string("attaching ") + bpf_program__name(p) + " failed: " + strerror(errno);
      return false;
    }
    links_.push_back(l);
  }
  std::vector<dke_bash_proc> seeds;
  if (!RunIter(true, {}, &seeds)) {
    *why = std::string("reading the shells already running failed: ") + strerror(errno);
    return false;
  }
  for (const auto& r : seeds)
    if (r.kind == DKE_BASH_PROC_SEED) Track(r);
  return true;
}

bool BashLoader::Open() {
  std::vector<std::string> degraded, unusable, targets;
  std::set<std::pair<dev_t, ino_t>> seen;
  for (const auto& p : opts_.paths) {
    struct stat st;
    if (stat(p.c_str(), &st) != 0) {
      std::string why = errno == ENOENT ? p + ": no such file"
                        : errno == EACCES ? p + ": not accessible to the loader (a path into /proc/<pid>/root needs --user root)"
                                          : p + ": " + strerror(errno);
      if (opts_.explicit_paths) unusable.push_back(why);
      continue;
    }
    if (!S_ISREG(st.st_mode)) {
      if (opts_.explicit_paths) unusable.push_back(p + ": not a regular file");
      continue;
    }
    // A uprobe belongs to a file: a symlink or a merged-/usr twin is probed once.
    if (seen.insert({st.st_dev, st.st_ino}).second) targets.push_back(p);
  }
  // Named binaries are all the user wants; the defaults come with the shells of other mount namespaces.
  discover_ = !opts_.explicit_paths;
  if (targets.empty() && !discover_) {
    std::string msg;
    for (auto& u : unusable) msg += (msg.empty() ? "" : "; ") + u;
    msg = "no bash binary to probe: " + msg + "; fix --bash-path";
    out_->Json(DKE_FRAME_FATAL, "{\"code\":\"EBPF_ATTACH\",\"message\":" + JsonString(msg) + "}");
    return false;
  }

  std::string why;
  if (!LoadSkeleton(discover_, &why)) {
    std::string first = why;
    if (!discover_ || !LoadSkeleton(false, &why)) {
      out_->Json(DKE_FRAME_FATAL, "{\"code\":\"EBPF_LOAD\",\"message\":" + JsonString("loading the bash BPF program failed: " + why) + "}");
      return false;
    }
    discover_ = false;
    degraded.push_back("bash in other mount namespaces (containers) is not found by itself on this kernel: " + first + "; name their binaries with --bash-path");
  }
  if (discover_) {
    struct stat st;
    if (stat("/", &st) == 0) own_root_ = {st.st_dev, st.st_ino};
    union bpf_iter_link_info linfo {};
    linfo.task.tid = static_cast<uint32_t>(getpid());
    LIBBPF_OPTS(bpf_iter_attach_opts, io, .link_info = &linfo, .link_info_len = sizeof(linfo));
    self_iter_ = bpf_program__attach_iter(skel_->progs.dke_bash_iter, &io);
  }

  std::vector<std::string> attached, probed;
  bool denied = false;
  if (targets.empty()) {
    degraded.push_back("no bash on this host (/bin/bash, /usr/bin/bash missing): only shells in containers are audited");
  } else if (!AttachConfigured(targets, &attached, &probed, &degraded, &denied)) {
    Close(false);
    return false;
  }
  for (auto& u : unusable) degraded.push_back(u + ": not probed");

  if (discover_) {
    rb_ = ring_buffer__new(bpf_map__fd(skel_->maps.bash_procs), OnProcRecord, this, nullptr);
    if (rb_ && ring_buffer__add(rb_, bpf_map__fd(skel_->maps.bash_lines), OnLine, this) != 0) {
      ring_buffer__free(rb_);
      rb_ = nullptr;
    }
  } else {
    rb_ = ring_buffer__new(bpf_map__fd(skel_->maps.bash_lines), OnLine, this, nullptr);
  }
  if (!rb_) {
    out_->Json(DKE_FRAME_FATAL, "{\"code\":\"EBPF_LOAD\",\"message\":" + JsonString(std::string("opening the bash ring buffers failed: ") + strerror(errno)) + "}");
    Close(false);
    return false;
  }
  if (discover_) {
    if (!StartDiscovery(&why)) {
      degraded.push_back("bash in other mount namespaces (containers) is not found by itself: " + why);
      discover_ = false;
    } else if (getuid() != 0 && !HasEffectiveCap(CAP_SYS_PTRACE)) {
      degraded.push_back("without CAP_SYS_PTRACE the loader cannot open /proc/<pid>/exe and /proc/<pid>/root of other users' shells in containers: those are not audited");
    }
    for (bpf_program* p : {skel_->progs.dke_bash_exec, skel_->progs.dke_bash_exit})
      attached.push_back(std::string("{\"program\":") + JsonString(bpf_program__name(p)) + ",\"section\":" + JsonString(bpf_program__section_name(p)) +
                         ",\"ok\":" + (discover_ ? "true" : "false") + "}");
  }
  if (probed.empty() && !discover_) {
    out_->Json(DKE_FRAME_FATAL, "{\"code\":\"EBPF_ATTACH\",\"message\":" +
                                    JsonString("no bash on this host (/bin/bash, /usr/bin/bash missing) and no way to find the shells of containers: install bash or point --bash-path at it, or disable ebpf-bash") + "}");
    Close(false);
    return false;
  }

  std::string names;
  for (size_t i = 0; i < probed.size(); i++) names += (i ? ", " : "") + probed[i];
  std::string hook_set = probed.empty() ? "" : "uretprobe readline in " + names + " (perf uprobe)";
  if (discover_) hook_set += std::string(hook_set.empty() ? "" : " + ") + "bash in other mount namespaces (sched_process_exec)";
  utsname u{};
  uname(&u);
  return out_->Json(DKE_FRAME_READY, std::string("{\"kernel\":") + JsonString(u.release) + ",\"hookSet\":{\"name\":" + JsonString(hook_set) +
                                         ",\"attached\":" + JsonArray(attached, false) + ",\"degraded\":" + JsonArray(degraded, true) +
                                         "},\"info\":{\"binaries\":" + JsonArray(probed, true) + ",\"mode\":\"perf uprobe\",\"containers\":" +
                                         (discover_ ? "true" : "false") + "}}");
}

int BashLoader::OnProcRecord(void* ctx, void* data, size_t size) {
  if (size != sizeof(dke_bash_proc)) return 0;
  dke_bash_proc rec;
  memcpy(&rec, data, sizeof(rec));
  static_cast<BashLoader*>(ctx)->OnProc(rec);
  return 0;
}

void BashLoader::OnProc(const dke_bash_proc& rec) {
  if (rec.kind == DKE_BASH_PROC_EXEC) {
    Track(rec);
    return;
  }
  if (rec.kind != DKE_BASH_PROC_EXIT) return;
  auto it = procs_.find(rec.pid);
  if (it == procs_.end() || it->second.exiting) return;
  // Its last lines are already in bash_lines (they were read before it
  // exited): forgotten once this drain has sent them.
  it->second.exiting = true;
  exited_.push_back(rec.pid);
}

// A process (EXEC or SEED) that runs a bash binary in another mount
// namespace: probe the binary if it is new, and remember where the process
// runs (its root, for /etc/passwd; its container id) while it is there to
// ask.
void BashLoader::Track(const dke_bash_proc& rec) {
  const uint32_t pid = rec.pid;
  BinKey key{rec.bin.dev, rec.bin.ino};
  auto it = procs_.find(pid);
  if (it != procs_.end() && !it->second.exiting && it->second.bin == key) return;  // seen twice (seed and exec)
  if (unusable_.count(key)) return;
  auto known = binaries_.find(key);
  if (known != binaries_.end() && known->second.permanent) return;

  Proc p;
  p.root_fd = open(ProcPath(pid, "root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (p.root_fd < 0) {
    if ((errno == EACCES || errno == EPERM) && !warned_ptrace_) {
      warned_ptrace_ = true;
      LogEvent("warn", "ebpf-bash: cannot open /proc/<pid>/root of a bash in another mount namespace: the loader needs CAP_SYS_PTRACE for other users' processes; such shells are not audited",
               "\"pid\":" + std::to_string(pid) + ",\"error\":" + JsonString(strerror(errno)));
    }
    return;  // else it is gone already
  }
  struct stat st{};
  if (fstat(p.root_fd, &st) == 0) p.root_key = RootKey{rec.mntns, st.st_dev, st.st_ino};
  if (st.st_dev == own_root_.first && st.st_ino == own_root_.second) {
    close(p.root_fd);  // our own root: the daemon names its users, NSS included
    p.root_fd = -1;
  }
  p.container_id = ContainerIdFromCgroup(ReadSmallFile(ProcPath(pid, "cgroup")));

  std::string name;
  if (!(rec.flags & DKE_BASH_BIN_EXACT) || known == binaries_.end()) {
    if (!AttachFound(pid, rec, &key, &name, p.container_id)) {
      if (p.root_fd >= 0) close(p.root_fd);
      return;
    }
  }
  if (p.root_fd >= 0) {
    Root& r = roots_[p.root_key];
    if (r.fd < 0) {
      r.fd = p.root_fd;
    } else {
      close(p.root_fd);
    }
    r.refs++;
    p.root_fd = r.fd;
  }
  p.bin = key;
  if (it != procs_.end()) {
    // The pid exec'd another bash: the daemon may still hold what was said about it.
    p.origin_said = it->second.origin_said;
    Proc old = it->second;
    procs_.erase(it);
    ReleaseRoot(old);
    if (old.bin != key) ReleaseBinary(pid, old.bin);
  }
  Binary& b = binaries_[key];
  b.pids.insert(pid);
  procs_.emplace(pid, std::move(p));
  // Started before its binary was probed: it may be inside readline() now.
  if (b.entry_link && (rec.kind == DKE_BASH_PROC_SEED || rec.ktime_ns < b.attached_ns)) {
    uint8_t one = 1;
    bpf_map_update_elem(bpf_map__fd(skel_->maps.bash_catchup), &pid, &one, BPF_ANY);
  }
}

// Probes the binary `pid` runs, through /proc/<pid>/exe; `key` becomes its
// kernel identity. False when the process runs something else by now, or
// the binary cannot be probed (then it is remembered and ignored).
bool BashLoader::AttachFound(uint32_t pid, const dke_bash_proc& rec, BinKey* key, std::string* name, const std::string& container_id) {
  const std::string exe = ProcPath(pid, "exe");
  int fd = open(exe.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != EACCES && errno != EPERM) return false;  // gone
    std::string why = std::string("the loader may not read it: ") + strerror(errno);
    unusable_[*key] = why;
    Ignore(*key);
    attach_failures_++;
    LogEvent("warn", "ebpf-bash: cannot probe a bash binary of another mount namespace: " + why,
             "\"pid\":" + std::to_string(pid) + ",\"dev\":" + JsonString(DevText(key->first)) + ",\"ino\":" + std::to_string(key->second));
    return false;
  }
  char target[4096];
  ssize_t n = readlink(exe.c_str(), target, sizeof(target) - 1);
  *name = n > 0 ? std::string(target, static_cast<size_t>(n)) : exe;
  std::vector<BinKey> keys;
  if (Identify({fd}, &keys)) {
    if ((rec.flags & DKE_BASH_BIN_EXACT) && keys[0] != *key) {
      close(fd);
      return false;  // it exec'd something else since
    }
    if (keys[0] != *key) Ignore(*key);  // an inexact identity: BPF keeps reporting it, we know where it leads
    *key = keys[0];
  }
  auto known = binaries_.find(*key);
  if (known != binaries_.end() || unusable_.count(*key)) {
    close(fd);
    return known != binaries_.end() && !known->second.permanent;
  }
  // Through our own descriptor: libbpf reads its symbols, the kernel probes
  // the file it leads to, even if the process exits meanwhile.
  const std::string via = "/proc/self/fd/" + std::to_string(fd);
  LIBBPF_OPTS(bpf_uprobe_opts, uo, .retprobe = true, .func_name = "readline");
  ResetLibbpfLog();
  bpf_link* link = bpf_program__attach_uprobe_opts(skel_->progs.dke_bash_readline, -1, via.c_str(), 0, &uo);
  int err = errno;
  // The shell that made us probe is most likely inside readline() already:
  // its line is taken from rl_line_buffer when the next call begins.
  bpf_link* entry = nullptr;
  if (link) {
    auto syms = ElfSymbolValues(via, {"readline", "rl_line_buffer"});
    if (syms.size() == 2) {
      LIBBPF_OPTS(bpf_uprobe_opts, eo, .bpf_cookie = syms["rl_line_buffer"] - syms["readline"], .retprobe = false, .func_name = "readline");
      entry = bpf_program__attach_uprobe_opts(skel_->progs.dke_bash_readline_entry, -1, via.c_str(), 0, &eo);
    }
  }
  close(fd);
  std::string fields = "\"binary\":" + JsonString(*name) + ",\"dev\":" + JsonString(DevText(key->first)) + ",\"ino\":" + std::to_string(key->second) +
                       ",\"pid\":" + std::to_string(pid) + ",\"mntns\":" + std::to_string(rec.mntns) +
                       (container_id.empty() ? "" : ",\"container_id\":" + JsonString(container_id));
  if (!link) {
    std::string why = err == ENOENT ? "it has no readline symbol (a bash linked against a shared libreadline)" : std::string(strerror(err)) + " (errno " + std::to_string(err) + ")";
    unusable_[*key] = why;
    Ignore(*key);
    attach_failures_++;
    LogEvent("warn", "ebpf-bash: cannot probe a bash binary of another mount namespace: " + why, fields);
    return false;
  }
  Binary& b = binaries_[*key];
  b.name = *name;
  b.link = link;
  b.entry_link = entry;
  b.attached_ns = MonotonicNs();
  attaches_++;
  LogEvent("info", "ebpf-bash: probing readline in a bash binary of another mount namespace", fields + ",\"catch_up\":" + (entry ? "true" : "false"));
  return true;
}

void BashLoader::ReleaseRoot(const Proc& p) {
  if (p.root_fd < 0) return;
  auto r = roots_.find(p.root_key);
  if (r != roots_.end() && --r->second.refs <= 0) {
    close(r->second.fd);
    roots_.erase(r);
  }
}

// `pid` no longer runs `bin`: the probe is detached when nothing runs it any
// more (a configured binary stays).
void BashLoader::ReleaseBinary(uint32_t pid, const BinKey& bin) {
  auto b = binaries_.find(bin);
  if (b == binaries_.end()) return;
  b->second.pids.erase(pid);
  if (!b->second.pids.empty() || b->second.permanent) return;
  if (b->second.link) bpf_link__destroy(b->second.link);
  if (b->second.entry_link) bpf_link__destroy(b->second.entry_link);
  detaches_++;
  LogEvent("info", "ebpf-bash: no process runs this bash binary any more: probe detached",
           "\"binary\":" + JsonString(b->second.name) + ",\"dev\":" + JsonString(DevText(bin.first)) + ",\"ino\":" + std::to_string(bin.second));
  binaries_.erase(b);
}

void BashLoader::FinishExits() {
  for (uint32_t pid : exited_) {
    auto it = procs_.find(pid);
    if (it == procs_.end() || !it->second.exiting) continue;  // exec'd a bash again meanwhile
    Proc p = it->second;
    procs_.erase(it);
    if (p.origin_said) {
      dke_bash_origin end{};
      end.pid = pid;
      end.uid = p.origin_uid;
      out_->Records(DKE_FRAME_BASH_ORIGINS, &end, sizeof(end), 1);
    }
    ReleaseRoot(p);
    ReleaseBinary(pid, p.bin);
  }
  exited_.clear();
}

// Before the first line of a shell in a container (and when its uid
// changes): who that uid is in the container, and the container's id.
void BashLoader::SendOrigin(Proc& p, uint32_t pid, uint32_t uid) {
  p.origin_sent = true;
  p.origin_uid = uid;
  dke_bash_origin o{};
  o.pid = pid;
  o.uid = uid;
  std::string user;
  if (p.root_fd >= 0) {
    user = UserFromPasswd(ReadPasswdIn(p.root_fd), uid);
    if (user.empty() || user.size() >= sizeof(o.user)) user = std::to_string(uid);  // not the host's name for that uid
  }
  memcpy(o.user, user.data(), std::min(user.size(), sizeof(o.user) - 1));
  memcpy(o.container_id, p.container_id.data(), std::min(p.container_id.size(), sizeof(o.container_id) - 1));
  bool says = !user.empty() || !p.container_id.empty();
  if (!says && !p.origin_said) return;
  Flush();
  out_->Records(DKE_FRAME_BASH_ORIGINS, &o, sizeof(o), 1);
  p.origin_said = says;
}

int BashLoader::OnLine(void* ctx, void* data, size_t size) {
  auto* self = static_cast<BashLoader*>(ctx);
  if (size != sizeof(dke_bash_line)) return 0;
  const auto* line = static_cast<const dke_bash_line*>(data);
  auto it = self->procs_.find(line->pid);
  if (it != self->procs_.end()) {
    Proc& proc = it->second;
    if (line->flags & DKE_BASH_LATE) {
      if (proc.returned_line) return 0;  // sent already, by the uretprobe
    } else {
      proc.returned_line = true;
    }
    if (!proc.origin_sent || proc.origin_uid != line->uid) self->SendOrigin(proc, line->pid, line->uid);
  }
  const auto* p = static_cast<const uint8_t*>(data);
  self->batch_.insert(self->batch_.end(), p, p + size);
  self->batched_++;
  return 0;
}

void BashLoader::Flush() {
  if (!batched_) return;
  out_->Records(DKE_FRAME_BASH_LINES, batch_.data(), sizeof(dke_bash_line), batched_);
  batch_.clear();
  batched_ = 0;
}

int BashLoader::PollFd() const { return rb_ ? ring_buffer__epoll_fd(rb_) : -1; }

// Process starts and exits first (bash_procs was added first), then lines:
// a shell's exec is reported before it can read a line, its exit after its
// last line, so each line finds its shell known and not yet forgotten. Lines
// go out as soon as they are read: the daemon batches them.
void BashLoader::Drain() {
  if (!rb_) return;
  ring_buffer__consume(rb_);
  Flush();
  FinishExits();
}

void BashLoader::Collect(uint64_t seq, uint32_t what) {
  Drain();
  // An exit lost to a full ring buffer must not keep a probe forever.
  for (auto& [pid, p] : procs_) {
    if (p.exiting || kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    p.exiting = true;
    exited_.push_back(pid);
  }
  FinishExits();
  TelemetryFrame t;
  t.AddPerCpu(skel_ ? bpf_map__fd(skel_->maps.bash_telemetry) : -1, kTelemetryNames, kKernelCounters);
  t.Add("bash_attached", attaches_);
  t.Add("bash_detached", detaches_);
  t.Add("bash_attach_failed", attach_failures_);
  t.Send(out_);
  dke_collect_cmd done{};
  done.seq = seq;
  done.what = what;
  out_->Records(DKE_FRAME_COLLECTED, &done, sizeof(done), 1);
}

void BashLoader::Close(bool) {
  if (rb_) {
    ring_buffer__free(rb_);
    rb_ = nullptr;
  }
  for (bpf_link* l : links_) bpf_link__destroy(l);
  links_.clear();
  for (auto& [key, b] : binaries_) {
    if (b.link) bpf_link__destroy(b.link);
    if (b.entry_link) bpf_link__destroy(b.entry_link);
  }
  binaries_.clear();
  for (auto& [key, r] : roots_) close(r.fd);
  roots_.clear();
  procs_.clear();
  exited_.clear();
  if (self_iter_) {
    bpf_link__destroy(self_iter_);
    self_iter_ = nullptr;
  }
  if (skel_) {
    bash__destroy(skel_);
    skel_ = nullptr;
  }
}

}  // namespace dke
