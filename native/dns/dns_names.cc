#include "dns_names.h"

#include <algorithm>
#include <cstring>

namespace dke::dns {

NameLearner::NameLearner() : keys_(kMaxNames) {}

bool NameLearner::Same(const Decoded* a, const Decoded* b) {
  return a->key == b->key || (a->hash == b->hash && a->key->len == b->key->len &&
                              std::memcmp(a->key->wire, b->key->wire, a->key->len) == 0);
}

const NameLearner::Decoded* NameLearner::Decode(const uint8_t* buf, size_t len, size_t off) {
  for (size_t i = 0; i < n_decoded_; i++)
    if (decoded_[i].off == off) return &decoded_[i];
  // Most owner names are one pointer to a name already read: reuse it, with
  // the checks ReadName would make (backwards, one jump more).
  if (off + 1 < len && (buf[off] & 0xc0) == 0xc0) {
    size_t target = (size_t{buf[off] & 0x3fu} << 8) | buf[off + 1];
    if (target < off) {
      for (size_t i = 0; i < n_decoded_; i++) {
        const Decoded& d = decoded_[i];
        if (d.off == target && d.jumps < kMaxPointerJumps) {
          if (n_decoded_ == kMaxNames) return nullptr;
          decoded_[n_decoded_] = {static_cast<uint32_t>(off), static_cast<uint32_t>(off + 2), d.jumps + 1, d.hash, d.key};
          return &decoded_[n_decoded_++];
        }
      }
    }
  }
  if (n_decoded_ == kMaxNames) return nullptr;
  NameKey* k = &keys_[n_decoded_];
  size_t next;
  int jumps;
  if (!ReadNameKey(buf, len, off, k, &next, &jumps)) return nullptr;
  decoded_[n_decoded_] = {static_cast<uint32_t>(off), static_cast<uint32_t>(next), jumps,
                          HashKeyBytes(k->wire, k->padded, 0), k};
  return &decoded_[n_decoded_++];
}

size_t NameLearner::Learn(const uint8_t* buf, size_t len, const Message& m, LearnedAddress* out) {
  if (!m.qr || m.rcode != 0) return 0;
  bool any = false;
  for (uint32_t i = 0; i < m.n_answers && !any; i++) {
    const Answer& a = m.answers[i];
    any = a.cls == kClassIn && ((a.type == kTypeA && a.rdlen == 4) || (a.type == kTypeAaaa && a.rdlen == 16));
  }
  if (!any) return 0;
  n_decoded_ = 0;

  struct Cname {
    const Decoded* owner;
    const Decoded* target;
  };
  Cname cnames[kMaxAnswers];
  size_t n_cnames = 0;
  for (uint32_t i = 0; i < m.n_answers; i++) {
    const Answer& a = m.answers[i];
    if (a.type != kTypeCname || a.cls != kClassIn) continue;
    const Decoded* owner = Decode(buf, len, a.name_off);
    const Decoded* target = Decode(buf, len, a.rdata_off);
    // The target may point back into the message, but must end inside this record.
    if (owner && target && target->next <= size_t{a.rdata_off} + a.rdlen) cnames[n_cnames++] = {owner, target};
  }

  // Every name of a question's chain, with the question it leads back to.
  struct Head {
    const Decoded* name;
    const Decoded* question;
  };
  Head heads[kMaxQuestions * (kMaxCnameHops + 1)];
  size_t n_heads = 0;
  auto find_head = [&](const Decoded* n) -> const Head* {
    for (size_t i = 0; i < n_heads; i++)
      if (Same(heads[i].name, n)) return &heads[i];
    return nullptr;
  };
  for (uint32_t q = 0; q < m.n_questions; q++) {
    const Decoded* qn = Decode(buf, len, m.questions[q].name_off);
    if (!qn) continue;
    if (!find_head(qn)) heads[n_heads++] = {qn, qn};  // a name asked twice names itself once
    const Decoded* name = qn;
    for (int hop = 0; hop < kMaxCnameHops; hop++) {
      const Decoded* target = nullptr;
      for (size_t c = n_cnames; c-- > 0;) {  // the last CNAME of an owner counts
        if (Same(cnames[c].owner, name)) {
          target = cnames[c].target;
          break;
        }
      }
      if (!target || find_head(target)) break;
      heads[n_heads++] = {target, qn};
      name = target;
    }
  }

  size_t n = 0;
  for (uint32_t i = 0; i < m.n_answers; i++) {
    const Answer& a = m.answers[i];
    if (a.cls != kClassIn) continue;
    uint16_t family;
    if (a.type == kTypeA && a.rdlen == 4) {
      family = kAfInet;
    } else if (a.type == kTypeAaaa && a.rdlen == 16) {
      family = kAfInet6;
    } else {
      continue;
    }
    const Decoded* owner = Decode(buf, len, a.name_off);
    if (!owner) continue;
    const Head* h = find_head(owner);
    const Decoded* domain = h ? h->question : owner;
    out[n++] = {buf + a.rdata_off, family, a.ttl, domain->off, domain->hash};
  }
  return n;
}

NameDedupe::NameDedupe(size_t max_entries, uint64_t seed) : sent_(max_entries, seed) {}

AddrKey AddrKey::Of(const uint8_t* addr, uint16_t family) {
  AddrKey k{};
  std::memcpy(k.addr, addr, family == kAfInet ? 4 : 16);
  k.family = family;
  return k;
}

// The entry expiring first among the next few from the cursor goes.
void NameDedupe::EvictOne() {
  size_t looks = std::min<size_t>(8, sent_.size());
  size_t victim = FlatMap<AddrKey, Sent>::kNone;
  size_t i = cursor_;
  for (size_t seen = 0; seen < looks;) {
    i = (i + 1) % sent_.capacity();
    if (!sent_.OccupiedAt(i)) continue;
    if (victim == FlatMap<AddrKey, Sent>::kNone || sent_.ValueAt(i).expires_ns < sent_.ValueAt(victim).expires_ns) victim = i;
    seen++;
  }
  cursor_ = i;
  sent_.EraseAt(victim);
}

bool NameDedupe::ShouldSend(const uint8_t* addr, uint16_t family, uint64_t domain_hash, uint64_t hold_ns,
                            uint64_t now_ns) {
  AddrKey k = AddrKey::Of(addr, family);
  uint64_t h = sent_.Hash(k);
  bool inserted = false;
  Sent* s = sent_.Insert(k, h, &inserted);
  if (!s) {
    EvictOne();
    s = sent_.Insert(k, h, &inserted);
  }
  if (!inserted && s->domain_hash == domain_hash && now_ns < s->expires_ns) return false;
  s->domain_hash = domain_hash;
  s->expires_ns = now_ns + hold_ns;
  return true;
}

void NameDedupe::Forget(const uint8_t* addr, uint16_t family) {
  AddrKey k = AddrKey::Of(addr, family);
  size_t i = sent_.Find(k, sent_.Hash(k));
  if (i != FlatMap<AddrKey, Sent>::kNone) sent_.EraseAt(i);
}

}  // namespace dke::dns
