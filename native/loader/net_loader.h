// The ebpf-net loader: the netflow + DNS BPF object, end to end. Opens it
// against the pin directory (so counting survives us), attaches, and per
// collect swaps the kernel's generation of per-flow counters for an empty one
// and reports what every generation not yet durable holds (struct
// dke_flow_delta); read generations stay pinned until the daemon says their
// collect is durable, so a SIGKILL anywhere neither loses nor repeats a byte.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "dns.h"
#include "flow_generations.h"
#include "frame_io.h"
#include "time_order.h"
#include "netflow.h"
#include "plugin.h"

struct netflow;
struct bpf_link;
struct ring_buffer;

namespace dke {

class DnsCollector;

struct NetOptions {
  std::string pin_root;  // "" = do not pin
  std::string cgroup;    // cgroup v2 mount ("" = find it)
  uint16_t ephemeral_port = 0;
  std::vector<uint16_t> dns_ports;  // empty: no dnsflow
  uint64_t dns_timeout_ns = 6'000'000'000ULL;
  uint64_t orphan_timeout_ns = 600'000'000'000ULL;
};

// Run as root by the daemon before it drops privileges (src/daemon/workpaths.ts),
// when the loaders will run as another user, which cannot join the root memory
// cgroup: creates the socket-state map from there and pins it in the pin
// directory, where the loader reuses it (root_memcg.h says why). Returns false
// with *said set when it could not; *said is empty when there was nothing to
// do (the map is pinned already, or this process is in the root cgroup).
bool PrepareSocketStateMap(const std::string& pin_root, std::string* said);

class NetLoader : public LoaderPlugin {
 public:
  NetLoader(NetOptions opts, FrameWriter* out);
  ~NetLoader() override;
  // Loads and attaches; on failure sends FATAL and returns false.
  bool Open() override;
  // Fds to poll (ring buffers); call Drain() when one is readable or on the timer.
  int PollFd() const override;
  void Drain() override;
  void Collect(uint64_t seq, uint32_t what) override;
  void Commit(uint64_t seq) override;
  void Resume(uint64_t last_durable_seq) override;
  // Detaches; with unpin also removes every pin (a clean stop).
  void Close(bool unpin) override;

 private:
  bool Fatal(const char* code, const std::string& msg);
  bool PreparePinDir(std::vector<std::string>* degraded);
  bool ChooseHooks(std::vector<std::string>* degraded);
  bool Attach(std::string* attached_json, std::vector<std::string>* degraded);
  void WriteControl(bool bump_epoch);
  bool OpenFlowGenerations(std::string* why);
  int NewFlowGeneration();
  std::string GenerationPin(uint64_t seq) const;
  void LetGo(const FlowGenerations::Generation& g, bool unpin);
  size_t ReadFlowGeneration(int fd, FlowSums* sums);
  void CollectFlows(uint64_t seq);
  void SendTelemetry();
  struct SkippedRunCounts {
    uint64_t lost;    // what the run would have counted is lost
    uint64_t redone;  // kRedoneWhenSkipped: done again later
  };
  SkippedRunCounts SkippedRuns() const;
  void SeedListeners();
  void SendProcNames(const std::vector<uint32_t>& pids, const std::vector<std::string>& comms);
  bool OpenDnsRings(std::string* why);
  bool FlushDnsStages();
  void DrainDns(bool hand_on);

  NetOptions opts_;
  FrameWriter* out_;
  netflow* skel_ = nullptr;
  std::string pin_dir_;
  bool maps_reused_ = false;
  bool packets_attached_ = false;
  std::string hook_set_;
  int cgroup_fd_ = -1;
  std::vector<bpf_link*> links_;
  // The programs links_ hold (SkippedRuns reads their counters).
  struct LinkProg {
    uint32_t id;
    bool redone_when_skipped;  // kRedoneWhenSkipped
  };
  std::vector<LinkProg> link_progs_;
  bool synack_counted_ = false;  // dke_tcp_retransmit_synack attached (control.flags)
  int ncpus_ = 1;                    // possible CPUs: one DNS ring each
  uint32_t dns_ring_bytes_ = 0;      // size of each
  int dns_ring_first_ = -1;          // made for loading (the rings' template), then CPU 0's ring
  std::vector<int> dns_ring_fds_;    // the rings in dns_rings, by CPU
  ring_buffer* dns_rb_ = nullptr;    // polls and drains all of them
  TimeOrderedStage dns_staged_;      // one drain's records of all rings
  uint64_t dns_drains_held_ = 0;     // drains that handed nothing on (FlushDnsStages)
  // dns_stage, mapped: one struct dke_dns_stage per CPU, 8-aligned (an array map's element).
  static constexpr size_t kDnsStageStride = (sizeof(dke_dns_stage) + 7) & ~size_t{7};
  static_assert(kDnsStageStride % 64 == 0, "each CPU's DNS stage on cache lines of its own (bpf/dns.h)");
  const uint8_t* dns_stages_ = nullptr;
  size_t dns_stages_len_ = 0;
  // Drains hand on what they read at most this often (DrainDns), and at every collect.
  static constexpr uint64_t kDnsHandOnEveryNs = 20'000'000;
  uint64_t dns_handed_on_ns_ = 0;  // MonotonicNs() when the last hand-on began
  std::unique_ptr<DnsCollector> dns_;
  uint32_t epoch_ = 0;
  struct FlowGenerationShape {  // flow_gen's template (bpf/netflow_maps.bpf.h)
    uint32_t type = 0;  // enum bpf_map_type
    uint32_t key_size = 0, value_size = 0, max_entries = 0, flags = 0;
  };
  FlowGenerationShape flow_gen_shape_;
  int flow_gen_fd_ = -1;         // the generation the programs add to (flow_gen[0])
  FlowGenerations generations_;  // read, not yet durable
  // pid -> the collect it was last named in; names are sent once per pid.
  std::unordered_map<uint32_t, uint64_t> named_pids_;
  uint64_t collects_ = 0;
};

}  // namespace dke
