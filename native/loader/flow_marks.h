// What a collect reports: per flow key, the kernel's cumulative counters
// minus what was already reported durably. Pure logic (no BPF), so it is unit
// tested on its own (native/test/test_flow_marks.cc); NetLoader feeds it the
// map contents and writes back what it says.
//
// A mark has `reported` (durable: the daemon's spool holds it) and `pending`
// (sent with collect `pending_seq`, durable once the daemon commits that
// seq). A collect reports current - reported, so a collect whose points never
// reached the spool is simply reported again by the next one.
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

class FlowMarks {
 public:
  using Map = std::unordered_map<dke_flow_key, dke_flow_mark, FlowKeyHash, FlowKeyEq>;

  // Flows quiet for this many collects in a row are removed from the kernel map.
  static constexpr uint32_t kIdleCollectsBeforeRemoval = 3;

  struct Step {
    std::vector<dke_flow_delta> deltas;     // what this collect reports
    std::vector<dke_flow_key> changed;      // marks to write back (their new value is in marks())
    std::vector<dke_flow_key> to_remove;    // quiet flows: remove from the kernel, then call Removed()
    std::vector<dke_flow_key> forgotten;    // marks whose flow is gone from the kernel: delete them
  };

  // Marks kept by an earlier loader (pinned map).
  void Restore(const dke_flow_key& k, const dke_flow_mark& m) { marks_[k] = m; }
  // At start: collects up to `last_durable_seq` reached the spool.
  // Returns the keys whose marks changed.
  std::vector<dke_flow_key> Resume(uint64_t last_durable_seq);
  void Commit(uint64_t seq) { committed_seq_ = seq; }

  // One collect over the kernel's entries (keys[i] -> vals[i]).
  Step Collect(uint64_t seq, const std::vector<dke_flow_key>& keys, const std::vector<dke_flow_stats>& vals);
  // A quiet flow removed from the kernel with its last value `last` (what
  // arrived between our read and the removal is in it): the residual to report.
  bool Removed(const dke_flow_key& k, const dke_flow_stats& last, dke_flow_delta* residual);

  const Map& marks() const { return marks_; }

 private:
  Map marks_;
  uint64_t committed_seq_ = 0;
};

// A flow's counters: the sum of its lanes (struct dke_flow_lanes).
dke_flow_stats SumLanes(const dke_flow_lanes& lanes);

// cur - base per counter; a counter below its mark means the kernel entry was
// created anew, so all of cur is new. Returns whether anything is non-zero.
bool SubtractStats(const dke_flow_stats& cur, const dke_flow_stats& base, dke_flow_stats* out);

}  // namespace dke
