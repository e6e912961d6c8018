// A bounded open-addressing hash table for the per-packet tables of the DNS
// module (pending queries, aggregation groups, TCP streams). Keys and values
// are fixed-size and trivially copyable; keys have no padding bytes (they are
// compared with memcmp). One allocation at construction and none after: the
// table holds at most `max_entries` and has at least twice as many slots, so
// linear probes stay short; Insert refuses an entry beyond the bound and the
// caller counts what it sheds. Deletion shifts the following entries back
// (no tombstones), so a table that churns never degrades.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

namespace dke::dns {

// Hash of a key's bytes (a multiple of 8 long), mixed with a per-table seed so
// a peer that controls packet fields cannot aim them at one probe chain.
inline uint64_t HashKeyBytes(const void* p, size_t n, uint64_t seed) {
  const auto* b = static_cast<const uint8_t*>(p);
  uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, b + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 29;
  }
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

template <class K, class V>
class FlatMap {
  static_assert(std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>, "flat entries are moved with memcpy");
  static_assert(std::has_unique_object_representations_v<K>, "keys are compared bytewise: no padding");
  static_assert(sizeof(K) % 8 == 0, "HashKeyBytes reads whole words");

 public:
  static constexpr size_t kNone = ~size_t{0};

  FlatMap(size_t max_entries, uint64_t seed) : max_(max_entries), seed_(seed) {
    size_t cap = 16;
    while (cap < max_entries * 2) cap <<= 1;
    // calloc, not a vector: a large table comes zeroed from fresh pages the
    // kernel backs only once a slot on them is written, so an idle loader
    // does not carry its worst-case tables in RSS (all-zero is all-empty).
    slots_.reset(static_cast<Slot*>(std::calloc(cap, sizeof(Slot))));
    if (!slots_) throw std::bad_alloc();
    cap_ = cap;
    mask_ = cap - 1;
  }

  size_t size() const { return size_; }
  size_t max_entries() const { return max_; }
  bool full() const { return size_ >= max_; }

  uint64_t Hash(const K& k) const {
    uint64_t h = HashKeyBytes(&k, sizeof(K), seed_);
    return h ? h : 1;  // 0 marks an empty slot
  }

  // Slot index of `k`, or kNone.
  size_t Find(const K& k, uint64_t h) const {
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.hash == 0) return kNone;
      if (s.hash == h && std::memcmp(&s.key, &k, sizeof(K)) == 0) return i;
    }
  }

  // The value of `k`, inserted value-initialised when absent (*inserted
  // true); nullptr when absent and the table is full.
  V* Insert(const K& k, uint64_t h, bool* inserted) {
    size_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.hash == 0) break;
      if (s.hash == h && std::memcmp(&s.key, &k, sizeof(K)) == 0) {
        *inserted = false;
        return &s.value;
      }
    }
    if (size_ >= max_) return nullptr;
    Slot& s = slots_[i];
    s.hash = h;
    s.key = k;
    s.value = V{};
    size_++;
    *inserted = true;
    return &s.value;
  }

  // Slots, for a caller that walks them itself (e.g. to pick an entry to evict).
  size_t capacity() const { return cap_; }
  bool OccupiedAt(size_t i) const { return slots_[i].hash != 0; }
  const K& KeyAt(size_t i) const { return slots_[i].key; }
  V& ValueAt(size_t i) { return slots_[i].value; }

  // Removes the entry at slot `i` and moves back the entries after it that
  // would otherwise no longer be found.
  void EraseAt(size_t i) {
    size_t hole = i;
    for (size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      Slot& s = slots_[j];
      if (s.hash == 0) break;
      size_t home = s.hash & mask_;
      // s may fill the hole when its home is not cyclically within (hole, j].
      if (((j - home) & mask_) >= ((j - hole) & mask_)) {
        slots_[hole] = s;
        hole = j;
      }
    }
    slots_[hole].hash = 0;
    size_--;
  }

  // Calls f(key, value) on every entry; entries for which it returns true
  // are erased. Erasing may move a later entry into the current slot (it is
  // looked at next) or an entry already seen (it is looked at again: f must
  // be idempotent for entries it keeps).
  template <class F>
  void EraseIf(F&& f) {
    if (size_ == 0) return;
    for (size_t i = 0; i < cap_;) {
      Slot& s = slots_[i];
      if (s.hash != 0 && f(static_cast<const K&>(s.key), s.value)) {
        EraseAt(i);
        continue;
      }
      i++;
    }
  }

  template <class F>
  void ForEach(F&& f) const {
    if (size_ == 0) return;
    for (size_t i = 0; i < cap_; i++)
      if (slots_[i].hash != 0) f(slots_[i].key, slots_[i].value);
  }

  void Clear() {
    if (size_ == 0) return;
    for (size_t i = 0; i < cap_; i++)
      if (slots_[i].hash != 0) slots_[i].hash = 0;  // untouched pages stay unbacked
    size_ = 0;
  }

 private:
  struct Slot {
    uint64_t hash;  // 0: empty
    K key;
    V value;
  };
  static_assert(std::is_trivially_copyable_v<Slot>);
  struct FreeSlots {
    void operator()(Slot* p) const { std::free(p); }
  };
  std::unique_ptr<Slot[], FreeSlots> slots_;
  size_t cap_ = 0;
  size_t mask_ = 0;
  size_t size_ = 0;
  size_t max_;
  uint64_t seed_;
};

}  // namespace dke::dns
