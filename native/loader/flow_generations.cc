#include "flow_generations.h"

#include <algorithm>
#include <cstring>

namespace dke {

namespace {
constexpr size_t kCounters = sizeof(dke_flow_stats) / sizeof(uint64_t);
}

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
  uint64_t sum[kCounters] = {}, c[kCounters];
  for (const auto& lane : lanes.lane) {
    memcpy(c, &lane.stats, sizeof(c));
    for (size_t i = 0; i < kCounters; i++) sum[i] += c[i];
  }
  dke_flow_stats out;
  memcpy(&out, sum, sizeof(out));
  return out;
}

void FlowGenerations::Keep(uint64_t seq, int fd) {
  auto at = std::upper_bound(kept_.begin(), kept_.end(), seq, [](uint64_t s, const Generation& g) { return s < g.seq; });
  kept_.insert(at, Generation{seq, fd});
}

std::vector<FlowGenerations::Generation> FlowGenerations::TakeDurable(uint64_t seq) {
  auto end = std::find_if(kept_.begin(), kept_.end(), [seq](const Generation& g) { return g.seq > seq; });
  std::vector<Generation> out(kept_.begin(), end);
  kept_.erase(kept_.begin(), end);
  return out;
}

void FlowSums::Add(const dke_flow_key& k, const dke_flow_lanes& v) {
  const dke_flow_stats add = SumLanes(v);
  auto [it, fresh] = sums_.try_emplace(k, add);
  if (fresh) return;
  uint64_t a[kCounters], s[kCounters];
  memcpy(a, &add, sizeof(a));
  memcpy(s, &it->second, sizeof(s));
  for (size_t i = 0; i < kCounters; i++) s[i] += a[i];
  memcpy(&it->second, s, sizeof(s));
}

std::vector<dke_flow_delta> FlowSums::Take() {
  std::vector<dke_flow_delta> out;
  out.reserve(sums_.size());
  static const dke_flow_stats zero{};
  for (const auto& [k, s] : sums_) {
    if (memcmp(&s, &zero, sizeof(s)) == 0) continue;  // created with nothing added (a zero-length datagram)
    dke_flow_delta d{};
    d.key = k;
    d.delta = s;
    out.push_back(d);
  }
  sums_.clear();
  return out;
}

}  // namespace dke
