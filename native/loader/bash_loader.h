// The ebpf-bash loader: a uretprobe on readline() in each bash binary, its
// lines forwarded as they come (DKE_FRAME_BASH_LINES). Not pinned: a typed
// command is an event, and a loader that dies takes its probes with it.
//
// The configured binaries (--bash-path, else /bin/bash and /usr/bin/bash) are
// probed for good. Unless the user named them, bash binaries run in other
// mount namespaces (containers) are found as processes start
// (bpf/bash.bpf.c): each distinct file is probed once, through
// /proc/<pid>/exe of a process running it, while a process runs it; before
// the first line of such a shell the daemon gets its origin
// (DKE_FRAME_BASH_ORIGINS: the user name from the container's own
// /etc/passwd, the container id from its cgroup path).
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "bash.h"
#include "frame_io.h"
#include "plugin.h"

struct bash;
struct bpf_link;
struct ring_buffer;

namespace dke {

struct BashOptions {
  std::vector<std::string> paths;  // as the user gave them (or the defaults)
  bool explicit_paths = false;     // the user named them: a missing one is worth a warning, and nothing else is probed
};

class BashLoader : public LoaderPlugin {
 public:
  BashLoader(BashOptions opts, FrameWriter* out) : opts_(std::move(opts)), out_(out) {}
  ~BashLoader() override { Close(false); }
  bool Open() override;
  int PollFd() const override;
  void Drain() override;
  void Collect(uint64_t seq, uint32_t what) override;
  void Close(bool unpin) override;

 private:
  // A file as the kernel's uprobes know it (struct dke_bash_bin).
  using BinKey = std::pair<uint32_t, uint64_t>;  // s_dev (kernel encoding), inode
  // A root directory as a mount namespace sees it: the files under it are
  // that namespace's view.
  using RootKey = std::tuple<uint32_t, uint64_t, uint64_t>;  // mount namespace, st_dev, st_ino
  struct Binary {
    std::string name;         // how it was found, for logs: the configured path, or the path inside the container
    bpf_link* link = nullptr;        // the readline uretprobe
    bpf_link* entry_link = nullptr;  // found binaries: readline's entry, to catch up a call in progress (bash_catchup)
    uint64_t attached_ns = 0;        // CLOCK_MONOTONIC when the probes were in place
    bool permanent = false;   // configured: attached for good
    std::set<uint32_t> pids;  // processes running it (found ones only)
  };
  struct Proc {
    BinKey bin;
    int root_fd = -1;          // O_PATH of /proc/<pid>/root when it is not ours (shared, see roots_)
    RootKey root_key{};
    std::string container_id;  // from /proc/<pid>/cgroup at exec
    bool exiting = false;      // exited: forgotten after this drain's lines
    bool origin_sent = false;  // an origin (or the decision that none is needed) for origin_uid
    bool origin_said = false;  // a non-empty origin went to the daemon: end it at exit
    uint32_t origin_uid = 0;
    // A line came through the uretprobe: readline was entered after the
    // probes were in place, so a catch-up line (DKE_BASH_LATE) from now on
    // repeats that line. (The shell can enter readline between the attach
    // and the moment we mark it for catch-up; the next call's entry then
    // reads back the line the uretprobe already sent.)
    bool returned_line = false;
  };
  struct Root {
    int fd = -1;
    int refs = 0;
  };

  bool LoadSkeleton(bool discover, std::string* why);
  bool AttachConfigured(const std::vector<std::string>& targets, std::vector<std::string>* attached, std::vector<std::string>* probed,
                        std::vector<std::string>* degraded, bool* denied);
  bool StartDiscovery(std::string* why);
  bool RunIter(bool seed, const std::vector<uint64_t>& addrs, std::vector<dke_bash_proc>* out);
  bool Identify(const std::vector<int>& fds, std::vector<BinKey>* keys);
  void Ignore(const BinKey& key);
  void OnProc(const dke_bash_proc& rec);
  void Track(const dke_bash_proc& rec);
  bool AttachFound(uint32_t pid, const dke_bash_proc& rec, BinKey* key, std::string* name, const std::string& container_id);
  void ReleaseRoot(const Proc& p);
  void ReleaseBinary(uint32_t pid, const BinKey& bin);
  void FinishExits();
  void SendOrigin(Proc& p, uint32_t pid, uint32_t uid);
  static int OnLine(void* ctx, void* data, size_t size);
  static int OnProcRecord(void* ctx, void* data, size_t size);
  void Flush();
  void LogEvent(const char* level, const std::string& msg, const std::string& fields);

  BashOptions opts_;
  FrameWriter* out_;
  bash* skel_ = nullptr;
  std::vector<bpf_link*> links_;  // configured binaries' probes and the discovery hooks
  bpf_link* self_iter_ = nullptr; // dke_bash_iter limited to this process (nullptr: the kernel cannot; iterate all)
  ring_buffer* rb_ = nullptr;
  std::vector<uint8_t> batch_;
  size_t batched_ = 0;

  bool discover_ = false;
  std::pair<uint64_t, uint64_t> own_root_{};  // st_dev, st_ino of our "/"; a shell there is named by the daemon
  std::map<BinKey, Binary> binaries_;
  std::map<BinKey, std::string> unusable_;  // found binaries that cannot be probed, and why
  std::unordered_map<uint32_t, Proc> procs_;
  std::map<RootKey, Root> roots_;
  std::vector<uint32_t> exited_;
  bool warned_ptrace_ = false;
  uint64_t attaches_ = 0, detaches_ = 0, attach_failures_ = 0;
};

}  // namespace dke
