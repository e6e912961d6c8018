// Records of several ring buffers (one per CPU) handed on in time order.
// Each ring is in time order, but a query and its answer can pass on
// different CPUs: drained ring by ring, the answer could come first. A
// record is staged (copied: the ring's space is released when the drain
// returns) with its time, and the drain's records go out sorted by it. The
// answer's record exists only after the query's was submitted, so one drain
// of every ring has both, or the query went out with an earlier drain.
// Pure logic, unit tested (test_time_order.cc).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace dke {

class TimeOrderedStage {
 public:
  // A record whose first 8 bytes are its time (struct dke_dns_event.ktime_ns).
  void Add(const void* rec, size_t len) {
    uint64_t t = 0;
    if (len >= sizeof(t)) memcpy(&t, rec, sizeof(t));
    order_.push_back({t, bytes_.size(), len});
    const auto* b = static_cast<const uint8_t*>(rec);
    bytes_.insert(bytes_.end(), b, b + len);
  }

  // Calls f(rec, len) for each staged record, oldest first (records of the
  // same time keep the order they were added in), and empties the stage.
  template <class F>
  void Drain(F&& f) {
    std::stable_sort(order_.begin(), order_.end(), [](const Staged& a, const Staged& b) { return a.time < b.time; });
    for (const auto& r : order_) f(bytes_.data() + r.offset, r.len);
    order_.clear();
    bytes_.clear();
  }

  size_t size() const { return order_.size(); }

 private:
  struct Staged {
    uint64_t time;
    size_t offset, len;
  };
  std::vector<Staged> order_;
  std::vector<uint8_t> bytes_;
};

}  // namespace dke
