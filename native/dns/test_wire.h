// Builds DNS messages (with name compression like real servers use) and the
// kernel's ring-buffer records around them (bpf/dns.h), for test_dns.cc and
// bench_dns.cc. Test code only: allocates freely.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "dns.h"

namespace dke::dns::testing {

using Bytes = std::vector<uint8_t>;

struct Rr {
  std::string name;
  uint16_t type;
  std::string data;  // A/AAAA: address text; CNAME: target name; else see raw
  uint32_t ttl = 300;
  bool use_raw = false;
  Bytes raw;  // rdata as is when use_raw
};

struct Msg {
  uint16_t id = 0;
  bool qr = false;
  uint8_t rcode = 0;
  std::vector<std::pair<std::string, uint16_t>> questions;
  std::vector<Rr> answers;
  std::vector<Rr> additional;
  bool compress = true;
};

inline void Put16(Bytes* b, uint16_t v) {
  b->push_back(static_cast<uint8_t>(v >> 8));
  b->push_back(static_cast<uint8_t>(v));
}

inline void Put32(Bytes* b, uint32_t v) {
  Put16(b, static_cast<uint16_t>(v >> 16));
  Put16(b, static_cast<uint16_t>(v));
}

// 16 bytes, network order; IPv4 in the first 4. Returns the family.
inline uint16_t Addr(const std::string& text, uint8_t out[16]) {
  std::memset(out, 0, 16);
  if (text.find(':') != std::string::npos) {
    inet_pton(AF_INET6, text.c_str(), out);
    return AF_INET6;
  }
  inet_pton(AF_INET, text.c_str(), out);
  return AF_INET;
}

inline Bytes Build(const Msg& m) {
  Bytes b;
  std::map<std::string, size_t> known;  // lower-case suffix -> offset
  Put16(&b, m.id);
  Put16(&b, static_cast<uint16_t>((m.qr ? 0x8000 : 0) | 0x0100 | (m.rcode & 0xf)));
  Put16(&b, static_cast<uint16_t>(m.questions.size()));
  Put16(&b, static_cast<uint16_t>(m.answers.size()));
  Put16(&b, 0);
  Put16(&b, static_cast<uint16_t>(m.additional.size()));
  auto name = [&](const std::string& n) {
    std::vector<std::string> labels;
    size_t start = 0;
    while (n != "." && start < n.size()) {
      size_t dot = n.find('.', start);
      if (dot == std::string::npos) dot = n.size();
      if (dot > start) labels.push_back(n.substr(start, dot - start));
      start = dot + 1;
    }
    for (size_t i = 0; i < labels.size(); i++) {
      std::string suffix;
      for (size_t j = i; j < labels.size(); j++) suffix += (j > i ? "." : "") + labels[j];
      for (char& c : suffix) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
      auto it = known.find(suffix);
      if (m.compress && it != known.end()) {
        Put16(&b, static_cast<uint16_t>(0xc000 | it->second));
        return;
      }
      if (b.size() < 0x3fff) known[suffix] = b.size();
      b.push_back(static_cast<uint8_t>(labels[i].size()));
      b.insert(b.end(), labels[i].begin(), labels[i].end());
    }
    b.push_back(0);
  };
  auto record = [&](const Rr& r) {
    name(r.name);
    Put16(&b, r.type);
    Put16(&b, 1);
    Put32(&b, r.ttl);
    size_t len_at = b.size();
    Put16(&b, 0);
    size_t start = b.size();
    if (r.use_raw) {
      b.insert(b.end(), r.raw.begin(), r.raw.end());
    } else if (r.type == 5) {
      name(r.data);
    } else {
      uint8_t a[16];
      size_t n = Addr(r.data, a) == AF_INET ? 4 : 16;
      b.insert(b.end(), a, a + n);
    }
    size_t rdlen = b.size() - start;
    b[len_at] = static_cast<uint8_t>(rdlen >> 8);
    b[len_at + 1] = static_cast<uint8_t>(rdlen);
  };
  for (const auto& q : m.questions) {
    name(q.first);
    Put16(&b, q.second);
    Put16(&b, 1);
  }
  for (const Rr& r : m.answers) record(r);
  for (const Rr& r : m.additional) record(r);
  return b;
}

// A DNS-over-TCP message: its 2-byte length, then the message.
inline Bytes TcpFramed(const Bytes& msg) {
  Bytes b;
  Put16(&b, static_cast<uint16_t>(msg.size()));
  b.insert(b.end(), msg.begin(), msg.end());
  return b;
}

struct Pkt {
  uint64_t t = 0;
  std::string src, dst;
  uint16_t sport = 0, dport = 0;
  bool egress = false;
  bool local_server = false;
  bool tcp = false;
  uint32_t seq = 0;
  uint32_t netns = 4026531840u;
  Bytes payload;
  int64_t wire_len = -1;  // default: the payload's size
};

// One ring-buffer record: the header and exactly cap_len payload bytes.
inline Bytes Record(const Pkt& p) {
  dke_dns_event ev;
  std::memset(&ev, 0, sizeof(ev));
  ev.ktime_ns = p.t;
  ev.family = Addr(p.src, ev.saddr);
  Addr(p.dst, ev.daddr);
  ev.sport = p.sport;
  ev.dport = p.dport;
  ev.proto = p.tcp ? IPPROTO_TCP : IPPROTO_UDP;
  ev.flags = static_cast<uint8_t>((p.egress ? DKE_DNS_EGRESS : 0) | (p.local_server ? DKE_DNS_LOCAL_SERVER : 0));
  ev.tcp_seq = p.seq;
  ev.cap_len = static_cast<uint32_t>(p.payload.size());
  ev.wire_len = p.wire_len < 0 ? ev.cap_len : static_cast<uint32_t>(p.wire_len);
  ev.netns = p.netns;
  Bytes r(sizeof(ev) + p.payload.size());
  std::memcpy(r.data(), &ev, sizeof(ev));
  if (!p.payload.empty()) std::memcpy(r.data() + sizeof(ev), p.payload.data(), p.payload.size());
  return r;
}

// Deterministic pseudo-random numbers (xorshift64*).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 1) {}
  uint64_t Next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545f4914f6cdd1dull;
  }
  uint32_t Below(uint64_t n) { return n ? static_cast<uint32_t>(Next() % n) : 0; }

 private:
  uint64_t s_;
};

}  // namespace dke::dns::testing
