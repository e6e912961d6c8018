// Records of several ring buffers (one per CPU) handed on in time order.
// Each ring is in time order, but a query and its answer can pass on
// different CPUs, and the rings are read one after the other, not at one
// instant: the answer's ring can be read after the answer was written while
// the query's ring was read just before the query was. So a drain takes the
// time before it reads any ring, stages (copies: a ring's space is released
// when it has been read) what the rings hold, and hands on only records from
// before that time, oldest first; later ones wait for the next drain. A
// record from before the drain began whose answer is from before it too was
// submitted before the answer existed, so it was in its ring when the drain
// read it: an answer never goes out ahead of its query.
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

  // Calls f(rec, len) for each staged record of time <= upto, oldest first
  // (records of the same time keep the order they were added in); the later
  // ones stay staged.
  template <class F>
  void Drain(uint64_t upto, F&& f) {
    std::stable_sort(order_.begin(), order_.end(), [](const Staged& a, const Staged& b) { return a.time < b.time; });
    size_t n = 0;
    for (; n < order_.size() && order_[n].time <= upto; n++) f(bytes_.data() + order_[n].offset, order_[n].len);
    if (n == order_.size()) {
      order_.clear();
      bytes_.clear();
      return;
    }
    std::vector<uint8_t> kept;
    for (size_t i = n; i < order_.size(); i++) {
      Staged& r = order_[i];
      size_t at = kept.size();
      kept.insert(kept.end(), bytes_.begin() + static_cast<std::ptrdiff_t>(r.offset),
                  bytes_.begin() + static_cast<std::ptrdiff_t>(r.offset + r.len));
      r.offset = at;
    }
    order_.erase(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(n));
    bytes_.swap(kept);
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
