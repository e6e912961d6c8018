// Address -> domain from the A/AAAA answers local clients receive, for
// netflow's dst_domain/server_domain. The domain is the name the client asked
// for: an address reached through a CNAME chain belongs to the chain's head
// (`api.example.com`, not `api.example.com.edgekey.net`); a record that
// answers no question keeps its own name. The daemon keeps the cache (TTL
// floor and cap, its size); here a bounded table remembers what was sent, so
// an address is sent again only when its domain changes or its TTL passed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "dns_message.h"

namespace dke::dns {

constexpr uint16_t kAfInet = 2;
constexpr uint16_t kAfInet6 = 10;
// A CNAME chain longer than this is not followed (resolvers stop near 8-16).
constexpr int kMaxCnameHops = 16;

class AddressSink {
 public:
  // addr: 4 (kAfInet) or 16 (kAfInet6) bytes, network order. domain_hash
  // identifies domain's text.
  virtual void OnAddress(const uint8_t* addr, uint16_t family, uint32_t ttl_s, const NameText& domain,
                         uint64_t domain_hash) = 0;

 protected:
  ~AddressSink() = default;
};

class NameLearner {
 public:
  NameLearner();
  // The addresses of a successful answer (qr, rcode 0) parsed with ParseDepth::kAll.
  void Learn(const uint8_t* buf, size_t len, const Message& m, AddressSink* sink);

 private:
  static constexpr size_t kMaxNames = kMaxQuestions + 2 * kMaxAnswers;
  struct Decoded {
    uint32_t off;   // where the name starts
    uint32_t next;  // offset after it in place
    int jumps;
    uint64_t hash;
    const NameText* text;
  };
  // The name at `off` (memoised per message), or null when malformed.
  const Decoded* Decode(const uint8_t* buf, size_t len, size_t off);
  static bool Same(const Decoded* a, const Decoded* b);

  std::vector<NameText> texts_;
  Decoded decoded_[kMaxNames];
  size_t n_decoded_ = 0;
};

// Remembers which domain each address was last sent with and until when:
// `ways` entries per set, the one expiring first replaced when a set is full
// (forgetting only means sending a name once more).
class NameDedupe {
 public:
  NameDedupe(size_t max_entries, uint64_t seed);
  // True when the address is new, its domain changed or the time it was
  // held for has passed at now_ns; then holds it until now_ns + hold_ns.
  bool ShouldSend(const uint8_t* addr, uint16_t family, uint64_t domain_hash, uint64_t hold_ns, uint64_t now_ns);
  // Forgets an address (its name could not be queued): it is sent next time.
  void Forget(const uint8_t* addr, uint16_t family);

 private:
  static constexpr size_t kWays = 4;
  struct Entry {
    uint8_t addr[16];
    uint64_t domain_hash;
    uint64_t expires_ns;
    uint16_t family;  // 0: unused
  };
  Entry* Set(const uint8_t* addr, uint16_t family);

  std::vector<Entry> entries_;
  size_t set_mask_;
  uint64_t seed_;
};

}  // namespace dke::dns
