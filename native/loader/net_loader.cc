#include "net_loader.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "dns.h"
#include "dns/dns_collector.h"
#include "libbpf_log.h"
#include "netflow.skel.h"
#include "proc_names.h"
#include "root_memcg.h"

namespace dke {

namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;

const char* const kTelemetryNames[DKE_TEL_MAX] = {
    "flow_map_full", "socket_state_failed", "listen_map_full", "dns_ringbuf_full",
    "dns_packets",   "dns_truncated",       "orphan_skipped",  "flow_create_failed",
};

// Without these there is no netflow at all (whichever byte hooks were chosen).
const std::set<std::string> kRequired = {"dke_tcp_set_state", "dke_tcp_destroy", "dke_sock_send", "dke_sock_recv",
                                         "dke_tcp_sendmsg_exit", "dke_tcp_recvmsg_exit", "dke_tcp_recvmsg_exit_nb"};

// What the user loses when an optional program cannot attach.
const std::map<std::string, std::string> kOptionalLoss = {
    {"dke_tcp_retransmit", "retransmits are counted at close"},
    {"dke_tcp_retransmit_synack", "a SYN-ACK retransmitted while two CPUs complete one handshake is not counted"},
    {"dke_skb_egress", "no UDP flows and no dnsflow"},
    {"dke_skb_ingress", "no UDP flows and no dnsflow"},
    {"dke_sock_create", "a UDP server is named at its first syscall, not its first datagram"},
    {"dke_process_exec", "a process whose name was cut at 15 characters and exited at once keeps the cut name"},
    {"dke_sock_release", "connections are closed when their socket is destroyed: a close handled in a softirq the kernel ran no program for is lost"},
};

// Programs whose skipped runs lose nothing: the kernel skips only a nested
// run, in a softirq, and what such a run does is done again later. An
// ESTABLISHED that went unseen is completed by dke_recover_tcp at the
// socket's next syscall, or at its destroy (bpf/sock_common.bpf.h); a
// retransmit is taken from total_retrans at the next retransmit or at
// destroy. Their skipped runs are counted apart (skipped_runs_redone), not
// as losses.
const std::set<std::string> kRedoneWhenSkipped = {"dke_tcp_set_state", "dke_tcp_retransmit"};

// The id of the program a link holds, or 0.
uint32_t LinkProgId(bpf_link* link) {
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0 ? info.prog_id : 0;
}

// The id of the map behind fd, or 0.
uint32_t MapId(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

// Parameters of a kernel function in BTF, or -1 when it is not there.
int FuncParams(const btf* b, const char* fn) {
  int id = b ? btf__find_by_name_kind(b, fn, BTF_KIND_FUNC) : -1;
  if (id <= 0) return -1;
  const btf_type* proto = btf__type_by_id(b, btf__type_by_id(b, id)->type);
  return proto ? btf_vlen(proto) : -1;
}

// Whether the running kernel's BTF has function fn.
bool KernelHasFunc(const char* fn) {
  btf* vmlinux = btf__load_vmlinux_btf();
  const bool has = FuncParams(vmlinux, fn) >= 0;
  if (vmlinux) btf__free(vmlinux);
  return has;
}

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

bool Exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

// Whether DNS records can be staged per CPU (bpf/skb.bpf.c,
// dke_dns_staging): the kernel must take atomic fetch operations (Linux 5.12)
// and run a raw_tp program on a chosen CPU (5.10). Tried with a program of
// six instructions that does both.
bool CanStageDns() {
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, 1, 0, 0, 0},                              // r1 = 0
      {BPF_STX | BPF_MEM | BPF_DW, 10, 1, -8, 0},                             // *(u64 *)(r10 - 8) = r1
      {BPF_ALU64 | BPF_MOV | BPF_K, 1, 0, 0, 1},                              // r1 = 1
      {BPF_STX | BPF_ATOMIC | BPF_DW, 10, 1, -8, BPF_ADD | BPF_FETCH},        // r1 = atomic_fetch_add(r10 - 8, r1)
      {BPF_ALU64 | BPF_MOV | BPF_X, 0, 1, 0, 0},                              // r0 = r1 (0)
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  const int fd = bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "dke_probe", "GPL", insns, sizeof(insns) / sizeof(insns[0]),
                               nullptr);
  if (fd < 0) return false;
  LIBBPF_OPTS(bpf_test_run_opts, run, .flags = BPF_F_TEST_RUN_ON_CPU, .cpu = 0);
  const bool ok = bpf_prog_test_run_opts(fd, &run) == 0 && run.retval == 0;
  close(fd);
  return ok;
}

// A ring record into the drain's stage: a batch of staged records
// (DKE_DNS_STAGED) one by one, anything else whole.
int StageRingRecord(void* ctx, void* data, size_t size) {
  auto* stage = static_cast<TimeOrderedStage*>(ctx);
  const auto* bytes = static_cast<const uint8_t*>(data);
  dke_dns_event ev;
  if (size < sizeof(ev) || (memcpy(&ev, bytes, sizeof(ev)), !(ev.flags & DKE_DNS_STAGED))) {
    stage->Add(data, size);
    return 0;
  }
  for (size_t off = 0; off + sizeof(ev) <= size;) {
    memcpy(&ev, bytes + off, sizeof(ev));
    const size_t len = DKE_DNS_STAGED_LEN(ev.cap_len);
    if (ev.cap_len > DKE_DNS_PAYLOAD_TINY || len > size - off) break;  // not a batch the programs wrote
    stage->Add(bytes + off, sizeof(ev) + ev.cap_len);
    off += len;
  }
  return 0;
}

// FNV-1a over the embedded BPF object: the pin directory's version, so a
// different build never picks up maps of another layout.
std::string ObjectHash() {
  size_t sz = 0;
  const auto* p = static_cast<const unsigned char*>(netflow__elf_bytes(&sz));
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < sz; i++) h = (h ^ p[i]) * 1099511628211ULL;
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string FindCgroup2() {
  std::ifstream f("/proc/self/mounts");
  std::string dev, mnt, type;
  std::string rest;
  while (f >> dev >> mnt >> type) {
    std::getline(f, rest);
    if (type == "cgroup2") return mnt;
  }
  return "";
}

std::vector<int> ListeningPorts() {
  std::set<int> ports;
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream f(path);
    std::string line;
    std::getline(f, line);  // header
    while (std::getline(f, line)) {
      std::istringstream ls(line);
      std::string sl, local, remote, st;
      if (!(ls >> sl >> local >> remote >> st) || st != "0A") continue;
      auto colon = local.rfind(':');
      if (colon == std::string::npos) continue;
      ports.insert(static_cast<int>(strtol(local.c_str() + colon + 1, nullptr, 16)));
    }
  }
  return {ports.begin(), ports.end()};
}


// The socket-state map alone, from a second copy of the object: libbpf
// creates it with the object's BTF, as the real load would. Runs in the
// child of CreateInRootMemcg, which exits right after.
int CreateSockStateMap() {
  netflow* s = netflow__open();
  if (!s) return -1;
  bpf_map* m;
  bpf_object__for_each_map(m, s->obj) {
    bpf_map__set_pin_path(m, nullptr);
    // .rodata too: libbpf (1.1) maps every internal map of a skeleton after
    // loading, made or not, and fails the load on one it did not make.
    bpf_map__set_autocreate(m, m == s->maps.sock_state || bpf_map__is_internal(m));
  }
  bpf_program* p;
  bpf_object__for_each_program(p, s->obj) bpf_program__set_autoload(p, false);
  if (netflow__load(s)) return -1;
  return bpf_map__fd(s->maps.sock_state);
}

// The socket-state map made from the root memory cgroup, for the loader to
// use or the daemon to pin. -1 with *why empty when there is nothing to make
// (pinned already in pin_dir, or this process is in the root memory cgroup).
int SockStateFromRootMemcg(const std::string& pin_dir, std::string* why) {
  why->clear();
  if (!pin_dir.empty() && Exists(pin_dir + "/sock_state")) return -1;
  return CreateInRootMemcg(CreateSockStateMap, why);
}

std::string SocketStateMapCharged(const std::string& why) {
  return "the socket-state map is charged to the collector's memory cgroup (creating it from the root one failed: " + why + ")";
}

}  // namespace

bool PrepareSocketStateMap(const std::string& pin_root, std::string* said) {
  said->clear();
  struct statfs fs {};
  if (statfs(pin_root.c_str(), &fs) != 0 || fs.f_type != kBpfFsMagic) {
    *said = SocketStateMapCharged(pin_root + " is not a directory on bpffs");
    return false;
  }
  const std::string dir = pin_root + "/net-" + ObjectHash();
  const std::string pin = dir + "/sock_state";
  std::string why;
  int fd = SockStateFromRootMemcg(dir, &why);
  if (fd >= 0) {
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      why = "creating " + dir + ": " + strerror(errno);
    else if (bpf_obj_pin(fd, pin.c_str()) != 0)
      why = "pinning it at " + pin + ": " + strerror(errno);
    close(fd);
  }
  if (why.empty()) return true;
  *said = SocketStateMapCharged(why);
  return false;
}

NetLoader::NetLoader(NetOptions opts, FrameWriter* out) : opts_(std::move(opts)), out_(out) {}

NetLoader::~NetLoader() { Close(false); }

bool NetLoader::Fatal(const char* code, const std::string& msg) {
  out_->Json(DKE_FRAME_FATAL, std::string("{\"code\":\"") + code + "\",\"message\":" + JsonString(msg) + "}");
  return false;
}

bool NetLoader::PreparePinDir(std::vector<std::string>* degraded) {
  if (opts_.pin_root.empty()) {
    degraded->push_back("pinning disabled: counters restart when the loader or the daemon restarts");
    return true;
  }
  std::string mount_point = opts_.pin_root.substr(0, opts_.pin_root.rfind('/'));
  struct statfs sfs;
  if (statfs(mount_point.c_str(), &sfs) != 0 || sfs.f_type != kBpfFsMagic) {
    // Our VMs boot without bpffs mounted.
    if (mount("bpf", mount_point.c_str(), "bpf", 0, nullptr) != 0) {
      degraded->push_back("cannot mount bpffs at " + mount_point + " (" + strerror(errno) +
                          "): counters restart when the loader or the daemon restarts");
      opts_.pin_root.clear();
      return true;
    }
  }
  if (mkdir(opts_.pin_root.c_str(), 0700) != 0 && errno != EEXIST) {
    degraded->push_back("cannot create " + opts_.pin_root + " (" + strerror(errno) + "): counters restart with the loader");
    opts_.pin_root.clear();
    return true;
  }
  pin_dir_ = opts_.pin_root + "/net-" + ObjectHash();
  // Pins of other builds: their programs would keep counting into maps nobody reads.
  if (DIR* d = opendir(opts_.pin_root.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      std::string full = opts_.pin_root + "/" + name;
      if ((name.rfind("net-", 0) == 0 || name.rfind("netflow-", 0) == 0) && full != pin_dir_) {
        if (DIR* sub = opendir(full.c_str())) {
          while (dirent* f = readdir(sub)) {
            if (f->d_name[0] != '.') unlink((full + "/" + f->d_name).c_str());
          }
          closedir(sub);
        }
        rmdir(full.c_str());
        degraded->push_back("removed pins of another build: " + full);
      }
    }
    closedir(d);
  }
  if (mkdir(pin_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return Fatal("EBPF_LOAD", "creating the pin directory " + pin_dir_ + " failed: " + strerror(errno));
  }
  maps_reused_ = Exists(pin_dir_ + "/flow_gen");
  return true;
}

bool NetLoader::Open() {
  std::vector<std::string> degraded;
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    utsname u{};
    uname(&u);
    return Fatal("KERNEL_UNSUPPORTED", std::string("kernel ") + u.release +
                                           " has no BTF (/sys/kernel/btf/vmlinux): the collector needs a kernel built "
                                           "with CONFIG_DEBUG_INFO_BTF=y");
  }
  if (!PreparePinDir(&degraded)) return false;

  ResetLibbpfLog();
  LIBBPF_OPTS(bpf_object_open_opts, open_opts);
  if (!pin_dir_.empty()) open_opts.pin_root_path = pin_dir_.c_str();
  skel_ = netflow__open_opts(&open_opts);
  if (!skel_) return Fatal("EBPF_LOAD", "opening the netflow BPF object failed: " + std::string(strerror(errno)));
  if (pin_dir_.empty()) {
    bpf_map* m;
    bpf_object__for_each_map(m, skel_->obj) bpf_map__set_pin_path(m, nullptr);
  }
  if (!ChooseHooks(&degraded)) return false;
  if (opts_.cgroup.empty()) opts_.cgroup = FindCgroup2();
  if (opts_.cgroup.empty()) {
    bpf_program__set_autoload(skel_->progs.dke_skb_egress, false);
    bpf_program__set_autoload(skel_->progs.dke_skb_ingress, false);
    bpf_program__set_autoload(skel_->progs.dke_sock_create, false);
    bpf_program__set_autoload(skel_->progs.dke_sock_release, false);
    degraded.push_back("no cgroup v2 mount found: no UDP flows and no dnsflow; TCP closes are counted at socket destruction");
  }
  // One DNS ring per CPU (bpf/netflow_maps.bpf.h, dns_rings): 1 MiB each up
  // to 4 CPUs, then smaller, 4 MiB in all and 256 KiB at least. A ring's
  // pages count in the loader's RSS (the kernel maps them all at mmap), so
  // a 2-CPU host has the 2 MiB the one shared ring had; the loader is woken
  // at every eighth of a ring, so a ring still holds what its CPU captures
  // while the loader collects. The map of rings is created from a ring of
  // ours (libbpf cannot size the object's inner ring), which becomes CPU
  // 0's unless an earlier loader's rings are pinned with the map.
  ncpus_ = libbpf_num_possible_cpus();
  if (ncpus_ <= 0) return Fatal("EBPF_LOAD", "reading the number of possible CPUs failed: " + std::string(strerror(-ncpus_)));
  dns_ring_bytes_ = 1u << 20;
  while (dns_ring_bytes_ > (256u << 10) && static_cast<uint64_t>(dns_ring_bytes_) * ncpus_ > (4u << 20)) dns_ring_bytes_ >>= 1;
  dns_ring_first_ = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "dke_dns_ring", 0, 0, dns_ring_bytes_, nullptr);
  if (dns_ring_first_ < 0) return Fatal("EBPF_LOAD", "creating a DNS ring buffer failed: " + std::string(strerror(errno)));
  bpf_map__set_max_entries(skel_->maps.dns_rings, static_cast<uint32_t>(ncpus_));
  skel_->rodata->dke_dns_staging = !opts_.dns_ports.empty() && CanStageDns();
  bpf_map__set_max_entries(skel_->maps.dns_stage, static_cast<uint32_t>(ncpus_));
  bpf_map__set_inner_map_fd(skel_->maps.dns_rings, dns_ring_first_);
  // Socket-local storage is allocated at every TCP socket's birth and freed
  // at its death. Created from the collector's memory cgroup, each of those
  // is charged and uncharged to it, on the workload's CPU: a few percent of
  // the short-connection rate. The memory is the host's sockets', so the map
  // is created from the root memory cgroup. A pinned map is reused as it was
  // made (by an earlier loader, or by the daemon before it dropped root).
  {
    std::string why;
    int fd = SockStateFromRootMemcg(pin_dir_, &why);
    if (fd >= 0) {
      if (int e = bpf_map__reuse_fd(skel_->maps.sock_state, fd)) why = std::string("reusing it: ") + strerror(-e);
      close(fd);
    }
    if (!why.empty()) out_->Log("debug", SocketStateMapCharged(why));
  }
  // flow_gen's generations: the template's shape, and the first one made
  // here to be the template. libbpf would make the template with the
  // object's BTF, and kernels before 6.2 take a map made without BTF (as
  // every later generation is) for another kind of map (EINVAL).
  if (const bpf_map* tpl = bpf_map__inner_map(skel_->maps.flow_gen)) {
    flow_gen_shape_ = {static_cast<uint32_t>(bpf_map__type(tpl)), bpf_map__key_size(tpl), bpf_map__value_size(tpl),
                       bpf_map__max_entries(tpl), bpf_map__map_flags(tpl)};
  }
  flow_gen_fd_ = NewFlowGeneration();
  if (flow_gen_fd_ < 0 || bpf_map__set_inner_map_fd(skel_->maps.flow_gen, flow_gen_fd_) != 0)
    return Fatal("EBPF_LOAD", "creating the flow counters failed: " + std::string(strerror(errno)));
  int err = netflow__load(skel_);
  if (err) {
    std::string prog = LibbpfFailedProgram();
    std::string tail = LibbpfLogTail(3);
    for (auto& c : tail)
      if (c == '\n') c = '|';
    utsname u{};
    uname(&u);
    std::string what = prog.empty() ? "loading the netflow BPF programs failed" : "the kernel refused BPF program " + prog;
    // The verifier's own words, for whoever runs with --log-level debug.
    out_->Log("debug", "libbpf log of the failed load:\n" + LibbpfLogTail(80));
    // A kernel without the syscall-length tracepoints fails here: say which.
    if (tail.find("sock_send_length") != std::string::npos || tail.find("sock_recv_length") != std::string::npos)
      return Fatal("KERNEL_UNSUPPORTED", std::string("kernel ") + u.release +
                                             " lacks the tracepoints netflow needs: sock:sock_send_length, "
                                             "sock:sock_recv_length (Linux >= 6.4); upgrade the kernel");
    // So does one whose tracing programs cannot keep socket-local storage
    // (before 5.11). Asked only after a failed load: a kernel whose BTF
    // lacks the function for another reason loads all the same.
    if (!KernelHasFunc("bpf_sk_storage_get_tracing"))
      return Fatal("KERNEL_UNSUPPORTED", std::string("kernel ") + u.release +
                                             " does not let tracing programs keep socket-local storage (Linux >= "
                                             "5.11), which netflow needs; upgrade the kernel");
    return Fatal("EBPF_LOAD", what + ": " + strerror(-err) + " [libbpf: " + tail + "]");
  }

  // The control block: kept from an earlier loader (epoch, last collect) so
  // we can tell how long programs were quiet.
  dke_control ctl{};
  uint32_t zero = 0;
  bpf_map_lookup_elem(bpf_map__fd(skel_->maps.control), &zero, &ctl);
  uint64_t now = MonotonicNs();
  double quiet_s = 0;
  if (maps_reused_ && ctl.orphan_timeout_ns && now > ctl.last_commit_ns + ctl.orphan_timeout_ns)
    quiet_s = static_cast<double>(now - ctl.last_commit_ns - ctl.orphan_timeout_ns) / 1e9;
  epoch_ = ctl.epoch;
  WriteControl(false);

  // A generation for the programs to add to, before they run.
  std::string gen_failed;
  if (!OpenFlowGenerations(&gen_failed)) return Fatal("EBPF_LOAD", "opening the flow counters failed: " + gen_failed);

  // The DNS rings before the programs: a packet captured with no ring for
  // its CPU would be lost.
  std::string rings_failed;
  if (!opts_.dns_ports.empty() && !OpenDnsRings(&rings_failed))
    degraded.push_back("opening the DNS ring buffers failed (" + rings_failed + "): no dnsflow");
  if (skel_->rodata->dke_dns_staging) {
    // Read-only: whether a CPU's stage holds anything (FlushDnsStages).
    const size_t len = kDnsStageStride * static_cast<size_t>(ncpus_);
    void* m = mmap(nullptr, len, PROT_READ, MAP_SHARED, bpf_map__fd(skel_->maps.dns_stage), 0);
    if (m != MAP_FAILED) {
      dns_stages_ = static_cast<const uint8_t*>(m);
      dns_stages_len_ = len;
    }
  }
  // The ring made for loading is CPU 0's by now, unless dnsflow is off or
  // an earlier loader's rings were found: then nothing needs it.
  if (dns_ring_first_ >= 0) {
    close(dns_ring_first_);
    dns_ring_first_ = -1;
  }

  std::string attached;
  if (!Attach(&attached, &degraded)) return false;
  WriteControl(false);  // the flags say what is attached
  SeedListeners();

  // DNS capture rides on the packet programs.
  bool dns = !opts_.dns_ports.empty() && packets_attached_ && rings_failed.empty();
  if (dns) {
    DnsCollector::Options o;
    o.dns_ports = opts_.dns_ports;
    o.timeout_ns = opts_.dns_timeout_ns;
    o.grace_ns = 1'000'000'000ULL;
    // Sized for a busy resolver (tens of thousands of lookups in flight and
    // distinct clients per collect); allocated once, a few MB in all.
    o.max_pending = 32768;
    o.max_groups = 16384;
    o.max_tcp_streams = 256;
    o.name_resend_max_s = 600;
    dns_ = std::make_unique<DnsCollector>(o);
  }

  utsname u{};
  uname(&u);
  std::vector<std::string> ports;
  for (int p : ListeningPorts()) ports.push_back(std::to_string(p));
  std::string name = hook_set_ + " + cgroup_skb";
  if (dns) name += skel_->rodata->dke_dns_staging ? " + DNS packets (cgroup_skb, batched per CPU)" : " + DNS packets (cgroup_skb)";
  char quiet[64];
  snprintf(quiet, sizeof(quiet), "%.1f", quiet_s);
  std::string ready = std::string("{\"kernel\":") + JsonString(u.release) + ",\"hookSet\":{\"name\":" + JsonString(name) +
                      ",\"attached\":" + attached + ",\"degraded\":" + JsonArray(degraded, true) +
                      "},\"info\":{\"listeningPorts\":" + JsonArray(ports, false) + ",\"pinDir\":" + JsonString(pin_dir_) +
                      ",\"mapsReused\":" + (maps_reused_ ? "true" : "false") + ",\"dns\":" + (dns ? "true" : "false") +
                      ",\"quietSeconds\":" + quiet + "}}";
  return out_->Json(DKE_FRAME_READY, ready);
}

// The cheapest set of hooks this kernel offers that gives the same records:
// one place decides, and the start-up line says which.
bool NetLoader::ChooseHooks(std::vector<std::string>* degraded) {
  utsname u{};
  uname(&u);
  btf* vmlinux = btf__load_vmlinux_btf();
  auto has_tp = [&](const char* tp) {
    std::string type = std::string("btf_trace_") + tp;
    return vmlinux && btf__find_by_name_kind(vmlinux, type.c_str(), BTF_KIND_TYPEDEF) > 0;
  };
  std::string missing;
  for (const char* tp : {"inet_sock_set_state", "tcp_destroy_sock"})
    if (!has_tp(tp)) missing += std::string(missing.empty() ? "" : ", ") + (tp[0] == 'i' ? "sock:" : "tcp:") + tp;
  if (!has_tp("tcp_retransmit_skb")) {
    bpf_program__set_autoload(skel_->progs.dke_tcp_retransmit, false);
    degraded->push_back("tcp:tcp_retransmit_skb missing: retransmits are counted at close");
  }
  // The task_file iterator that finds listeners older than us (5.8+).
  bpf_program__set_autoload(skel_->progs.dke_seed_listeners,
                            vmlinux && btf__find_by_name_kind(vmlinux, "bpf_iter__task_file", BTF_KIND_STRUCT) > 0);
  const bool syscall_tps = has_tp("sock_send_length") && has_tp("sock_recv_length");
  const int recv_params = FuncParams(vmlinux, "tcp_recvmsg");
  const bool fexit = FuncParams(vmlinux, "tcp_sendmsg") == 3 && (recv_params == 5 || recv_params == 6);
  if (vmlinux) btf__free(vmlinux);
  if (!missing.empty() || (!syscall_tps && !fexit)) {
    if (!syscall_tps && !fexit) missing += std::string(missing.empty() ? "" : ", ") + "sock:sock_send_length/sock_recv_length (Linux >= 6.4) or fexit on tcp_sendmsg/tcp_recvmsg";
    return Fatal("KERNEL_UNSUPPORTED", std::string("kernel ") + u.release + " lacks what netflow needs: " + missing +
                                           "; the collector needs Linux >= 5.11 with BTF");
  }
  // Syscall tracepoints where they exist (no trampolines needed, and the
  // only choice on kernels that disable them); fexit before 6.4.
  bpf_program__set_autoload(skel_->progs.dke_sock_send, syscall_tps);
  bpf_program__set_autoload(skel_->progs.dke_sock_recv, syscall_tps);
  bpf_program__set_autoload(skel_->progs.dke_tcp_sendmsg_exit, !syscall_tps);
  bpf_program__set_autoload(skel_->progs.dke_tcp_recvmsg_exit, !syscall_tps && recv_params == 5);
  bpf_program__set_autoload(skel_->progs.dke_tcp_recvmsg_exit_nb, !syscall_tps && recv_params == 6);
  hook_set_ = syscall_tps ? "tracepoints (tp_btf)" : "tracepoints (tp_btf) + fexit on tcp_sendmsg/tcp_recvmsg";
  if (!syscall_tps) degraded->push_back("no sock:sock_send_length (Linux < 6.4): UDP sockets are named at socket() and their first datagram");
  return true;
}

bool NetLoader::Attach(std::string* attached_json, std::vector<std::string>* degraded) {
  std::vector<std::string> items;
  std::vector<std::string> failed_required;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    // Not attached: run once (the iterator) or on demand (the flush).
    if (!bpf_program__autoload(prog) || prog == skel_->progs.dke_seed_listeners || prog == skel_->progs.dke_dns_flush)
      continue;
    const std::string name = bpf_program__name(prog);
    const std::string section = bpf_program__section_name(prog);
    const std::string pin = pin_dir_.empty() ? "" : pin_dir_ + "/link_" + name;
    bpf_link* link = nullptr;
    bool reused = false;
    int err = 0;
    // A link pinned by an earlier loader is still counting into the same
    // pinned maps: keep it, a second program would count twice.
    if (!pin.empty() && maps_reused_ && Exists(pin)) {
      link = bpf_link__open(pin.c_str());
      reused = link != nullptr;
    }
    if (!link) {
      if (!pin.empty()) unlink(pin.c_str());
      ResetLibbpfLog();
      const auto type = bpf_program__type(prog);
      if (type == BPF_PROG_TYPE_CGROUP_SKB || type == BPF_PROG_TYPE_CGROUP_SOCK) {
        if (cgroup_fd_ < 0) cgroup_fd_ = open(opts_.cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        link = cgroup_fd_ < 0 ? nullptr : bpf_program__attach_cgroup(prog, cgroup_fd_);
      } else {
        link = bpf_program__attach(prog);
      }
      if (!link) err = errno;
      if (link && !pin.empty()) bpf_link__pin(link, pin.c_str());
    }
    std::string item = "{\"program\":" + JsonString(name) + ",\"section\":" + JsonString(section) +
                       ",\"ok\":" + (link ? "true" : "false") + ",\"reused\":" + (reused ? "true" : "false");
    if (!link) {
      std::string why = std::string(strerror(err)) + " (errno " + std::to_string(err) + ")";
      item += ",\"error\":" + JsonString(why);
      if (kRequired.count(name)) failed_required.push_back(section + " (" + why + ")");
      else degraded->push_back(section + ": " + why + ": " + (kOptionalLoss.count(name) ? kOptionalLoss.at(name) : "less data"));
    }
    items.push_back(item + "}");
    if (link) {
      links_.push_back(link);
      if (uint32_t id = LinkProgId(link)) link_progs_.push_back({id, kRedoneWhenSkipped.count(name) > 0});
    }
    if (link && name == "dke_skb_egress") packets_attached_ = true;
    if (link && name == "dke_tcp_retransmit_synack") synack_counted_ = true;
  }
  *attached_json = JsonArray(items, false);
  if (!failed_required.empty()) {
    std::string what;
    for (auto& f : failed_required) what += (what.empty() ? "" : ", ") + f;
    Close(true);
    return Fatal("EBPF_ATTACH", "attaching " + what + " failed: the kernel must allow tp_btf programs");
  }
  return true;
}

void NetLoader::WriteControl(bool bump_epoch) {
  dke_control ctl{};
  // Never 0: a socket's state starts with rtt_epoch 0, meaning no sample yet.
  if (bump_epoch || epoch_ == 0) epoch_ = epoch_ + 1 ? epoch_ + 1 : 1;
  ctl.last_commit_ns = MonotonicNs();
  ctl.orphan_timeout_ns = opts_.orphan_timeout_ns;
  ctl.epoch = epoch_;
  ctl.ephemeral_port = opts_.ephemeral_port;
  if (synack_counted_) ctl.flags |= DKE_CTL_SYNACK_COUNTED;
  for (size_t i = 0; i < opts_.dns_ports.size() && i < DKE_DNS_PORTS_MAX; i++) ctl.dns_ports[i] = opts_.dns_ports[i];
  uint32_t zero = 0;
  bpf_map_update_elem(bpf_map__fd(skel_->maps.control), &zero, &ctl, BPF_ANY);
}

// The rings of dns_rings, one per CPU: an earlier loader's (pinned with the
// map, found by id) or new ones. Before they are in the map the programs
// count every DNS packet as lost (dns_ringbuf_full).
static_assert(offsetof(struct dke_dns_event, ktime_ns) == 0, "TimeOrderedStage reads a record's time from its first 8 bytes");

bool NetLoader::OpenDnsRings(std::string* why) {
  const int outer = bpf_map__fd(skel_->maps.dns_rings);
  for (uint32_t cpu = 0; cpu < static_cast<uint32_t>(ncpus_); cpu++) {
    auto failed = [&] {
      *why = std::string("ring of CPU ") + std::to_string(cpu) + ": " + strerror(errno);
      return false;
    };
    uint32_t id = 0;
    int fd = -1;
    if (bpf_map_lookup_elem(outer, &cpu, &id) == 0 && id) fd = bpf_map_get_fd_by_id(id);
    if (fd < 0) {
      std::swap(fd, dns_ring_first_);
      if (fd < 0) fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "dke_dns_ring", 0, 0, dns_ring_bytes_, nullptr);
      if (fd < 0 || bpf_map_update_elem(outer, &cpu, &fd, BPF_ANY) != 0) {
        failed();  // before close() can change errno
        if (fd >= 0) close(fd);
        return false;
      }
    }
    dns_ring_fds_.push_back(fd);
    int err = 0;
    if (dns_rb_)
      err = ring_buffer__add(dns_rb_, fd, StageRingRecord, &dns_staged_);
    else
      dns_rb_ = ring_buffer__new(fd, StageRingRecord, &dns_staged_, nullptr);
    if (!dns_rb_ || err) return failed();
  }
  return true;
}

int NetLoader::PollFd() const { return dns_rb_ ? ring_buffer__epoll_fd(dns_rb_) : -1; }

// Every CPU's DNS stage into its ring (dke_dns_flush). False when one stays
// busy: a DNS packet there is between its clock read and its record (the
// flush interrupted it, or it is preempted), and asking again a few times
// did not see it through.
bool NetLoader::FlushDnsStages() {
  if (!skel_ || !skel_->rodata->dke_dns_staging) return true;
  const int fd = bpf_program__fd(skel_->progs.dke_dns_flush);
  bool complete = true;
  // A CPU with nothing staged and no DNS packet under way is not asked (an
  // interrupt to an idle vCPU is a wake-up through the hypervisor): a
  // packet whose clock read was before this drain began has raised inflight
  // by now, and one that is done has its record in the ring or counted in
  // used before it lowered inflight again.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (int cpu = 0; cpu < ncpus_; cpu++) {
    if (dns_stages_) {
      const auto* st = reinterpret_cast<const dke_dns_stage*>(dns_stages_ + kDnsStageStride * static_cast<size_t>(cpu));
      if (__atomic_load_n(&st->inflight, __ATOMIC_ACQUIRE) == 0 && __atomic_load_n(&st->used, __ATOMIC_ACQUIRE) == 0)
        continue;
    }
    bool flushed = false;
    for (int attempt = 0; attempt < 8 && !flushed; attempt++) {
      if (attempt >= 2) sched_yield();  // a preempted packet's task gets to finish
      LIBBPF_OPTS(bpf_test_run_opts, run, .flags = BPF_F_TEST_RUN_ON_CPU, .cpu = static_cast<uint32_t>(cpu));
      // An offline CPU (ENXIO) stages nothing new; what it held waits for it to come back.
      flushed = bpf_prog_test_run_opts(fd, &run) != 0 || run.retval == 0;
    }
    complete = complete && flushed;
  }
  if (!complete) dns_drains_held_++;
  return complete;
}

void NetLoader::Drain() { DrainDns(false); }

// Records are handed on in time order across the rings, up to when the
// drain began (native/loader/time_order.h; bpf_ktime_get_ns() is
// CLOCK_MONOTONIC). That needs the stages emptied first, so that the rings
// hold every record from before then: a run of dke_dns_flush on each CPU
// whose stage holds something, an interrupt to it. A ring's wake-up (every eighth of it, a few
// hundred times a second on a DNS-heavy host) only needs room made, so
// between hand-ons a drain just reads the rings into dns_staged_; what it
// reads is all from after the last hand-on's start.
void NetLoader::DrainDns(bool hand_on) {
  if (!dns_rb_) return;
  const uint64_t began = MonotonicNs();
  if (!hand_on && began - dns_handed_on_ns_ < kDnsHandOnEveryNs) {
    ring_buffer__consume(dns_rb_);
    return;
  }
  // When a stage could not be emptied, what was read waits for the next drain.
  const bool complete = FlushDnsStages();
  ring_buffer__consume(dns_rb_);
  if (!complete) return;
  dns_handed_on_ns_ = began;
  dns_staged_.Drain(began, [this](const void* rec, size_t len) {
    if (dns_) dns_->OnEvent(rec, len);
  });
}

void NetLoader::Resume(uint64_t last_durable_seq) { Commit(last_durable_seq); }

void NetLoader::Commit(uint64_t seq) {
  for (const auto& g : generations_.TakeDurable(seq)) LetGo(g, true);
}

void NetLoader::Collect(uint64_t seq, uint32_t what) {
  if (!skel_) return;
  collects_++;
  // Names first: the daemon tags the flows of this collect with them.
  if (dns_) {
    DrainDns(true);
    std::vector<dke_dns_name> names;
    dns_->TakeNames(&names);
    if (!names.empty()) out_->Records(DKE_FRAME_DNS_NAMES, names.data(), sizeof(names[0]), names.size());
  }
  if (what & DKE_COLLECT_FLOWS) {
    WriteControl(true);
    CollectFlows(seq);
    SendTelemetry();
  }
  if ((what & DKE_COLLECT_DNS) && dns_) {
    std::vector<dke_dnsflow_stat> stats;
    dns_->Collect(MonotonicNs(), &stats);
    if (!stats.empty()) out_->Records(DKE_FRAME_DNS_STATS, stats.data(), sizeof(stats[0]), stats.size());
  }
  dke_collect_cmd done{};
  done.seq = seq;
  done.what = what;
  out_->Records(DKE_FRAME_COLLECTED, &done, sizeof(done), 1);
}

// The generations (bpf/netflow_maps.bpf.h, flow_gen): the current one from
// an earlier loader, or a new one; and those an earlier loader read whose
// collect the daemon had not yet made durable (pinned as flow_gen_<seq>).
bool NetLoader::OpenFlowGenerations(std::string* why) {
  const int outer = bpf_map__fd(skel_->maps.flow_gen);
  uint32_t current = 0, id = 0;
  // An earlier loader's current generation, which its programs (still
  // attached) add to; or the one made for loading (Open).
  int earlier = -1;
  if (maps_reused_ && bpf_map_lookup_elem(outer, &current, &id) == 0 && id) earlier = bpf_map_get_fd_by_id(id);
  if (earlier >= 0) {
    close(flow_gen_fd_);
    flow_gen_fd_ = earlier;
  } else {
    if (bpf_map_update_elem(outer, &current, &flow_gen_fd_, BPF_ANY) != 0) {
      *why = std::string("putting a generation in flow_gen: ") + strerror(errno);
      return false;
    }
    id = MapId(flow_gen_fd_);
  }
  if (pin_dir_.empty()) return true;
  if (DIR* d = opendir(pin_dir_.c_str())) {
    const std::string prefix = "flow_gen_";
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.rfind(prefix, 0) != 0) continue;
      const std::string path = pin_dir_ + "/" + name;
      const int fd = maps_reused_ ? bpf_obj_get(path.c_str()) : -1;
      const uint32_t pinned = fd >= 0 ? MapId(fd) : 0;
      // Pinned just before a swap that never happened: still the current one.
      if (!pinned || pinned == id) {
        if (fd >= 0) close(fd);
        unlink(path.c_str());
        continue;
      }
      generations_.Keep(strtoull(name.c_str() + prefix.size(), nullptr, 10), fd);
    }
    closedir(d);
  }
  return true;
}

// An empty generation, made as the object's template says (the outer map
// accepts no other).
int NetLoader::NewFlowGeneration() {
  const FlowGenerationShape& g = flow_gen_shape_;
  LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = g.flags);
  return bpf_map_create(static_cast<bpf_map_type>(g.type), "dke_flow_gen", g.key_size, g.value_size, g.max_entries, &o);
}

std::string NetLoader::GenerationPin(uint64_t seq) const {
  return pin_dir_.empty() ? "" : pin_dir_ + "/flow_gen_" + std::to_string(seq);
}

void NetLoader::LetGo(const FlowGenerations::Generation& g, bool unpin) {
  if (unpin && !pin_dir_.empty()) unlink(GenerationPin(g.seq).c_str());
  close(g.fd);
}

// Adds a generation's flows to *sums; returns how many it holds.
size_t NetLoader::ReadFlowGeneration(int fd, FlowSums* sums) {
  const uint32_t chunk = 4096;
  std::vector<dke_flow_key> kb(chunk);
  std::vector<dke_flow_lanes> vb(chunk);
  dke_flow_key in_batch{}, out_batch{};
  size_t total = 0;
  for (bool first = true;; first = false) {
    uint32_t count = chunk;
    LIBBPF_OPTS(bpf_map_batch_opts, o);
    int err = bpf_map_lookup_batch(fd, first ? nullptr : &in_batch, &out_batch, kb.data(), vb.data(), &count, &o);
    int e = err ? errno : 0;
    for (uint32_t i = 0; i < count; i++) sums->Add(kb[i], vb[i]);
    total += count;
    if (err) {
      if (e != ENOENT)
        out_->Log("warn", std::string("reading a flow generation failed (") + strerror(e) + "): the flows not read are lost");
      return total;
    }
    in_batch = out_batch;
  }
}

// O(flows that moved since the last durable collect): the programs' current
// generation is swapped for an empty one and read whole.
void NetLoader::CollectFlows(uint64_t seq) {
  const int outer = bpf_map__fd(skel_->maps.flow_gen);
  const int fresh = NewFlowGeneration();
  if (fresh < 0) {
    out_->Log("warn", std::string("creating a flow generation failed (") + strerror(errno) +
                          "): this interval's flows come with the next collect");
    return;
  }
  // Pinned before the swap: a loader killed after it finds it at start.
  const std::string pin = GenerationPin(seq);
  if (!pin.empty() && bpf_obj_pin(flow_gen_fd_, pin.c_str()) != 0)
    out_->Log("debug", std::string("pinning a read flow generation failed: ") + strerror(errno));
  // The kernel returns from this only once no program can still be adding
  // to the old generation (a map-in-map update waits for an RCU grace
  // period): its read is exact. That wait is ~10 ms where grace periods are
  // not expedited; meanwhile the DNS rings are drained here, not left to fill.
  int swap_err = 0;
  auto swap = [&] {
    uint32_t current = 0;
    swap_err = bpf_map_update_elem(outer, &current, &fresh, BPF_ANY) != 0 ? errno : 0;
  };
  if (!dns_rb_) {
    swap();
  } else {
    std::atomic<bool> swapped{false};
    std::thread swapper([&] {
      swap();
      swapped.store(true, std::memory_order_release);
    });
    while (!swapped.load(std::memory_order_acquire)) ring_buffer__poll(dns_rb_, 1);
    swapper.join();
    Drain();
  }
  if (swap_err) {
    out_->Log("warn", std::string("swapping the flow generation failed (") + strerror(swap_err) +
                          "): this interval's flows come with the next collect");
    if (!pin.empty()) unlink(pin.c_str());
    close(fresh);
    return;
  }
  const FlowGenerations::Generation read{seq, flow_gen_fd_};
  flow_gen_fd_ = fresh;
  FlowSums sums;
  // With every earlier one whose collect is not durable yet: those points never reached the spool.
  for (const auto& g : generations_.kept()) ReadFlowGeneration(g.fd, &sums);
  if (ReadFlowGeneration(read.fd, &sums) > 0)
    generations_.Keep(read.seq, read.fd);
  else
    LetGo(read, true);  // nothing in it to make durable
  std::vector<dke_flow_delta> deltas = sums.Take();

  std::vector<uint32_t> new_pids;
  std::vector<std::string> new_comms;
  for (const auto& d : deltas) {
    if (!d.key.pid) continue;
    auto [it, added] = named_pids_.try_emplace(d.key.pid, collects_);
    it->second = collects_;
    if (added) {
      new_pids.push_back(d.key.pid);
      new_comms.emplace_back(d.key.comm, strnlen(d.key.comm, sizeof(d.key.comm)));
    }
  }
  if (!new_pids.empty()) SendProcNames(new_pids, new_comms);
  if (!deltas.empty()) out_->Records(DKE_FRAME_FLOWS, deltas.data(), sizeof(deltas[0]), deltas.size());
  // Forget pids not seen for a long while (they are named again if they return).
  if (named_pids_.size() > 65536) {
    for (auto it = named_pids_.begin(); it != named_pids_.end();)
      it = collects_ - it->second > 10 ? named_pids_.erase(it) : std::next(it);
  }
}

void NetLoader::SendProcNames(const std::vector<uint32_t>& pids, const std::vector<std::string>& comms) {
  std::vector<dke_proc_name> recs(pids.size());
  for (size_t i = 0; i < pids.size(); i++) {
    recs[i].pid = pids[i];
    dke_exec_name exec{};
    bpf_map_lookup_elem(bpf_map__fd(skel_->maps.exec_names), &pids[i], &exec);
    std::string name = ProcessName(pids[i], comms[i], std::string(exec.path, strnlen(exec.path, sizeof(exec.path))));
    strncpy(recs[i].name, name.c_str(), sizeof(recs[i].name) - 1);
  }
  out_->Records(DKE_FRAME_PROCS, recs.data(), sizeof(recs[0]), recs.size());
}

// Listeners opened before we attached (bpf/tcp_state.bpf.c,
// dke_seed_listeners): one pass of the task_file iterator. Without it (a
// kernel that refuses the iterator) only listen() calls seen since count.
void NetLoader::SeedListeners() {
  if (!bpf_program__autoload(skel_->progs.dke_seed_listeners)) return;
  bpf_link* link = bpf_program__attach_iter(skel_->progs.dke_seed_listeners, nullptr);
  int fd = link ? bpf_iter_create(bpf_link__fd(link)) : -1;
  if (fd < 0) {
    out_->Log("debug", std::string("listeners opened before the collector are not known: ") + strerror(errno));
  } else {
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    close(fd);
  }
  if (link) bpf_link__destroy(link);
}

// Runs of our attached programs the kernel skipped: a tracing program that
// fires while it already runs on this CPU (a softirq interrupting it) is not
// run again. Read from the programs the links hold (an earlier loader's, when
// its links were reused).
NetLoader::SkippedRunCounts NetLoader::SkippedRuns() const {
  SkippedRunCounts total{0, 0};
  for (const LinkProg& p : link_progs_) {
    int fd = bpf_prog_get_fd_by_id(p.id);
    if (fd < 0) continue;
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) (p.redone_when_skipped ? total.redone : total.lost) += info.recursion_misses;
    close(fd);
  }
  return total;
}

void NetLoader::SendTelemetry() {
  TelemetryFrame t;
  t.AddPerCpu(bpf_map__fd(skel_->maps.telemetry), kTelemetryNames, DKE_TEL_MAX);
  const SkippedRunCounts skipped = SkippedRuns();
  t.Add("skipped_runs", skipped.lost);
  t.Add("skipped_runs_redone", skipped.redone);
  if (dns_) {
    auto s = dns_->stats();
    const std::pair<const char*, uint64_t> more[] = {
        {"dns_malformed", s.malformed},          {"dns_pending_shed", s.pending_shed},
        {"dns_groups_shed", s.groups_shed},      {"dns_tcp_streams_shed", s.tcp_streams_shed},
        {"dns_tcp_stream_gaps", s.tcp_stream_gaps},
        {"dns_drains_held", dns_drains_held_},
    };
    for (auto& [n, v] : more) t.Add(n, v);
  }
  t.Send(out_);
}

void NetLoader::Close(bool unpin) {
  if (dns_rb_) {
    ring_buffer__free(dns_rb_);
    dns_rb_ = nullptr;
  }
  for (int fd : dns_ring_fds_) close(fd);
  dns_ring_fds_.clear();
  if (dns_stages_) munmap(const_cast<uint8_t*>(dns_stages_), dns_stages_len_);
  dns_stages_ = nullptr;
  if (dns_ring_first_ >= 0) close(dns_ring_first_);
  dns_ring_first_ = -1;
  for (bpf_link* l : links_) {
    if (unpin) bpf_link__unpin(l);
    bpf_link__destroy(l);
  }
  links_.clear();
  link_progs_.clear();
  if (cgroup_fd_ >= 0) {
    close(cgroup_fd_);
    cgroup_fd_ = -1;
  }
  for (const auto& g : generations_.TakeDurable(UINT64_MAX)) LetGo(g, unpin);
  if (flow_gen_fd_ >= 0) close(flow_gen_fd_);
  flow_gen_fd_ = -1;
  if (skel_) {
    if (unpin && !pin_dir_.empty()) {
      bpf_program* prog;
      bpf_object__for_each_program(prog, skel_->obj) unlink((pin_dir_ + "/link_" + bpf_program__name(prog)).c_str());
      bpf_map* m;
      bpf_object__for_each_map(m, skel_->obj) {
        if (bpf_map__is_pinned(m)) bpf_map__unpin(m, nullptr);
      }
      rmdir(pin_dir_.c_str());
    }
    netflow__destroy(skel_);
    skel_ = nullptr;
  }
}

}  // namespace dke
