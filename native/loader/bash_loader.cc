#include "bash_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "bash.h"
#include "bash.skel.h"
#include "libbpf_log.h"

namespace dke {

namespace {

const char* const kTelemetryNames[] = {"bash_lines", "bash_ringbuf_full", "bash_read_failed"};

std::string JsonArray(const std::vector<std::string>& items, bool quote) {
  std::string s = "[";
  for (size_t i = 0; i < items.size(); i++) s += (i ? "," : "") + (quote ? JsonString(items[i]) : items[i]);
  return s + "]";
}

}  // namespace

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
  if (targets.empty()) {
    std::string msg;
    if (opts_.explicit_paths) {
      for (auto& u : unusable) msg += (msg.empty() ? "" : "; ") + u;
      msg = "no bash binary to probe: " + msg + "; fix --bash-path";
    } else {
      msg = "no bash on this host (/bin/bash, /usr/bin/bash missing): install bash or point --bash-path at it, or disable ebpf-bash";
    }
    out_->Json(DKE_FRAME_FATAL, "{\"code\":\"EBPF_ATTACH\",\"message\":" + JsonString(msg) + "}");
    return false;
  }

  ResetLibbpfLog();
  skel_ = bash__open_and_load();
  if (!skel_) {
    std::string tail = LibbpfLogTail(3);
    for (auto& c : tail)
      if (c == '\n') c = '|';
    out_->Json(DKE_FRAME_FATAL, "{\"code\":\"EBPF_LOAD\",\"message\":" +
                                    JsonString(std::string("loading the bash BPF program failed: ") + strerror(errno) + " [libbpf: " + tail + "]") + "}");
    return false;
  }
  std::vector<std::string> attached, probed, errors;
  bool denied = false;
  for (const auto& path : targets) {
    LIBBPF_OPTS(bpf_uprobe_opts, uo, .retprobe = true, .func_name = "readline");
    ResetLibbpfLog();
    bpf_link* link = bpf_program__attach_uprobe_opts(skel_->progs.dke_bash_readline, -1, path.c_str(), 0, &uo);
    int err = link ? 0 : errno;
    std::string item = "{\"program\":\"dke_bash_readline\",\"section\":" + JsonString("uretprobe/" + path + ":readline") +
                       ",\"ok\":" + (link ? "true" : "false");
    if (link) {
      links_.push_back(link);
      probed.push_back(path);
    } else {
      std::string why = err == ENOENT ? path + " has no readline symbol (not bash, or a bash linked against a shared libreadline): point --bash-path at a bash that exports readline"
                                      : path + ": " + strerror(err) + " (errno " + std::to_string(err) + ")";
      denied |= err == EPERM || err == EACCES;
      errors.push_back(why);
      item += ",\"error\":" + JsonString(why);
      degraded.push_back("attaching the readline uretprobe to " + why);
    }
    attached.push_back(item + "}");
  }
  for (auto& u : unusable) degraded.push_back(u + ": not probed");
  if (probed.empty()) {
    std::string msg = "attaching the readline uretprobe failed: ";
    for (size_t i = 0; i < errors.size(); i++) msg += (i ? "; " : "") + errors[i];
    if (denied) msg += "; a perf uprobe needs CAP_SYS_ADMIN: run the bash loader as root";
    out_->Json(DKE_FRAME_FATAL, "{\"code\":\"EBPF_ATTACH\",\"message\":" + JsonString(msg) + "}");
    Close(false);
    return false;
  }
  rb_ = ring_buffer__new(bpf_map__fd(skel_->maps.bash_lines), OnLine, this, nullptr);
  if (!rb_) {
    out_->Json(DKE_FRAME_FATAL, "{\"code\":\"EBPF_LOAD\",\"message\":" + JsonString(std::string("opening the bash ring buffer failed: ") + strerror(errno)) + "}");
    Close(false);
    return false;
  }
  std::string names;
  for (size_t i = 0; i < probed.size(); i++) names += (i ? ", " : "") + probed[i];
  utsname u{};
  uname(&u);
  return out_->Json(DKE_FRAME_READY, std::string("{\"kernel\":") + JsonString(u.release) +
                                         ",\"hookSet\":{\"name\":" + JsonString("uretprobe readline in " + names + " (perf uprobe)") +
                                         ",\"attached\":" + JsonArray(attached, false) + ",\"degraded\":" + JsonArray(degraded, true) +
                                         "},\"info\":{\"binaries\":" + JsonArray(probed, true) + ",\"mode\":\"perf uprobe\"}}");
}

int BashLoader::OnLine(void* ctx, void* data, size_t size) {
  auto* self = static_cast<BashLoader*>(ctx);
  if (size != sizeof(dke_bash_line)) return 0;
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

// Lines go out as soon as they are read: the daemon batches them.
void BashLoader::Drain() {
  if (!rb_) return;
  ring_buffer__consume(rb_);
  Flush();
}

void BashLoader::Collect(uint64_t seq, uint32_t what) {
  Drain();
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) ncpu = 1;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  std::vector<dke_telemetry_rec> recs;
  for (uint32_t i = 0; i < 3; i++) {
    uint64_t sum = 0;
    if (skel_ && bpf_map_lookup_elem(bpf_map__fd(skel_->maps.bash_telemetry), &i, per_cpu.data()) == 0)
      for (uint64_t v : per_cpu) sum += v;
    dke_telemetry_rec r{};
    strncpy(r.name, kTelemetryNames[i], sizeof(r.name) - 1);
    r.value = sum;
    recs.push_back(r);
  }
  out_->Records(DKE_FRAME_TELEMETRY, recs.data(), sizeof(recs[0]), recs.size());
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
  if (skel_) {
    bash__destroy(skel_);
    skel_ = nullptr;
  }
}

}  // namespace dke
