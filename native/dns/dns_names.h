// Address -> domain from the A/AAAA answers local clients receive, for
// netflow's dst_domain/server_domain. The domain is the name the client asked
// for: an address reached through a CNAME chain belongs to the chain's head
// (`api.example.com`, not `api.example.com.edgekey.net`); a record that
// answers no question keeps its own name. The daemon keeps the cache (TTL
// floor and cap, its size); here a bounded table remembers what was sent, so
// an address is sent again only when its domain changes or its TTL passed.
// Names are compared in wire form; text is made only for what is sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "dns_message.h"
#include "flat_map.h"

namespace dke::dns {

constexpr uint16_t kAfInet = 2;
constexpr uint16_t kAfInet6 = 10;
// A CNAME chain longer than this is not followed (resolvers stop near 8-16).
constexpr int kMaxCnameHops = 16;

// An address an answer names, with the offset of its domain's name in the
// message (render it with ReadName only when it is to be sent).
struct LearnedAddress {
  const uint8_t* addr;  // 4 (kAfInet) or 16 (kAfInet6) bytes, network order
  uint16_t family;
  uint32_t ttl_s;
  uint32_t domain_off;
  uint64_t domain_hash;  // equal for equal domains (case-insensitively)
};

class NameLearner {
 public:
  NameLearner();
  // The addresses of a successful answer (qr, rcode 0) parsed with
  // ParseDepth::kAll, at most kMaxAnswers into `out`; returns how many.
  size_t Learn(const uint8_t* buf, size_t len, const Message& m, LearnedAddress* out);

 private:
  static constexpr size_t kMaxNames = kMaxQuestions + 2 * kMaxAnswers;
  struct Decoded {
    uint32_t off;   // where the name starts
    uint32_t next;  // offset after it in place
    int jumps;
    uint64_t hash;
    const NameKey* key;
  };
  // The name at `off` (memoised per message), or null when malformed.
  const Decoded* Decode(const uint8_t* buf, size_t len, size_t off);
  static bool Same(const Decoded* a, const Decoded* b);

  std::vector<NameKey> keys_;
  Decoded decoded_[kMaxNames];
  size_t n_decoded_ = 0;
};

// An address as a flat-map key: IPv4 in the first 4 bytes, the rest 0.
struct AddrKey {
  uint8_t addr[16];
  uint16_t family;
  uint16_t pad[3];
  static AddrKey Of(const uint8_t* addr, uint16_t family);
};

// Remembers which domain each address was last sent with and until when. At
// most max_entries: a new address that finds it full replaces the entry
// expiring first among a few looked at from a rotating cursor (forgetting
// only means sending a name once more).
class NameDedupe {
 public:
  NameDedupe(size_t max_entries, uint64_t seed);
  // True when the address is new, its domain changed or the time it was
  // held for has passed at now_ns; then holds it until now_ns + hold_ns.
  bool ShouldSend(const uint8_t* addr, uint16_t family, uint64_t domain_hash, uint64_t hold_ns, uint64_t now_ns);
  // Forgets an address (its name could not be queued): it is sent next time.
  void Forget(const uint8_t* addr, uint16_t family);
  size_t size() const { return sent_.size(); }

 private:
  struct Sent {
    uint64_t domain_hash;
    uint64_t expires_ns;
  };
  void EvictOne();

  FlatMap<AddrKey, Sent> sent_;
  size_t cursor_ = 0;
};

}  // namespace dke::dns
