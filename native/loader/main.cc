// dke-loader: the collector's one privileged process per plugin. It loads and
// attaches the BPF programs, drains their ring buffers, reads the kernel's
// counters and hands the daemon what changed, in frames (native/frame.h) on
// fd 3; it takes commands on stdin. No V8, no per-socket state in user space.
//
//   dke-loader net --pin-root DIR [--cgroup DIR] [--ephemeral-port N]
//                  [--dns-ports 53,5353] [--dns-timeout-ms N] [--orphan-timeout-ms N]
//   dke-loader bash --paths /bin/bash,/usr/bin/bash [--explicit 1]
//   dke-loader net --pin-root DIR --prepare-socket-map 1   (the daemon, as root:
//                  see PrepareSocketStateMap in net_loader.h)
//
// Signals meant for the process group (Ctrl-C, systemd's KillMode, kill -PGID)
// are ignored: the daemon says when to stop (DKE_CMD_STOP, after its last
// collect), and EOF on stdin means the daemon is gone: we exit and leave the
// pinned programs to the next loader (SIGKILL of the daemon is a restart).
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <malloc.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "frame_io.h"
#include "libbpf_log.h"
#include "bash_loader.h"
#include "net_loader.h"

namespace {

constexpr int kFramesFd = 3;
constexpr int kDrainEveryMs = 100;

const char* CapName(int c) {
  switch (c) {
    case CAP_BPF: return "CAP_BPF";
    case CAP_PERFMON: return "CAP_PERFMON";
    case CAP_NET_ADMIN: return "CAP_NET_ADMIN";
    case CAP_SYS_ADMIN: return "CAP_SYS_ADMIN";
    case CAP_SYS_PTRACE: return "CAP_SYS_PTRACE";
    default: return "?";
  }
}

// Keeps only the capabilities this loader needs (from what the daemon passed
// down as ambient capabilities); `required` must all be effective, the rest
// of `keep` is kept when present. Returns the missing required ones.
std::string NarrowCapabilities(const std::vector<int>& required, const std::vector<int>& optional) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &hdr, data) != 0) return "";
  std::string missing;
  for (int c : required) {
    if (!(data[c / 32].effective & (1u << (c % 32)))) missing += std::string(missing.empty() ? "" : ", ") + CapName(c);
  }
  if (!missing.empty()) return missing;
  std::vector<int> keep = required;
  keep.insert(keep.end(), optional.begin(), optional.end());
  if (getuid() == 0) return "";  // root (--user root) is left as it is
  __user_cap_data_struct want[2]{};
  for (int c : keep) {
    if (data[c / 32].permitted & (1u << (c % 32))) {
      want[c / 32].permitted |= 1u << (c % 32);
      want[c / 32].effective |= 1u << (c % 32);
    }
  }
  // Ambient capabilities must leave before the permitted set shrinks.
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int c = 0; c <= 63; c++) {
    bool k = false;
    for (int x : keep) k |= x == c;
    if (!k) prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
  }
  syscall(SYS_capset, &hdr, want);
  return "";
}

bool ParseArgs(int argc, char** argv, std::string* plugin, std::map<std::string, std::string>* flags) {
  if (argc < 2) return false;
  *plugin = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strncmp(argv[i], "--", 2) != 0) return false;
    (*flags)[argv[i] + 2] = argv[i + 1];
  }
  return (argc - 2) % 2 == 0;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    std::string part = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (!part.empty()) out.push_back(part);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

std::vector<uint16_t> ParsePorts(const std::string& s) {
  std::vector<uint16_t> out;
  for (const auto& part : SplitList(s)) {
    long v = strtol(part.c_str(), nullptr, 10);
    if (v > 0 && v < 65536) out.push_back(static_cast<uint16_t>(v));
  }
  return out;
}

uint64_t Num(const std::map<std::string, std::string>& f, const char* k, uint64_t def) {
  auto it = f.find(k);
  return it == f.end() ? def : strtoull(it->second.c_str(), nullptr, 10);
}

}  // namespace

int main(int argc, char** argv) {
  std::string plugin;
  std::map<std::string, std::string> flags;
  bool args_ok = ParseArgs(argc, argv, &plugin, &flags);
  // The daemon, as root, before it drops privileges: one line on stdout.
  if (args_ok && plugin == "net" && flags.count("prepare-socket-map")) {
    std::string said;
    bool ok = dke::PrepareSocketStateMap(flags["pin-root"], &said);
    if (!said.empty()) printf("%s\n", said.c_str());
    return ok ? 0 : 1;
  }
  // fd 3 is ours only if the daemon opened it; never write frames elsewhere.
  if (fcntl(kFramesFd, F_GETFD) < 0) {
    fprintf(stderr, "dke-loader: fd 3 is not open: this program is started by the datakit-ebpf daemon\n");
    return 2;
  }
  fcntl(kFramesFd, F_SETFD, FD_CLOEXEC);
  dke::FrameWriter out(kFramesFd);
  if (!args_ok || (plugin != "net" && plugin != "bash")) {
    out.Json(DKE_FRAME_FATAL, "{\"code\":\"INTERNAL\",\"message\":\"dke-loader: bad arguments\"}");
    return 2;
  }
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) signal(sig, SIG_IGN);
  // A daemon that dies without closing our stdin (it cannot: the kernel
  // closes it) is seen as EOF; this is the backstop for a wedged loop.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 0;  // the daemon died before we got here
  dke::InstallLibbpfLogger();

  std::unique_ptr<dke::LoaderPlugin> plugin_impl;
  std::vector<int> required;
  std::string missing;
  if (plugin == "net") {
    // tp_btf programs (BPF, PERFMON), cgroup programs (NET_ADMIN); SYS_RESOURCE
    // where BPF memory still counts against RLIMIT_MEMLOCK (before 5.11).
    required = {CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN};
    missing = NarrowCapabilities(required, {CAP_SYS_RESOURCE});
    dke::NetOptions opts;
    opts.pin_root = flags.count("pin-root") ? flags["pin-root"] : "";
    opts.cgroup = flags.count("cgroup") ? flags["cgroup"] : "";
    opts.ephemeral_port = static_cast<uint16_t>(Num(flags, "ephemeral-port", 0));
    opts.dns_ports = ParsePorts(flags.count("dns-ports") ? flags["dns-ports"] : "");
    opts.dns_timeout_ns = Num(flags, "dns-timeout-ms", 6000) * 1000000ULL;
    opts.orphan_timeout_ns = Num(flags, "orphan-timeout-ms", 600000) * 1000000ULL;
    plugin_impl = std::make_unique<dke::NetLoader>(opts, &out);
  } else {
    // A perf uprobe needs CAP_SYS_ADMIN (the uprobe PMU refuses CAP_PERFMON alone).
    // Finding the shells of containers (not with --bash-path) opens
    // /proc/<pid>/exe and /proc/<pid>/root of other users' processes, which
    // the kernel's ptrace access check allows with CAP_SYS_PTRACE only.
    dke::BashOptions opts;
    opts.paths = SplitList(flags.count("paths") ? flags["paths"] : "/bin/bash,/usr/bin/bash");
    opts.explicit_paths = Num(flags, "explicit", 0) != 0;
    required = {CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN};
    std::vector<int> optional = {CAP_SYS_RESOURCE, CAP_DAC_READ_SEARCH};
    if (!opts.explicit_paths) optional.push_back(CAP_SYS_PTRACE);
    missing = NarrowCapabilities(required, optional);
    plugin_impl = std::make_unique<dke::BashLoader>(opts, &out);
  }
  if (!missing.empty()) {
    std::string need;
    for (int c : required) need += std::string(need.empty() ? "" : ", ") + CapName(c);
    std::string msg = "loading the " + plugin + " eBPF programs needs root (or " + need + ") but this process (uid " +
                      std::to_string(getuid()) + ") lacks " + missing + ": run the collector as root" +
                      (getuid() != 0 ? "; under systemd add them to CapabilityBoundingSet= and AmbientCapabilities=" : "");
    out.Json(DKE_FRAME_FATAL, "{\"code\":\"PRIVILEGE\",\"message\":" + dke::JsonString(msg) + "}");
    return 3;
  }
  dke::LoaderPlugin& net = *plugin_impl;
  if (!net.Open()) return 3;
  // Loading parsed the kernel's BTF (megabytes) and freed it; hand those
  // pages back instead of carrying them for the life of the process.
  malloc_trim(0);

  fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
  dke::FrameReader in;
  bool stop = false, unpin = false;
  while (!stop && out.ok()) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {net.PollFd(), POLLIN, 0}};
    int n = poll(fds, fds[1].fd >= 0 ? 2 : 1, kDrainEveryMs);
    if (n < 0 && errno != EINTR) break;
    net.Drain();
    if (n <= 0 || !(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    std::string error;
    bool alive = in.Pump(
        STDIN_FILENO,
        [&](const dke_frame& hdr, const uint8_t* payload) {
          dke_collect_cmd cmd{};
          if (hdr.len >= sizeof(cmd)) memcpy(&cmd, payload, sizeof(cmd));
          switch (hdr.type) {
            case DKE_CMD_COLLECT:
              net.Collect(cmd.seq, cmd.what);
              break;
            case DKE_CMD_COMMIT:
              net.Commit(cmd.seq);
              break;
            case DKE_CMD_RESUME:
              net.Resume(cmd.seq);
              break;
            case DKE_CMD_STOP: {
              dke_stop_cmd s{};
              if (hdr.len >= sizeof(s)) memcpy(&s, payload, sizeof(s));
              stop = true;
              unpin = s.unpin != 0;
              break;
            }
            default:
              out.Log("warn", "dke-loader: unknown command " + std::to_string(hdr.type));
          }
        },
        &error);
    if (!error.empty()) out.Log("error", error);
    if (!alive) break;  // EOF: the daemon is gone; the pins keep counting for the next one
  }
  net.Close(unpin);
  return 0;
}
