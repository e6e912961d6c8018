#include "dns_names.h"

#include <cstring>

#include "flat_map.h"

namespace dke::dns {
namespace {

uint64_t HashText(const NameText& t) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (uint32_t i = 0; i < t.len; i++) h = (h ^ static_cast<uint8_t>(t.text[i])) * 0x100000001b3ull;
  return h;
}

}  // namespace

NameLearner::NameLearner() : texts_(kMaxNames) {}

bool NameLearner::Same(const Decoded* a, const Decoded* b) {
  return a == b || (a->hash == b->hash && a->text->len == b->text->len &&
                    std::memcmp(a->text->text, b->text->text, a->text->len) == 0);
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
          decoded_[n_decoded_] = {static_cast<uint32_t>(off), static_cast<uint32_t>(off + 2), d.jumps + 1, d.hash, d.text};
          return &decoded_[n_decoded_++];
        }
      }
    }
  }
  if (n_decoded_ == kMaxNames) return nullptr;
  NameText* t = &texts_[n_decoded_];
  size_t next;
  int jumps;
  if (!ReadName(buf, len, off, t, &next, &jumps)) return nullptr;
  decoded_[n_decoded_] = {static_cast<uint32_t>(off), static_cast<uint32_t>(next), jumps, HashText(*t), t};
  return &decoded_[n_decoded_++];
}

void NameLearner::Learn(const uint8_t* buf, size_t len, const Message& m, AddressSink* sink) {
  if (!m.qr || m.rcode != 0) return;
  bool any = false;
  for (uint32_t i = 0; i < m.n_answers && !any; i++) {
    const Answer& a = m.answers[i];
    any = a.cls == kClassIn && ((a.type == kTypeA && a.rdlen == 4) || (a.type == kTypeAaaa && a.rdlen == 16));
  }
  if (!any) return;
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
    sink->OnAddress(buf + a.rdata_off, family, a.ttl, *domain->text, domain->hash);
  }
}

NameDedupe::NameDedupe(size_t max_entries, uint64_t seed) : seed_(seed) {
  size_t sets = 1;
  while (sets * kWays < max_entries) sets <<= 1;
  entries_.resize(sets * kWays);
  set_mask_ = sets - 1;
}

NameDedupe::Entry* NameDedupe::Set(const uint8_t* addr, uint16_t family) {
  uint64_t key[3] = {0, 0, family};
  std::memcpy(key, addr, family == kAfInet ? 4 : 16);
  return &entries_[(HashKeyBytes(key, sizeof(key), seed_) & set_mask_) * kWays];
}

bool NameDedupe::ShouldSend(const uint8_t* addr, uint16_t family, uint64_t domain_hash, uint64_t hold_ns,
                            uint64_t now_ns) {
  size_t n = family == kAfInet ? 4 : 16;
  Entry* set = Set(addr, family);
  Entry* slot = nullptr;
  for (size_t w = 0; w < kWays; w++) {
    Entry& e = set[w];
    if (e.family == family && std::memcmp(e.addr, addr, n) == 0) {
      if (e.domain_hash == domain_hash && now_ns < e.expires_ns) return false;
      slot = &e;
      break;
    }
  }
  if (!slot) {
    slot = &set[0];
    for (size_t w = 0; w < kWays && slot->family != 0; w++)
      if (set[w].family == 0 || set[w].expires_ns < slot->expires_ns) slot = &set[w];
  }
  std::memset(slot->addr, 0, sizeof(slot->addr));
  std::memcpy(slot->addr, addr, n);
  slot->family = family;
  slot->domain_hash = domain_hash;
  slot->expires_ns = now_ns + hold_ns;
  return true;
}

void NameDedupe::Forget(const uint8_t* addr, uint16_t family) {
  size_t n = family == kAfInet ? 4 : 16;
  Entry* set = Set(addr, family);
  for (size_t w = 0; w < kWays; w++)
    if (set[w].family == family && std::memcmp(set[w].addr, addr, n) == 0) set[w].family = 0;
}

}  // namespace dke::dns
