// What a collect reports (struct dke_flow_delta), from generations of the
// kernel's per-flow counters (bpf/netflow_maps.bpf.h, flow_gen). Pure logic
// (no BPF), so it is unit tested on its own (test_flow_generations.cc);
// NetLoader swaps the generations in the kernel, reads them and feeds them
// here.
//
// A generation read by collect S is kept (pinned) until the daemon says S is
// durable, its points in the spool. Every collect reports the sum of all the
// generations not yet durable: the points of a collect that never reached
// the spool are reported again by the next one, and a SIGKILL of the loader
// or the daemon anywhere neither loses nor repeats a count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "frame.h"

namespace dke {

struct FlowKeyHash {
  size_t operator()(const dke_flow_key& k) const;
};
struct FlowKeyEq {
  bool operator()(const dke_flow_key& a, const dke_flow_key& b) const;
};

// A flow's counters: the sum of its lanes (struct dke_flow_lanes).
dke_flow_stats SumLanes(const dke_flow_lanes& lanes);

// The generations read and not yet durable, by the collect that read them.
class FlowGenerations {
 public:
  struct Generation {
    uint64_t seq;  // the collect that read it
    int fd;        // the map (NetLoader's; this class only keeps it)
  };
  void Keep(uint64_t seq, int fd);
  // Collects up to `seq` are durable: their generations, no longer kept.
  std::vector<Generation> TakeDurable(uint64_t seq);
  const std::vector<Generation>& kept() const { return kept_; }

 private:
  std::vector<Generation> kept_;  // oldest first
};

// Per flow key, the sum of what every generation added holds.
class FlowSums {
 public:
  void Add(const dke_flow_key& k, const dke_flow_lanes& v);
  // The flows with anything to report; empties the sums.
  std::vector<dke_flow_delta> Take();

 private:
  std::unordered_map<dke_flow_key, dke_flow_stats, FlowKeyHash, FlowKeyEq> sums_;
};

}  // namespace dke
