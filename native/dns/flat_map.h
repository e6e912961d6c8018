// A bounded open-addressing hash table for the per-packet tables of the DNS
// module (pending queries, aggregation groups, TCP streams). Keys and values
// are fixed-size and trivially copyable; keys have no padding bytes (they are
// compared with memcmp). The table holds at most `max_entries` and always
// has at least twice as many slots as entries, so linear probes stay short;
// Insert refuses an entry beyond the bound and the caller counts what it
// sheds. Deletion shifts the following entries back (no tombstones), so a
// table that churns never degrades.
//
// The slots grow with the entries (doubling, up to the bound's) and shrink
// again at Clear and Compact: a table sized for its worst case spread a
// handful of live entries (16 lookups in flight) over megabytes of slots, so
// every query and answer missed the cache on its slot (a third of the
// loader's DNS time) and, keys being random, in time backed every page. A
// growth is a rehash, at most log2(bound) of them from empty; when memory
// cannot be had the table stays as it is and Insert sheds.
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
    if (!Allocate(kMinCap)) throw std::bad_alloc();
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
    // Growing stops by itself at the first power of two >= twice the bound.
    if ((size_ + 1) * 2 > cap_) {
      if (!Rehash(cap_ * 2)) return nullptr;
      i = EmptySlotFor(h);
    }
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

  // Empties the table and gives back its slots beyond the smallest.
  void Clear() {
    if (cap_ > kMinCap && Allocate(kMinCap)) {
      size_ = 0;
      return;
    }
    if (size_ == 0) return;
    for (size_t i = 0; i < cap_; i++) slots_[i].hash = 0;
    size_ = 0;
  }

  // Gives back slots a table that emptied no longer needs (it keeps room
  // for four times its entries). Moves entries: slot indexes change.
  void Compact() {
    if (cap_ <= kMinCap || size_ * 8 >= cap_) return;
    size_t want = kMinCap;
    while (want < size_ * 4) want <<= 1;
    Rehash(want);  // no memory: stay as large as it is
  }

 private:
  static constexpr size_t kMinCap = 16;

  struct Slot {
    uint64_t hash;  // 0: empty
    K key;
    V value;
  };
  static_assert(std::is_trivially_copyable_v<Slot>);
  struct FreeSlots {
    void operator()(Slot* p) const { std::free(p); }
  };
  // New empty slots, `cap` of them (a power of two); false without memory.
  bool Allocate(size_t cap) {
    Slot* p = static_cast<Slot*>(std::calloc(cap, sizeof(Slot)));  // all-zero is all-empty
    if (!p) return false;
    slots_.reset(p);
    cap_ = cap;
    mask_ = cap - 1;
    return true;
  }

  // The entries into `cap` slots; false (and the table as it was) without memory.
  bool Rehash(size_t cap) {
    std::unique_ptr<Slot[], FreeSlots> old(slots_.release());
    size_t old_cap = cap_;
    if (!Allocate(cap)) {
      slots_ = std::move(old);
      return false;
    }
    for (size_t j = 0; j < old_cap; j++)
      if (old[j].hash != 0) slots_[EmptySlotFor(old[j].hash)] = old[j];
    return true;
  }

  // The first empty slot of hash h's probe chain.
  size_t EmptySlotFor(uint64_t h) const {
    size_t i = h & mask_;
    while (slots_[i].hash != 0) i = (i + 1) & mask_;
    return i;
  }

  std::unique_ptr<Slot[], FreeSlots> slots_;
  size_t cap_ = 0;
  size_t mask_ = 0;
  size_t size_ = 0;
  size_t max_;
  uint64_t seed_;
};

}  // namespace dke::dns
