#include "flow_marks.h"

#include <cstddef>
#include <cstring>

namespace dke {

size_t FlowKeyHash::operator()(const dke_flow_key& k) const {
  const auto* p = reinterpret_cast<const unsigned char*>(&k);
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < sizeof(k); i++) h = (h ^ p[i]) * 1099511628211ULL;
  return static_cast<size_t>(h);
}

bool FlowKeyEq::operator()(const dke_flow_key& a, const dke_flow_key& b) const { return memcmp(&a, &b, sizeof(a)) == 0; }

// bpf/netflow.h: a cache line's worth of padding on both sides of every
// lane's counters, whatever 8-byte-aligned address the value gets.
static_assert(offsetof(dke_flow_lane, stats) >= 64, "a lane's counters start a cache line after what precedes them");
static_assert(sizeof(dke_flow_lanes) - offsetof(dke_flow_lanes, lane[DKE_FLOW_LANES - 1].stats) - sizeof(dke_flow_stats) >= 64,
              "the last lane's counters end a cache line before what follows the value");

dke_flow_stats SumLanes(const dke_flow_lanes& lanes) {
  constexpr size_t n = sizeof(dke_flow_stats) / sizeof(uint64_t);
  uint64_t sum[n] = {}, c[n];
  for (const auto& lane : lanes.lane) {
    memcpy(c, &lane.stats, sizeof(c));
    for (size_t i = 0; i < n; i++) sum[i] += c[i];
  }
  dke_flow_stats out;
  memcpy(&out, sum, sizeof(out));
  return out;
}

bool SubtractStats(const dke_flow_stats& cur, const dke_flow_stats& base, dke_flow_stats* out) {
  constexpr size_t n = sizeof(dke_flow_stats) / sizeof(uint64_t);
  uint64_t c[n], b[n], o[n];
  memcpy(c, &cur, sizeof(c));
  memcpy(b, &base, sizeof(b));
  bool fresh = false;
  for (size_t i = 0; i < n; i++) fresh |= c[i] < b[i];
  bool any = false;
  for (size_t i = 0; i < n; i++) {
    o[i] = fresh ? c[i] : c[i] - b[i];
    any |= o[i] != 0;
  }
  memcpy(out, o, sizeof(o));
  return any;
}

std::vector<dke_flow_key> FlowMarks::Resume(uint64_t last_durable_seq) {
  committed_seq_ = last_durable_seq;
  std::vector<dke_flow_key> changed;
  for (auto& [key, m] : marks_) {
    if (!m.pending_seq) continue;
    if (m.pending_seq <= last_durable_seq) m.reported = m.pending;
    m.pending_seq = 0;
    changed.push_back(key);
  }
  return changed;
}

FlowMarks::Step FlowMarks::Collect(uint64_t seq, const std::vector<dke_flow_key>& keys,
                                   const std::vector<dke_flow_stats>& vals) {
  Step step;
  std::unordered_map<dke_flow_key, bool, FlowKeyHash, FlowKeyEq> seen;
  seen.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); i++) {
    const dke_flow_key& k = keys[i];
    seen[k] = true;
    dke_flow_mark& m = marks_[k];
    if (m.pending_seq && m.pending_seq <= committed_seq_) {
      m.reported = m.pending;
      m.pending_seq = 0;
    }
    dke_flow_delta d{};
    d.key = k;
    if (SubtractStats(vals[i], m.reported, &d.delta)) {
      m.pending = vals[i];
      m.pending_seq = seq;
      m.idle_collects = 0;
      step.deltas.push_back(d);
      step.changed.push_back(k);
    } else if (++m.idle_collects >= kIdleCollectsBeforeRemoval) {
      step.to_remove.push_back(k);
    }
  }
  for (auto it = marks_.begin(); it != marks_.end();) {
    if (!seen.count(it->first)) {
      step.forgotten.push_back(it->first);
      it = marks_.erase(it);
    } else {
      ++it;
    }
  }
  return step;
}

bool FlowMarks::Removed(const dke_flow_key& k, const dke_flow_stats& last, dke_flow_delta* residual) {
  auto it = marks_.find(k);
  dke_flow_stats base{};
  if (it != marks_.end()) base = it->second.reported;
  marks_.erase(k);
  residual->key = k;
  return SubtractStats(last, base, &residual->delta);
}

}  // namespace dke
