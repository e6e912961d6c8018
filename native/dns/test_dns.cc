// Unit tests of the native DNS module (native/dns), no framework: each TEST
// is a function, CHECKs count failures, the exit status is the verdict.
// `test_dns [--fuzz N] [name-substring...]`; run by test/unit/native-dns.test.ts
// in the release build and in the address/undefined-sanitizer build.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "dns_collector.h"
#include "dns_message.h"
#include "dns_names.h"
#include "dns_tcp.h"
#include "flat_map.h"
#include "test_wire.h"

using namespace dke;
using namespace dke::dns;
using namespace dke::dns::testing;

// Every allocation of the process is counted: the packet path must make none.
// (GCC 12 mistakes the malloc/free pair below for a mismatch once inlined.)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
uint64_t g_allocations = 0;

void* operator new(size_t n) {
  g_allocations++;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace {

int g_failures = 0;
const char* g_test = "";
uint64_t g_fuzz = 100'000;

#define CHECK(c)                                                                          \
  do {                                                                                    \
    if (!(c)) {                                                                           \
      std::fprintf(stderr, "%s:%d: [%s] CHECK(%s) failed\n", __FILE__, __LINE__, g_test, #c); \
      g_failures++;                                                                       \
    }                                                                                     \
  } while (0)

#define CHECK_EQ(a, b)                                                                               \
  do {                                                                                               \
    long long va_ = static_cast<long long>(a), vb_ = static_cast<long long>(b);                      \
    if (va_ != vb_) {                                                                                \
      std::fprintf(stderr, "%s:%d: [%s] CHECK_EQ(%s, %s) failed: %lld != %lld\n", __FILE__, __LINE__, \
                   g_test, #a, #b, va_, vb_);                                                        \
      g_failures++;                                                                                  \
    }                                                                                                \
  } while (0)

#define CHECK_STR(a, b)                                                                                    \
  do {                                                                                                     \
    std::string va_(a), vb_(b);                                                                            \
    if (va_ != vb_) {                                                                                      \
      std::fprintf(stderr, "%s:%d: [%s] CHECK_STR(%s, %s) failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, \
                   g_test, #a, #b, va_.c_str(), vb_.c_str());                                              \
      g_failures++;                                                                                        \
    }                                                                                                      \
  } while (0)

struct TestCase {
  const char* name;
  void (*fn)();
};
std::vector<TestCase>& Registry() {
  static std::vector<TestCase> r;
  return r;
}
struct Register {
  Register(const char* name, void (*fn)()) { Registry().push_back({name, fn}); }
};
#define TEST(name)                               \
  void test_##name();                            \
  Register register_##name(#name, &test_##name); \
  void test_##name()

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kS = 1'000'000'000;
constexpr uint16_t kA = kTypeA, kAaaa = kTypeAaaa, kCname = kTypeCname;
constexpr uint32_t kNetns = 4026531840u;

Bytes Hex(const char* s) {
  Bytes b;
  int hi = -1;
  for (; *s; s++) {
    int v;
    if (*s >= '0' && *s <= '9') v = *s - '0';
    else if (*s >= 'a' && *s <= 'f') v = *s - 'a' + 10;
    else continue;
    if (hi < 0) {
      hi = v;
    } else {
      b.push_back(static_cast<uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  return b;
}

Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes b;
  for (const Bytes& p : parts) b.insert(b.end(), p.begin(), p.end());
  return b;
}

// Parses from an exactly-sized heap copy, so the sanitizer build sees any overread.
bool Parse(const Bytes& b, Message* m, ParseDepth d = ParseDepth::kAll) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[b.size() + 1]);
  if (!b.empty()) std::memcpy(copy.get(), b.data(), b.size());
  return ParseMessage(copy.get(), b.size(), d, m);
}

std::string NameAt(const Bytes& b, size_t off, size_t* next = nullptr) {
  NameText t;
  size_t n = 0;
  if (!ReadName(b.data(), b.size(), off, &t, &n)) return "<invalid>";
  if (next) *next = n;
  return std::string(t.text, t.len);
}

std::string AddrText(const uint8_t* a, int family) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family, a, buf, sizeof(buf));
  return buf;
}

// ---- the collector's harness ----------------------------------------------

const char* kClient = "10.201.3.1";
const char* kServer = "10.201.3.2";

DnsCollector::Options Opts() {
  DnsCollector::Options o;
  o.dns_ports = {53};
  o.timeout_ns = 6 * kS;
  o.grace_ns = 1 * kS;
  o.max_pending = 100;
  o.max_groups = 100;
  o.max_tcp_streams = 16;
  return o;
}

void Feed(DnsCollector* c, const Pkt& p) {
  Bytes r = Record(p);
  std::unique_ptr<uint8_t[]> copy(new uint8_t[r.size()]);
  std::memcpy(copy.get(), r.data(), r.size());
  c->OnEvent(copy.get(), r.size());
}

Bytes QueryMsg(uint16_t id, const std::string& name, uint16_t type = kA) {
  Msg m;
  m.id = id;
  m.questions = {{name, type}};
  return Build(m);
}

Bytes AnswerMsg(uint16_t id, const std::string& name, const std::string& ip, uint8_t rcode = 0, uint32_t ttl = 300) {
  Msg m;
  m.id = id;
  m.qr = true;
  m.rcode = rcode;
  m.questions = {{name, ip.find(':') != std::string::npos ? kAaaa : kA}};
  if (rcode == 0) m.answers = {{name, m.questions[0].second, ip, ttl}};
  return Build(m);
}

// A client's query leaving and its answer arriving (UDP unless tcp).
Pkt ClientQuery(uint16_t id, const std::string& name, uint64_t t, uint16_t sport = 40000) {
  Pkt p;
  p.t = t;
  p.src = kClient;
  p.dst = kServer;
  p.sport = sport;
  p.dport = 53;
  p.egress = true;
  p.payload = QueryMsg(id, name);
  return p;
}

Pkt ClientAnswer(uint16_t id, const std::string& name, uint64_t t, uint8_t rcode = 0, uint16_t dport = 40000,
                 const std::string& ip = "10.201.3.2") {
  Pkt p;
  p.t = t;
  p.src = kServer;
  p.dst = kClient;
  p.sport = 53;
  p.dport = dport;
  p.payload = AnswerMsg(id, name, ip, rcode);
  return p;
}

std::vector<dke_dnsflow_stat> CollectAt(DnsCollector* c, uint64_t now) {
  std::vector<dke_dnsflow_stat> out;
  c->Collect(now, &out);
  return out;
}

const dke_dnsflow_stat* FindStat(const std::vector<dke_dnsflow_stat>& v, int32_t rcode, int side = DKE_DNS_SIDE_CLIENT) {
  for (const auto& s : v)
    if (s.rcode == rcode && s.side == side) return &s;
  return nullptr;
}

std::vector<dke_dns_name> Names(DnsCollector* c) {
  std::vector<dke_dns_name> out;
  c->TakeNames(&out);
  return out;
}

std::string NameOf(const std::vector<dke_dns_name>& v, const std::string& ip) {
  for (const auto& n : v)
    if (AddrText(n.addr, n.family) == ip) return n.domain;
  return "";
}

// An answer with n A records: <prefix><i / 256>.<i % 256>.
Msg PoolAnswer(uint16_t id, const std::string& name, int n, const std::string& prefix) {
  Msg m;
  m.id = id;
  m.qr = true;
  m.questions = {{name, kA}};
  for (int i = 0; i < n; i++) m.answers.push_back({name, kA, prefix + std::to_string(i >> 8) + "." + std::to_string(i & 255)});
  return m;
}

// ---- parser ----------------------------------------------------------------

TEST(parser_reads_a_query_as_dig_sends_it) {
  // dig @10.201.3.2 www.dke.test, captured by the BPF program (with an EDNS OPT record)
  Bytes b = Hex("a22e 0120 0001 0000 0000 0001 03777777 03646b65 0474657374 00 0001 0001 00 0029 04d0 00000000 000c 000a 0008 1122334455667788");
  Message m;
  CHECK(Parse(b, &m));
  CHECK_EQ(m.id, 0xa22e);
  CHECK(!m.qr);
  CHECK_EQ(m.opcode, 0);
  CHECK_EQ(m.rcode, 0);
  CHECK_EQ(m.qdcount, 1);
  CHECK_EQ(m.arcount, 1);
  CHECK(!m.truncated);
  CHECK_EQ(m.n_questions, 1);
  CHECK_STR(NameAt(b, m.questions[0].name_off), "www.dke.test");
  CHECK_EQ(m.questions[0].type, kA);
  CHECK_EQ(m.questions[0].cls, 1);
}

TEST(parser_reads_compressed_cname_a_aaaa_answers) {
  Msg msg;
  msg.id = 7;
  msg.qr = true;
  msg.questions = {{"WWW.Example.com", kA}};
  msg.answers = {{"www.example.com", kCname, "edge.example.net"},
                 {"edge.example.net", kA, "93.184.216.34", 20},
                 {"edge.example.net", kAaaa, "2606:2800:220:1:248:1893:25c8:1946"},
                 {"edge.example.net", kAaaa, "fd00:dea:3::2"}};
  Bytes b = Build(msg);
  CHECK(b.size() < 140);  // names were compressed
  Message m;
  CHECK(Parse(b, &m));
  CHECK(m.qr);
  CHECK_STR(NameAt(b, m.questions[0].name_off), "www.example.com");
  CHECK_EQ(m.n_answers, 4);
  CHECK_STR(NameAt(b, m.answers[0].name_off), "www.example.com");
  CHECK_EQ(m.answers[0].type, kCname);
  NameText t;
  CHECK(ReadCnameTarget(b.data(), b.size(), m.answers[0], &t));
  CHECK_STR(std::string(t.text, t.len), "edge.example.net");
  CHECK_EQ(m.answers[1].ttl, 20);
  CHECK_EQ(m.answers[1].rdlen, 4);
  CHECK_STR(AddrText(b.data() + m.answers[1].rdata_off, AF_INET), "93.184.216.34");
  CHECK_STR(AddrText(b.data() + m.answers[2].rdata_off, AF_INET6), "2606:2800:220:1:248:1893:25c8:1946");
  CHECK_EQ(m.answers[3].ttl, 300);
}

TEST(parser_reads_nxdomain_and_the_extended_rcode_of_opt) {
  Message m;
  CHECK(Parse(AnswerMsg(1, "nope.test", "", 3), &m));
  CHECK_EQ(m.rcode, 3);
  // OPT TTL top byte 1 -> rcode 16 (BADVERS) = (1 << 4) | 0
  Msg msg;
  msg.id = 1;
  msg.qr = true;
  msg.questions = {{"a.test", kA}};
  Rr opt{".", kTypeOpt, "", 0x01000000u, true, {}};
  msg.additional = {opt};
  CHECK(Parse(Build(msg), &m));
  CHECK_EQ(m.rcode, 16);
  // Asked for the questions only, the OPT record is not read.
  CHECK(Parse(Build(msg), &m, ParseDepth::kQuestions));
  CHECK_EQ(m.rcode, 0);
  CHECK_EQ(m.n_questions, 1);
}

TEST(parser_returns_false_for_less_than_a_header_and_a_partial_message_for_a_cut_one) {
  Message m;
  CHECK(!Parse(Bytes{}, &m));
  CHECK(!Parse(Bytes(11), &m));
  Msg msg;
  msg.id = 9;
  msg.qr = true;
  msg.questions = {{"a.test", kA}};
  msg.answers = {{"a.test", kA, "10.0.0.1"}, {"a.test", kA, "10.0.0.2"}};
  Bytes full = Build(msg);
  Bytes cut(full.begin(), full.end() - 3);
  CHECK(Parse(cut, &m));
  CHECK_EQ(m.id, 9);
  CHECK(m.truncated);
  CHECK_EQ(m.n_answers, 1);
  Bytes head(full.begin(), full.begin() + 14);
  CHECK(Parse(head, &m));
  CHECK(m.truncated);
  CHECK_EQ(m.n_questions, 0);
}

TEST(parser_stops_at_counts_that_promise_more_than_the_message_holds) {
  Bytes b = AnswerMsg(2, "a.test", "10.0.0.1");
  b[6] = b[7] = 0xff;    // ancount
  b[10] = b[11] = 0xff;  // arcount
  Message m;
  CHECK(Parse(b, &m));
  CHECK_EQ(m.n_answers, 1);
  CHECK(m.truncated);
  b[4] = b[5] = 0xff;  // qdcount
  CHECK(Parse(b, &m));
  CHECK(m.truncated);
}

TEST(parser_keeps_at_most_64_answers) {
  Message m;
  CHECK(Parse(Build(PoolAnswer(3, "pool.test", 100, "10.0.")), &m));
  CHECK_EQ(m.n_answers, kMaxAnswers);
  CHECK(!m.truncated);
}

TEST(read_name_refuses_pointers_that_loop_or_point_forward) {
  Bytes self = Cat({Bytes(12), Hex("c00c")});
  CHECK_STR(NameAt(self, 12), "<invalid>");
  Bytes pair = Cat({Bytes(12), Hex("c00e c00c")});
  CHECK_STR(NameAt(pair, 12), "<invalid>");
  CHECK_STR(NameAt(pair, 14), "<invalid>");
  Bytes back = Cat({Bytes(12), Hex("0161 c00c")});
  CHECK_STR(NameAt(back, 12), "<invalid>");
}

TEST(read_name_follows_a_chain_of_backward_pointers) {
  // 12: "test" root; 18: "b" -> 12; 22: "a" -> 18
  Bytes b = Cat({Bytes(12), Hex("04 74657374 00"), Hex("01 62 c00c"), Hex("01 61 c012")});
  size_t next = 0;
  CHECK_STR(NameAt(b, 22, &next), "a.b.test");
  CHECK_EQ(next, 26);
}

TEST(read_name_caps_names_at_255_octets_and_refuses_extended_labels) {
  Bytes label = Cat({Bytes{63}, Bytes(63, 'a')});
  Bytes ok = Cat({Bytes(12), label, label, label, Bytes{61}, Bytes(61, 'a'), Bytes{0}});
  CHECK_EQ(NameAt(ok, 12).size(), 63 * 3 + 61 + 3);
  Bytes too_long = Cat({Bytes(12), label, label, label, label, Bytes{0}});
  CHECK_STR(NameAt(too_long, 12), "<invalid>");
  CHECK_STR(NameAt(Cat({Bytes(12), Hex("41 00")}), 12), "<invalid>");
  CHECK_STR(NameAt(Cat({Bytes(12), Hex("81 00")}), 12), "<invalid>");
  // Runs past the end.
  CHECK_STR(NameAt(Cat({Bytes(12), Hex("05 6162")}), 12), "<invalid>");
  CHECK_STR(NameAt(Cat({Bytes(12), Hex("c0")}), 12), "<invalid>");
}

TEST(read_name_escapes_unprintable_bytes_and_dots_inside_labels) {
  Bytes b = Cat({Bytes(12), Hex("03 612e62 02 0a41 00")});
  CHECK_STR(NameAt(b, 12), "a\\046b.\\010a");
  CHECK_STR(NameAt(Cat({Bytes(12), Hex("00")}), 12), ".");
  // The longest text: 255 octets of bytes that all need escaping.
  Bytes label = Cat({Bytes{63}, Bytes(63, 0x01)});
  Bytes worst = Cat({Bytes(12), label, label, label, Bytes{61}, Bytes(61, 0x01), Bytes{0}});
  CHECK_EQ(NameAt(worst, 12).size(), 250 * 4 + 3);
}

TEST(parser_handles_the_worst_case_fast) {
  // 64 KiB of pointers each to the previous one, and counts of 0xffff.
  Bytes b(65535);
  for (int i = 4; i < 12; i++) b[i] = 0xff;
  b[12] = 1;
  b[13] = 'a';
  b[14] = 0;
  for (size_t off = 15; off + 1 < b.size(); off += 2) {
    size_t target = off - 2 < 16 ? 12 : off - 2;
    b[off] = static_cast<uint8_t>(0xc0 | (target >> 8));
    b[off + 1] = static_cast<uint8_t>(target);
  }
  auto t0 = std::chrono::steady_clock::now();
  Message m;
  CHECK(Parse(b, &m));
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ms < 50);
  CHECK(m.truncated);
}

// ---- TCP reassembly ---------------------------------------------------------

struct Collected : TcpMessageSink {
  struct Out {
    Bytes msg;
    bool holes;
    uint64_t first_ns, last_ns;
  };
  std::vector<Out> out;
  void OnTcpMessage(const uint8_t* m, size_t len, bool holes, uint64_t first_ns, uint64_t last_ns) override {
    out.push_back({Bytes(m, m + len), holes, first_ns, last_ns});
  }
  std::vector<int> Ids() const {
    std::vector<int> ids;
    for (const auto& o : out) ids.push_back(o.msg.size() >= 2 ? (o.msg[0] << 8 | o.msg[1]) : -1);
    return ids;
  }
};

TcpStreamKey Key(uint8_t k) {
  TcpStreamKey key{};
  key.saddr[0] = k;
  return key;
}

void PushBytes(TcpReassembler* t, Collected* c, uint8_t key, uint32_t seq, const Bytes& data, uint64_t ktime,
               int64_t wire_len = -1) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[data.size() + 1]);
  if (!data.empty()) std::memcpy(copy.get(), data.data(), data.size());
  uint32_t wire = wire_len < 0 ? static_cast<uint32_t>(data.size()) : static_cast<uint32_t>(wire_len);
  t->Push(Key(key), {copy.get(), static_cast<uint32_t>(data.size()), wire, seq, ktime}, c);
}

struct TcpFixture {
  std::vector<Bytes> msgs;
  Bytes stream;
  TcpFixture() {
    for (uint16_t id = 1; id <= 3; id++) {
      std::string n = "m" + std::to_string(id) + ".example.test";
      msgs.push_back(AnswerMsg(id, n, "10.0.0.1"));
      Bytes f = TcpFramed(msgs.back());
      stream.insert(stream.end(), f.begin(), f.end());
    }
  }
  Bytes Slice(size_t from, size_t to) const { return Bytes(stream.begin() + from, stream.begin() + to); }
  // Feeds the stream cut at `cuts` (sorted offsets), from sequence number seq0.
  Collected Feed(TcpReassembler* t, std::vector<size_t> cuts, uint32_t seq0 = 1000) const {
    Collected c;
    cuts.insert(cuts.begin(), 0);
    cuts.push_back(stream.size());
    for (size_t i = 0; i + 1 < cuts.size(); i++)
      PushBytes(t, &c, 1, seq0 + static_cast<uint32_t>(cuts[i]), Slice(cuts[i], cuts[i + 1]), i);
    return c;
  }
};

TcpReassembler::Options TcpOpts(size_t max_streams = 16, size_t max_bytes = 4096, uint64_t idle = 30 * kS) {
  TcpReassembler::Options o;
  o.max_streams = max_streams;
  o.max_message_bytes = max_bytes;
  o.idle_ns = idle;
  return o;
}

TEST(tcp_splits_messages_sharing_a_segment_and_joins_messages_spanning_segments) {
  TcpFixture f;
  TcpReassembler a(TcpOpts(), 1);
  CHECK(f.Feed(&a, {}).Ids() == (std::vector<int>{1, 2, 3}));
  TcpReassembler b(TcpOpts(), 1);
  // The first cut splits the length prefix.
  Collected c = f.Feed(&b, {1, 10, f.msgs[0].size() + 2 + 1});
  CHECK(c.Ids() == (std::vector<int>{1, 2, 3}));
  for (const auto& o : c.out) CHECK(!o.holes);
  CHECK(c.out[0].msg == f.msgs[0]);
  // first byte in segment 0, last in segment 2
  CHECK_EQ(c.out[0].first_ns, 0);
  CHECK_EQ(c.out[0].last_ns, 2);
}

TEST(tcp_follows_sequence_numbers_across_the_wrap) {
  TcpFixture f;
  TcpReassembler t(TcpOpts(), 1);
  CHECK(f.Feed(&t, {5, 40}, 0xffffffffu - 20).Ids() == (std::vector<int>{1, 2, 3}));
}

TEST(tcp_skips_retransmitted_bytes) {
  TcpFixture f;
  TcpReassembler t(TcpOpts(), 1);
  Collected c;
  PushBytes(&t, &c, 1, 0, f.Slice(0, 30), 0);
  PushBytes(&t, &c, 1, 0, f.Slice(0, 30), 1);
  CHECK(c.out.empty());
  PushBytes(&t, &c, 1, 20, f.Slice(20, f.stream.size()), 2);
  CHECK(c.Ids() == (std::vector<int>{1, 2, 3}));
  CHECK_EQ(t.gaps(), 0);
}

TEST(tcp_keeps_the_captured_part_of_a_longer_message_and_finds_the_next) {
  TcpFixture f;
  TcpReassembler t(TcpOpts(), 1);
  Collected c;
  Bytes first = TcpFramed(f.msgs[0]);
  PushBytes(&t, &c, 1, 0, Bytes(first.begin(), first.begin() + 20), 0, static_cast<int64_t>(first.size()));
  CHECK_EQ(c.out.size(), 1);
  CHECK(c.out[0].holes);
  CHECK_EQ(c.out[0].msg.size(), 18);
  Message m;
  CHECK(Parse(c.out[0].msg, &m));
  CHECK_EQ(m.id, 1);
  CHECK(m.truncated);
  PushBytes(&t, &c, 1, static_cast<uint32_t>(first.size()), TcpFramed(f.msgs[1]), 1);
  CHECK(c.Ids() == (std::vector<int>{1, 2}));
}

TEST(tcp_gives_a_stream_up_when_a_gap_hides_a_length_prefix_and_counts_it) {
  TcpFixture f;
  TcpReassembler t(TcpOpts(), 1);
  Collected c;
  size_t first = f.msgs[0].size() + 2;
  PushBytes(&t, &c, 1, 0, f.Slice(0, 10), 0);
  CHECK(c.out.empty());
  // bytes [10, first + 5) never seen: the hole runs past message 2's prefix
  PushBytes(&t, &c, 1, static_cast<uint32_t>(first + 5), f.Slice(first + 5, f.stream.size()), 1);
  CHECK_EQ(c.out.size(), 1);  // message 1, with holes
  CHECK(c.out[0].holes);
  CHECK_EQ(t.gaps(), 1);
  PushBytes(&t, &c, 1, static_cast<uint32_t>(f.stream.size()), Bytes(10), 2);
  CHECK_EQ(c.out.size(), 1);
  CHECK_EQ(t.gaps(), 1);
}

TEST(tcp_bounds_the_stream_table_forgets_idle_streams_and_evicts_streams_between_messages) {
  TcpFixture f;
  TcpReassembler t(TcpOpts(2, 64, 10), 1);
  Collected c;
  Bytes d = f.Slice(0, 4);  // mid-message: these streams are busy
  PushBytes(&t, &c, 'a', 0, d, 0);
  PushBytes(&t, &c, 'b', 0, d, 5);
  PushBytes(&t, &c, 'c', 0, d, 6);
  CHECK_EQ(t.shed(), 1);
  CHECK_EQ(t.size(), 2);
  PushBytes(&t, &c, 'c', 0, d, 11);  // 'a' is idle by now: room
  CHECK_EQ(t.size(), 2);
  CHECK_EQ(t.shed(), 1);
  t.Expire(100);
  CHECK_EQ(t.size(), 0);
  // Streams at a message boundary make room for new ones, the oldest first.
  Bytes whole = TcpFramed(f.msgs[0]);
  PushBytes(&t, &c, 'x', 0, whole, 200);
  PushBytes(&t, &c, 'y', 0, d, 201);
  PushBytes(&t, &c, 'z', 0, whole, 202);  // evicts 'x' (done), not 'y' (mid-message)
  CHECK_EQ(t.shed(), 1);
  CHECK_EQ(t.size(), 2);
  Collected cy;
  PushBytes(&t, &cy, 'y', 4, Bytes(whole.begin() + 4, whole.end()), 203);
  CHECK_EQ(cy.out.size(), 1);
  CHECK(!cy.out[0].holes);
}

TEST(tcp_any_segmentation_yields_the_same_messages_and_garbage_never_breaks_it) {
  TcpFixture f;
  Rng r(42);
  for (int i = 0; i < 2000; i++) {
    std::vector<size_t> cuts;
    int n = r.Below(12);
    for (int k = 0; k < n; k++) cuts.push_back(1 + r.Below(f.stream.size() - 1));
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    TcpReassembler t(TcpOpts(), 1);
    Collected c = f.Feed(&t, cuts, static_cast<uint32_t>(r.Next()));
    CHECK_EQ(c.out.size(), 3);
    for (size_t k = 0; k < c.out.size() && k < 3; k++) CHECK(c.out[k].msg == f.msgs[k]);
  }
  TcpReassembler t(TcpOpts(8, 256, 1000), 1);
  for (uint64_t i = 0; i < g_fuzz / 5; i++) {
    Bytes data(r.Below(300));
    for (auto& x : data) x = static_cast<uint8_t>(r.Next());
    int64_t wire = static_cast<int64_t>(data.size()) + (r.Below(5) == 0 ? r.Below(5000) : 0);
    Collected c;
    PushBytes(&t, &c, static_cast<uint8_t>(r.Below(12)), static_cast<uint32_t>(r.Next()), data, i, wire);
    for (const auto& o : c.out) CHECK(o.msg.size() <= 256);
    CHECK(t.size() <= 8);
  }
}

// ---- the collector ---------------------------------------------------------

TEST(udp_lookups_pair_into_one_stat_per_key_and_the_query_alone_is_no_sample) {
  DnsCollector c(Opts());
  Feed(&c, ClientQuery(1, "web.dke.test", 1000 * kMs));
  Feed(&c, ClientAnswer(1, "web.dke.test", 1001 * kMs));
  Feed(&c, ClientQuery(2, "web.dke.test", 1002 * kMs, 40001));
  Feed(&c, ClientAnswer(2, "web.dke.test", 1005 * kMs, 0, 40001));
  CHECK_EQ(c.pending_queries(), 0);
  auto stats = CollectAt(&c, 1100 * kMs);
  CHECK_EQ(stats.size(), 1);
  const dke_dnsflow_stat& s = stats[0];
  CHECK_STR(AddrText(s.client_addr, AF_INET), kClient);
  CHECK_STR(AddrText(s.server_addr, AF_INET), kServer);
  for (int i = 4; i < 16; i++) CHECK_EQ(s.client_addr[i] | s.server_addr[i], 0);
  CHECK_EQ(s.client_port, 0);  // not a DNS port: collapsed
  CHECK_EQ(s.server_port, 53);
  CHECK_EQ(s.family, AF_INET);
  CHECK_EQ(s.proto, IPPROTO_UDP);
  CHECK_EQ(s.side, DKE_DNS_SIDE_CLIENT);
  CHECK_EQ(s.netns, kNetns);
  CHECK_EQ(s.rcode, 0);
  CHECK_EQ(s.count, 2);
  CHECK_EQ(s.latency_sum_ns, 4 * kMs);
  CHECK_EQ(s.latency_max_ns, 3 * kMs);
  CHECK(CollectAt(&c, 1200 * kMs).empty());  // a collect starts anew
  auto st = c.stats();
  CHECK_EQ(st.packets, 4);
  CHECK_EQ(st.unmatched_answers + st.not_dns + st.malformed + st.repeated_queries, 0);
}

TEST(nxdomain_is_rcode_3_apart_from_successful_lookups) {
  DnsCollector c(Opts());
  Feed(&c, ClientQuery(1, "web.dke.test", 1000 * kMs));
  Feed(&c, ClientAnswer(1, "web.dke.test", 1001 * kMs));
  Feed(&c, ClientQuery(3, "nope.dke.test", 1006 * kMs));
  Feed(&c, ClientAnswer(3, "nope.dke.test", 1008 * kMs, 3));
  auto stats = CollectAt(&c, 1100 * kMs);
  CHECK_EQ(stats.size(), 2);
  const dke_dnsflow_stat* nx = FindStat(stats, 3);
  CHECK(nx && nx->count == 1 && nx->latency_sum_ns == 2 * kMs && nx->latency_max_ns == 2 * kMs);
  CHECK(FindStat(stats, 0) && FindStat(stats, 0)->count == 1);
  CHECK(Names(&c).size() == 1);  // only the successful answer names an address
}

TEST(a_query_unanswered_past_timeout_and_grace_is_rcode_minus_1_once) {
  DnsCollector c(Opts());
  CHECK(CollectAt(&c, 0).empty());  // early in boot: nothing to expire, no underflow
  Feed(&c, ClientQuery(4, "slow.dke.test", 1010 * kMs));
  Feed(&c, ClientQuery(5, "slow.dke.test", 3000 * kMs));
  CHECK(CollectAt(&c, 1010 * kMs + 7 * kS - 1).empty());
  CHECK_EQ(c.pending_queries(), 2);
  auto stats = CollectAt(&c, 1010 * kMs + 7 * kS);
  CHECK_EQ(stats.size(), 1);
  CHECK(stats[0].rcode == -1 && stats[0].count == 1 && stats[0].latency_sum_ns == 0 && stats[0].latency_max_ns == 0);
  CHECK(CollectAt(&c, 1010 * kMs + 7 * kS).empty());
  CHECK_EQ(c.pending_queries(), 1);
  // Its answer, now, matches nothing.
  Feed(&c, ClientAnswer(4, "slow.dke.test", 9 * kS));
  CHECK_EQ(c.stats().unmatched_answers, 1);
}

TEST(an_answer_later_than_the_timeout_is_a_timeout_even_before_expiry_ran) {
  DnsCollector c(Opts());
  Feed(&c, ClientQuery(1, "a.test", 0));
  Feed(&c, ClientAnswer(1, "a.test", 6 * kS + 1));
  auto stats = CollectAt(&c, 6 * kS + 2);
  CHECK(stats.size() == 1 && stats[0].rcode == -1 && stats[0].latency_sum_ns == 0);
}

TEST(tcp_lookups_pair_across_segments_timed_from_the_first_query_byte_to_the_last_answer_byte) {
  DnsCollector c(Opts());
  Pkt q = ClientQuery(9, "web.dke.test", 1000 * kMs, 41000);
  q.tcp = true;
  q.seq = 100;
  q.payload = TcpFramed(q.payload);
  Feed(&c, q);
  Msg am;
  am.id = 9;
  am.qr = true;
  am.questions = {{"web.dke.test", kA}};
  am.answers = {{"web.dke.test", kA, "10.201.3.9"}};
  Bytes a = TcpFramed(Build(am));
  auto seg = [&](uint64_t t, size_t from, size_t to) {
    Pkt p = ClientAnswer(0, "", t, 0, 41000);
    p.tcp = true;
    p.seq = 7000 + static_cast<uint32_t>(from);
    p.payload.assign(a.begin() + from, a.begin() + to);
    Feed(&c, p);
  };
  seg(1002 * kMs, 0, 1);
  seg(1003 * kMs, 1, 20);
  seg(1004 * kMs, 20, a.size());
  auto stats = CollectAt(&c, 1100 * kMs);
  CHECK_EQ(stats.size(), 1);
  CHECK(stats[0].proto == IPPROTO_TCP && stats[0].server_port == 53 && stats[0].client_port == 0);
  CHECK(stats[0].count == 1 && stats[0].latency_sum_ns == 4 * kMs && stats[0].latency_max_ns == 4 * kMs);
  CHECK_STR(NameOf(Names(&c), "10.201.3.9"), "web.dke.test");
}

TEST(tcp_two_messages_in_one_segment_are_two_lookups) {
  DnsCollector c(Opts());
  Pkt q = ClientQuery(0, "", 1000 * kMs, 41001);
  q.tcp = true;
  q.seq = 5;
  q.payload = Cat({TcpFramed(QueryMsg(1, "a.dke.test")), TcpFramed(QueryMsg(2, "b.dke.test", kAaaa))});
  Feed(&c, q);
  Pkt a = ClientAnswer(0, "", 1003 * kMs, 0, 41001);
  a.tcp = true;
  a.seq = 900;
  a.payload = Cat({TcpFramed(AnswerMsg(1, "a.dke.test", "10.0.0.1")), TcpFramed(AnswerMsg(2, "b.dke.test", "fd00::1"))});
  Feed(&c, a);
  auto stats = CollectAt(&c, 1100 * kMs);
  CHECK(stats.size() == 1 && stats[0].count == 2 && stats[0].latency_sum_ns == 6 * kMs);
  auto names = Names(&c);
  CHECK_STR(NameOf(names, "10.0.0.1"), "a.dke.test");
  CHECK_STR(NameOf(names, "fd00::1"), "b.dke.test");
}

TEST(answers_longer_than_the_captured_part_pair_and_name_what_was_captured) {
  Msg am = PoolAnswer(77, "pool.dke.test", 200, "10.77.");
  am.compress = false;  // ~5.8 KB, as the e2e test's server sends it
  Bytes full = Build(am);
  CHECK(full.size() > DKE_DNS_PAYLOAD_MAX);
  for (bool tcp : {false, true}) {
    DnsCollector c(Opts());
    Pkt q = ClientQuery(77, "pool.dke.test", 1000 * kMs);
    Pkt a = ClientAnswer(77, "pool.dke.test", 1002 * kMs);
    Bytes wire = tcp ? TcpFramed(full) : full;
    if (tcp) {
      q.tcp = a.tcp = true;
      q.payload = TcpFramed(q.payload);
      a.seq = 1;
    }
    a.payload.assign(wire.begin(), wire.begin() + DKE_DNS_PAYLOAD_MAX);
    a.wire_len = static_cast<int64_t>(wire.size());
    Feed(&c, q);
    Feed(&c, a);
    auto stats = CollectAt(&c, 1100 * kMs);
    CHECK(stats.size() == 1 && stats[0].rcode == 0 && stats[0].count == 1);
    auto names = Names(&c);
    CHECK(names.size() > 50 && names.size() < 200);
    CHECK_STR(NameOf(names, "10.77.0.0"), "pool.dke.test");
    CHECK_EQ(c.stats().tcp_stream_gaps, 0);
  }
}

TEST(ipv6_lookups_pair_and_name_aaaa_addresses) {
  DnsCollector c(Opts());
  Pkt q = ClientQuery(3, "web.dke.test", 10 * kMs);
  q.src = "fd00:dea:3::1";
  q.dst = "fd00:dea:3::2";
  q.payload = QueryMsg(3, "web.dke.test", kAaaa);
  Pkt a = ClientAnswer(3, "web.dke.test", 12 * kMs, 0, 40000, "fd00:dea:3::2");
  a.src = "fd00:dea:3::2";
  a.dst = "fd00:dea:3::1";
  Feed(&c, q);
  Feed(&c, a);
  auto stats = CollectAt(&c, 100 * kMs);
  CHECK_EQ(stats.size(), 1);
  CHECK_EQ(stats[0].family, AF_INET6);
  CHECK_STR(AddrText(stats[0].client_addr, AF_INET6), "fd00:dea:3::1");
  CHECK_STR(AddrText(stats[0].server_addr, AF_INET6), "fd00:dea:3::2");
  CHECK_EQ(stats[0].latency_sum_ns, 2 * kMs);
  auto names = Names(&c);
  CHECK_EQ(names.size(), 1);
  CHECK_EQ(names[0].family, AF_INET6);
  CHECK_STR(NameOf(names, "fd00:dea:3::2"), "web.dke.test");
}

Pkt AnswerPkt(const Msg& m, uint64_t t) {
  Pkt p = ClientAnswer(0, "", t);
  p.payload = Build(m);
  return p;
}

TEST(names_follow_cname_chains_to_the_name_asked_for_lower_case) {
  DnsCollector c(Opts());
  Msg m;
  m.id = 1;
  m.qr = true;
  m.questions = {{"API.Example.com", kA}};
  m.answers = {{"api.example.com", kCname, "api.example.com.edgekey.net"},
               {"api.example.com.edgekey.net", kCname, "e1.akamaiedge.net"},
               {"e1.akamaiedge.net", kA, "23.1.2.3", 20},
               {"e1.akamaiedge.net", kAaaa, "2600:1400::17"},
               {"unrelated.example.org", kA, "10.9.9.9"},
               {"e1.akamaiedge.net", kA, "", 300, true, Bytes{1, 2, 3}}};  // wrong rdata length: ignored
  Feed(&c, AnswerPkt(m, kS));  // unmatched (no query) still names
  auto names = Names(&c);
  CHECK_EQ(names.size(), 3);
  CHECK_STR(NameOf(names, "23.1.2.3"), "api.example.com");
  CHECK_STR(NameOf(names, "2600:1400::17"), "api.example.com");
  CHECK_STR(NameOf(names, "10.9.9.9"), "unrelated.example.org");
  for (const auto& n : names) {
    if (AddrText(n.addr, n.family) == "23.1.2.3") {
      CHECK_EQ(n.ttl_s, 20);
      CHECK_EQ(n.family, AF_INET);
      for (int i = 4; i < 16; i++) CHECK_EQ(n.addr[i], 0);
    }
  }
  CHECK_EQ(c.stats().unmatched_answers, 1);
  // A loop in the chain is survived.
  Msg loop;
  loop.id = 2;
  loop.qr = true;
  loop.questions = {{"a.test", kA}};
  loop.answers = {{"a.test", kCname, "b.test"}, {"b.test", kCname, "a.test"}, {"b.test", kA, "10.0.0.1"}};
  Feed(&c, AnswerPkt(loop, 2 * kS));
  CHECK_STR(NameOf(Names(&c), "10.0.0.1"), "a.test");
  // An uncompressed answer names the same.
  Msg plain = m;
  plain.compress = false;
  plain.questions = {{"www.other.test", kA}};
  plain.answers = {{"www.other.test", kCname, "edge.other.test"}, {"edge.other.test", kA, "10.0.0.77"}};
  Feed(&c, AnswerPkt(plain, 3 * kS));
  CHECK_STR(NameOf(Names(&c), "10.0.0.77"), "www.other.test");
}

TEST(names_are_sent_once_and_again_when_the_domain_changes_or_the_ttl_passed) {
  DnsCollector::Options o = Opts();
  o.name_resend_max_s = 100;
  DnsCollector c(o);
  auto answer = [&](const std::string& name, uint32_t ttl, uint64_t t) {
    Msg m;
    m.id = 1;
    m.qr = true;
    m.questions = {{name, kA}};
    m.answers = {{name, kA, "10.0.0.1", ttl}};
    Feed(&c, AnswerPkt(m, t));
  };
  answer("old.test", 60, 0);
  CHECK_EQ(Names(&c).size(), 1);
  answer("old.test", 60, 30 * kS);  // same domain within its TTL
  CHECK_EQ(Names(&c).size(), 0);
  answer("new.test", 60, 31 * kS);  // the domain changed
  CHECK_STR(NameOf(Names(&c), "10.0.0.1"), "new.test");
  answer("new.test", 60, 91 * kS);  // its TTL (from 31 s) passed
  CHECK_EQ(Names(&c).size(), 1);
  answer("new.test", 3600, 100 * kS);  // held from 91 s for 60 s
  CHECK_EQ(Names(&c).size(), 0);
  answer("new.test", 3600, 151 * kS);  // sent, then held for name_resend_max_s (100 s), not an hour
  CHECK_EQ(Names(&c).size(), 1);
  answer("new.test", 3600, 250 * kS);
  CHECK_EQ(Names(&c).size(), 0);
  answer("new.test", 3600, 251 * kS);
  CHECK_EQ(Names(&c).size(), 1);
  answer("zero.test", 0, 300 * kS);  // TTL 0: held a second
  answer("zero.test", 0, 300 * kS + 500 * kMs);
  CHECK_EQ(Names(&c).size(), 1);
  answer("zero.test", 0, 301 * kS);
  CHECK_EQ(Names(&c).size(), 1);
}

TEST(an_address_answered_with_many_names_between_collects_is_queued_once_with_the_last) {
  DnsCollector::Options o = Opts();
  o.max_queued_names = 2;  // one address behind 1,000 names takes one place, not 1,000
  DnsCollector c(o);
  auto answer = [&](const std::string& name, const std::string& ip, uint64_t t) {
    Msg m;
    m.id = 1;
    m.qr = true;
    m.questions = {{name, kA}};
    m.answers = {{name, kA, ip}};
    Feed(&c, AnswerPkt(m, t));
  };
  for (int i = 0; i < 1000; i++) answer("q" + std::to_string(i) + ".cdn.test", "10.0.0.1", kS + i * kMs);
  answer("other.test", "10.0.0.2", 2 * kS);
  auto names = Names(&c);
  CHECK_EQ(names.size(), 2);
  CHECK_STR(NameOf(names, "10.0.0.1"), "q999.cdn.test");
  CHECK_STR(NameOf(names, "10.0.0.2"), "other.test");
  CHECK_EQ(c.stats().names_shed, 0);
  answer("q0.cdn.test", "10.0.0.1", 3 * kS);  // after TakeNames: queued anew
  names = Names(&c);
  CHECK_EQ(names.size(), 1);
  CHECK_STR(NameOf(names, "10.0.0.1"), "q0.cdn.test");
}

TEST(names_waiting_beyond_the_bound_are_shed_and_sent_when_seen_again) {
  DnsCollector::Options o = Opts();
  o.max_queued_names = 2;
  DnsCollector c(o);
  Msg m;
  m.id = 1;
  m.qr = true;
  m.questions = {{"pool.test", kA}};
  m.answers = {{"pool.test", kA, "10.0.0.1"}, {"pool.test", kA, "10.0.0.2"}, {"pool.test", kA, "10.0.0.3"}};
  Feed(&c, AnswerPkt(m, kS));
  CHECK_EQ(Names(&c).size(), 2);
  CHECK_EQ(c.stats().names_shed, 1);
  Feed(&c, AnswerPkt(m, 2 * kS));
  auto names = Names(&c);
  CHECK_EQ(names.size(), 1);
  CHECK_STR(NameOf(names, "10.0.0.3"), "pool.test");
}

TEST(the_network_namespace_keeps_lookups_of_two_containers_apart) {
  DnsCollector c(Opts());
  Pkt q1 = ClientQuery(1, "a.test", 0);
  q1.netns = 1;
  Pkt q2 = ClientQuery(1, "a.test", 1 * kMs);
  q2.netns = 2;
  Feed(&c, q1);
  Feed(&c, q2);
  CHECK_EQ(c.pending_queries(), 2);
  CHECK_EQ(c.stats().repeated_queries, 0);
  Pkt a3 = ClientAnswer(1, "a.test", 3 * kMs);
  a3.netns = 3;
  Feed(&c, a3);
  CHECK_EQ(c.stats().unmatched_answers, 1);
  Pkt a2 = ClientAnswer(1, "a.test", 5 * kMs);
  a2.netns = 2;
  Feed(&c, a2);
  Pkt a1 = ClientAnswer(1, "a.test", 10 * kMs);
  a1.netns = 1;
  Feed(&c, a1);
  auto stats = CollectAt(&c, 100 * kMs);
  CHECK_EQ(stats.size(), 2);
  for (const auto& s : stats) {
    CHECK(s.count == 1);
    if (s.netns == 1) CHECK_EQ(s.latency_sum_ns, 10 * kMs);
    if (s.netns == 2) CHECK_EQ(s.latency_sum_ns, 4 * kMs);
  }
}

TEST(a_resolver_on_this_host_is_the_server_side_paired_apart_from_its_local_client) {
  DnsCollector c(Opts());
  // A client and a resolver both on this host: four packets for one lookup.
  Pkt cq = ClientQuery(5, "web.dke.test", 1000 * kMs);
  cq.dst = kClient;  // the resolver is local too
  Pkt sq = cq;       // arrives at the resolver
  sq.egress = false;
  sq.local_server = true;
  sq.t = 1001 * kMs;
  Pkt sa = ClientAnswer(5, "web.dke.test", 1004 * kMs);
  sa.src = kClient;
  sa.egress = true;
  sa.local_server = true;
  Pkt ca = sa;  // arrives at the client
  ca.egress = false;
  ca.local_server = false;
  ca.t = 1005 * kMs;
  for (const Pkt& p : {cq, sq, sa, ca}) Feed(&c, p);
  auto stats = CollectAt(&c, 1100 * kMs);
  CHECK_EQ(stats.size(), 2);
  const dke_dnsflow_stat* client = FindStat(stats, 0, DKE_DNS_SIDE_CLIENT);
  const dke_dnsflow_stat* server = FindStat(stats, 0, DKE_DNS_SIDE_SERVER);
  CHECK(client && client->count == 1 && client->latency_sum_ns == 5 * kMs && client->server_port == 53);
  CHECK(server && server->count == 1 && server->latency_sum_ns == 3 * kMs && server->server_port == 53 &&
        server->client_port == 0);
  CHECK_EQ(Names(&c).size(), 1);  // from the client's answer only
  CHECK_EQ(c.stats().unmatched_answers, 0);

  // A resolver answering others: its answers name nothing; an unanswered query is its timeout.
  DnsCollector s(Opts());
  Feed(&s, sq);
  Feed(&s, sa);
  Pkt lost = sq;
  lost.payload = QueryMsg(6, "lost.test");
  Feed(&s, lost);
  CHECK(Names(&s).empty());
  stats = CollectAt(&s, 1001 * kMs + 7 * kS);
  CHECK(FindStat(stats, 0, DKE_DNS_SIDE_SERVER) && FindStat(stats, -1, DKE_DNS_SIDE_SERVER));
  CHECK(!FindStat(stats, 0, DKE_DNS_SIDE_CLIENT));
}

TEST(between_two_dns_ports_the_qr_bit_says_which_end_is_local) {
  DnsCollector c(Opts());
  // A resolver on this host forwarding upstream from port 53: it is the client there.
  Pkt q = ClientQuery(8, "fwd.test", 0, 53);
  q.local_server = true;  // the local port is a DNS port
  Pkt a = ClientAnswer(8, "fwd.test", 2 * kMs, 0, 53);
  a.local_server = true;
  Feed(&c, q);
  Feed(&c, a);
  auto stats = CollectAt(&c, kS);
  CHECK(stats.size() == 1 && stats[0].side == DKE_DNS_SIDE_CLIENT && stats[0].client_port == 53 && stats[0].count == 1);
  CHECK_EQ(c.stats().not_dns, 0);
  // With one DNS port, a packet against its direction is not a lookup.
  Pkt odd = ClientAnswer(9, "x.test", 3 * kMs);
  odd.egress = true;  // an answer leaving a client socket
  Feed(&c, odd);
  CHECK_EQ(c.stats().not_dns, 1);
}

TEST(a_repeated_query_is_kept_once_timed_from_its_first_send) {
  DnsCollector c(Opts());
  Feed(&c, ClientQuery(1, "a.test", 0));
  Feed(&c, ClientQuery(1, "a.test", 500 * kMs));
  CHECK_EQ(c.stats().repeated_queries, 1);
  Feed(&c, ClientAnswer(1, "a.test", 600 * kMs));
  auto stats = CollectAt(&c, kS);
  CHECK(stats.size() == 1 && stats[0].count == 1 && stats[0].latency_sum_ns == 600 * kMs);
}

TEST(an_answer_matching_nothing_is_counted) {
  DnsCollector c(Opts());
  Feed(&c, ClientQuery(7, "a.test", 1000 * kMs));
  Feed(&c, ClientAnswer(7, "a.test", 1003 * kMs));
  Feed(&c, ClientAnswer(7, "a.test", 1004 * kMs));  // a duplicate
  Feed(&c, ClientAnswer(8, "a.test", 1004 * kMs));  // another id
  Pkt other_port = ClientAnswer(7, "a.test", 1004 * kMs);
  other_port.sport = 5353;
  Feed(&c, other_port);
  CHECK_EQ(c.stats().unmatched_answers, 3);
  CHECK_EQ(c.stats().not_dns, 0);
  // Keyed on transport and both ends.
  Feed(&c, ClientQuery(1, "a.test", 2000 * kMs));
  Pkt tcp = ClientAnswer(1, "a.test", 2001 * kMs);
  tcp.tcp = true;
  tcp.payload = TcpFramed(tcp.payload);
  Feed(&c, tcp);
  Pkt other_server = ClientAnswer(1, "a.test", 2001 * kMs);
  other_server.src = "10.201.3.3";
  Feed(&c, other_server);
  Pkt other_client = ClientAnswer(1, "a.test", 2001 * kMs, 0, 40001);
  Feed(&c, other_client);
  CHECK_EQ(c.stats().unmatched_answers, 6);
  Feed(&c, ClientAnswer(1, "a.test", 2002 * kMs, 3));
  auto stats = CollectAt(&c, 3 * kS);
  CHECK(FindStat(stats, 3) && FindStat(stats, 3)->count == 1);
}

TEST(malformed_records_and_payloads_that_are_not_dns_are_counted) {
  DnsCollector c(Opts());
  Bytes good = Record(ClientQuery(1, "a.test", 0));
  c.OnEvent(nullptr, 0);
  c.OnEvent(good.data(), 63);  // shorter than a header
  auto bad = [&](std::function<void(dke_dns_event*)> edit, size_t len) {
    Bytes r = good;
    r.resize(std::max(r.size(), len));
    dke_dns_event ev;
    std::memcpy(&ev, r.data(), sizeof(ev));
    edit(&ev);
    std::memcpy(r.data(), &ev, sizeof(ev));
    std::unique_ptr<uint8_t[]> copy(new uint8_t[len]);
    std::memcpy(copy.get(), r.data(), len);
    c.OnEvent(copy.get(), len);
  };
  bad([](dke_dns_event* e) { e->family = 7; }, good.size());
  bad([](dke_dns_event* e) { e->proto = 1; }, good.size());
  bad([](dke_dns_event* e) { e->cap_len += 1; }, good.size());  // more than the record holds
  bad([](dke_dns_event* e) { e->wire_len = e->cap_len - 1; }, good.size());
  bad([](dke_dns_event* e) { e->cap_len = DKE_DNS_PAYLOAD_MAX + 1; e->wire_len = 9000; }, 64 + DKE_DNS_PAYLOAD_MAX + 1);
  CHECK_EQ(c.stats().malformed, 7);
  // Payloads: too short for a header, junk, a query without a question.
  Pkt p = ClientQuery(1, "a.test", 0);
  p.payload = Bytes(11);
  Feed(&c, p);
  const char* http = "GET / HTTP/1.1";
  p.payload.assign(http, http + std::strlen(http));
  Feed(&c, p);
  p.payload = Bytes(12);
  Feed(&c, p);
  CHECK_EQ(c.stats().not_dns, 3);
  CHECK_EQ(c.pending_queries(), 0);
  CHECK(CollectAt(&c, 10 * kS).empty());
  // The good record after all that still pairs; a record larger than its cap_len is fine.
  Bytes padded = good;
  padded.resize(64 + DKE_DNS_PAYLOAD_SMALL);
  c.OnEvent(padded.data(), padded.size());
  Feed(&c, ClientAnswer(1, "a.test", 1 * kMs));
  CHECK_EQ(CollectAt(&c, 11 * kS).size(), 1);
  CHECK_EQ(c.stats().packets, 12);
}

TEST(dns_ports_stay_other_ports_collapse_to_0) {
  DnsCollector::Options o = Opts();
  o.dns_ports = {53, 5353};
  DnsCollector c(o);
  auto lookup = [&](uint16_t cport, uint16_t sport, uint16_t id) {
    Pkt q = ClientQuery(id, "a.test", 0, cport);
    q.dport = sport;
    Pkt a = ClientAnswer(id, "a.test", kMs, 0, cport);
    a.sport = sport;
    Feed(&c, q);
    Feed(&c, a);
  };
  lookup(40000, 5353, 1);
  lookup(40001, 5353, 2);
  lookup(53, 53, 3);  // resolver to resolver
  auto stats = CollectAt(&c, kS);
  CHECK_EQ(stats.size(), 2);
  for (const auto& s : stats) {
    if (s.server_port == 5353) CHECK(s.client_port == 0 && s.count == 2);
    else CHECK(s.server_port == 53 && s.client_port == 53 && s.count == 1);
  }
}

TEST(the_pending_table_sheds_new_queries_when_full_after_giving_up_expired_ones) {
  DnsCollector::Options o = Opts();
  o.max_pending = 3;
  DnsCollector c(o);
  for (uint16_t i = 0; i < 5; i++) Feed(&c, ClientQuery(i, "a.test", i * kMs));
  CHECK_EQ(c.pending_queries(), 3);
  CHECK_EQ(c.stats().pending_shed, 2);
  // 8 s later the three are past timeout + grace: they become timeouts and the new query fits
  Feed(&c, ClientQuery(99, "a.test", 8 * kS));
  CHECK_EQ(c.pending_queries(), 1);
  CHECK_EQ(c.stats().pending_shed, 2);
  auto stats = CollectAt(&c, 8 * kS);
  CHECK(stats.size() == 1 && stats[0].rcode == -1 && stats[0].count == 3);
}

TEST(the_groups_of_one_collect_are_bounded_and_what_is_shed_is_counted) {
  DnsCollector::Options o = Opts();
  o.max_groups = 2;
  DnsCollector c(o);
  for (uint16_t i = 0; i < 5; i++) {
    Pkt q = ClientQuery(i, "a.test", 0);
    q.src = "10.0.0." + std::to_string(i);
    Pkt a = ClientAnswer(i, "a.test", kMs);
    a.dst = q.src;
    Feed(&c, q);
    Feed(&c, a);
  }
  CHECK_EQ(c.stats().groups_shed, 3);
  CHECK_EQ(CollectAt(&c, kS).size(), 2);
}

TEST(the_packet_path_allocates_nothing) {
  DnsCollector c(Opts());
  // Two rounds of the same 50 UDP and 50 TCP lookups (TCP answers split in
  // two segments, through the stream buffer); the second continues the streams.
  auto make_round = [](uint32_t round) {
    std::vector<Bytes> records;
    for (uint16_t i = 0; i < 50; i++) {
      std::string name = "h" + std::to_string(i) + ".dke.test";
      std::string ip = "10.1.0." + std::to_string(i);
      uint64_t t = round * kS + i * kMs;
      records.push_back(Record(ClientQuery(i, name, t, static_cast<uint16_t>(40000 + i))));
      records.push_back(Record(ClientAnswer(i, name, t + 2 * kMs, 0, static_cast<uint16_t>(40000 + i), ip)));
      Pkt q = ClientQuery(i, name, t, static_cast<uint16_t>(41000 + i));
      q.tcp = true;
      q.payload = TcpFramed(q.payload);
      q.seq = round * static_cast<uint32_t>(q.payload.size());
      Pkt a = ClientAnswer(i, name, t + 3 * kMs, 0, static_cast<uint16_t>(41000 + i), ip);
      a.tcp = true;
      Bytes framed = TcpFramed(a.payload);
      a.seq = round * static_cast<uint32_t>(framed.size());
      a.payload.assign(framed.begin(), framed.begin() + 5);
      records.push_back(Record(q));
      records.push_back(Record(a));
      a.seq += 5;
      a.payload.assign(framed.begin() + 5, framed.end());
      records.push_back(Record(a));
    }
    return records;
  };
  std::vector<Bytes> rounds[2] = {make_round(0), make_round(1)};
  std::vector<dke_dnsflow_stat> stats;
  std::vector<dke_dns_name> names;
  stats.reserve(1000);
  names.reserve(1000);
  for (uint32_t r = 0; r < 2; r++) {
    stats.clear();
    names.clear();
    uint64_t before = g_allocations;
    for (const Bytes& rec : rounds[r]) c.OnEvent(rec.data(), rec.size());
    c.TakeNames(&names);
    c.Collect((r + 1) * kS, &stats);
    // The first round learns names and opens streams; then nothing is allocated.
    if (r == 1) CHECK_EQ(g_allocations - before, 0);
    CHECK_EQ(names.size(), r == 0 ? 50 : 0);
    CHECK_EQ(stats.size(), 2);
    for (const auto& s : stats) CHECK_EQ(s.count, 50);
  }
}

// ---- fuzz -------------------------------------------------------------------

Bytes Mutate(Rng* r, const Bytes& base) {
  Bytes out = base;
  int edits = 1 + r->Below(8);
  for (int e = 0; e < edits && !out.empty(); e++) {
    switch (r->Below(7)) {
      case 0: out[r->Below(out.size())] ^= static_cast<uint8_t>(1u << r->Below(8)); break;
      case 1: out[r->Below(out.size())] = static_cast<uint8_t>(r->Next()); break;
      case 2: out.resize(r->Below(out.size() + 1)); break;
      case 3: out[r->Below(out.size())] = static_cast<uint8_t>(0xc0 | r->Below(64)); break;
      case 4:
        if (out.size() > 12) {
          size_t at = 4 + 2 * r->Below(4);
          uint16_t v = static_cast<uint16_t>(r->Next());
          out[at] = static_cast<uint8_t>(v >> 8);
          out[at + 1] = static_cast<uint8_t>(v);
        }
        break;
      case 5:
        for (uint32_t n = r->Below(64); n > 0; n--) out.push_back(static_cast<uint8_t>(r->Next()));
        break;
      default: {
        size_t i = r->Below(out.size()), j = r->Below(out.size());
        if (i < j) out.erase(out.begin() + i, out.begin() + j);
      }
    }
  }
  return out;
}

std::vector<Bytes> Seeds() {
  Msg big;
  big.id = 2;
  big.qr = true;
  big.questions = {{"www.example.com", kA}};
  big.answers = {{"www.example.com", kCname, "a.b.example.net"}, {"a.b.example.net", kA, "1.2.3.4"}, {"a.b.example.net", kAaaa, "fd00::1"}};
  big.additional = {{".", kTypeOpt, "", 0, true, {}}};
  return {QueryMsg(1, "www.dke.test"), Build(big), AnswerMsg(3, "nope.test", "", 3)};
}

void CheckInvariants(const Bytes& b, bool ok, const Message& m) {
  CHECK(ok == (b.size() >= kHeaderLen));
  if (!ok) return;
  CHECK(m.n_questions <= kMaxQuestions);
  CHECK(m.n_answers <= kMaxAnswers);
  for (uint32_t i = 0; i < m.n_answers; i++) CHECK(size_t{m.answers[i].rdata_off} + m.answers[i].rdlen <= b.size());
  NameText t;
  size_t next;
  for (uint32_t i = 0; i < m.n_questions; i++) {
    CHECK(ReadName(b.data(), b.size(), m.questions[i].name_off, &t, &next));
    CHECK(t.len <= kMaxNameText && std::strlen(t.text) == t.len);
  }
  for (uint32_t i = 0; i < m.n_answers; i++) {
    CHECK(ReadName(b.data(), b.size(), m.answers[i].name_off, &t, &next));
    if (ReadCnameTarget(b.data(), b.size(), m.answers[i], &t)) CHECK(t.len <= kMaxNameText);
  }
}

TEST(fuzz_parser_with_random_and_mutated_messages) {
  Rng r(0xd15ea5e);
  auto seeds = Seeds();
  Message m, again;
  for (uint64_t i = 0; i < g_fuzz; i++) {
    Bytes b;
    if (i % 4 == 0) {
      b.resize(r.Below(600));
      for (auto& x : b) x = static_cast<uint8_t>(r.Next());
    } else {
      b = Mutate(&r, seeds[i % seeds.size()]);
    }
    bool ok = Parse(b, &m);
    CheckInvariants(b, ok, m);
    // Deterministic: the same bytes parse the same way.
    if (ok && Parse(b, &again)) {
      CHECK(again.n_answers == m.n_answers && again.n_questions == m.n_questions && again.rcode == m.rcode &&
            again.truncated == m.truncated);
    }
    if (g_failures > 20) return;
  }
}

TEST(fuzz_collector_with_random_and_mutated_records) {
  DnsCollector::Options o = Opts();
  o.max_pending = 64;
  o.max_groups = 64;
  o.max_tcp_streams = 8;
  o.max_known_names = 64;
  o.max_queued_names = 32;
  DnsCollector c(o);
  Rng r(7);
  auto seeds = Seeds();
  const char* addrs[] = {"10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"};
  std::vector<dke_dnsflow_stat> stats;
  std::vector<dke_dns_name> names;
  uint64_t t = 0;
  for (uint64_t i = 0; i < g_fuzz; i++) {
    t += r.Below(20 * kMs);
    Pkt p;
    p.t = t - r.Below(5 * kMs);
    bool v6 = r.Below(2);
    p.src = addrs[(v6 ? 2 : 0) + r.Below(2)];
    p.dst = addrs[(v6 ? 2 : 0) + r.Below(2)];
    p.sport = r.Below(3) ? 53 : static_cast<uint16_t>(40000 + r.Below(4));
    p.dport = r.Below(3) ? 53 : static_cast<uint16_t>(40000 + r.Below(4));
    p.egress = r.Below(2);
    p.local_server = r.Below(4) == 0;
    p.tcp = r.Below(3) == 0;
    p.seq = r.Below(4) ? static_cast<uint32_t>(r.Below(400)) : static_cast<uint32_t>(r.Next());
    p.netns = r.Below(3);
    p.payload = Mutate(&r, seeds[r.Below(seeds.size())]);
    if (r.Below(2)) p.payload[0] = p.payload.empty() ? 0 : static_cast<uint8_t>(r.Below(4));
    if (p.tcp && r.Below(2)) p.payload = TcpFramed(p.payload);
    if (p.payload.size() > DKE_DNS_PAYLOAD_MAX) p.payload.resize(DKE_DNS_PAYLOAD_MAX);
    p.wire_len = static_cast<int64_t>(p.payload.size()) + (r.Below(8) == 0 ? r.Below(3000) : 0);
    Bytes rec = Record(p);
    switch (r.Below(16)) {  // sometimes a broken record
      case 0: rec.resize(r.Below(rec.size() + 1)); break;
      case 1: rec[r.Below(64)] = static_cast<uint8_t>(r.Next()); break;
      default: break;
    }
    std::unique_ptr<uint8_t[]> copy(new uint8_t[rec.size() + 1]);
    if (!rec.empty()) std::memcpy(copy.get(), rec.data(), rec.size());
    c.OnEvent(copy.get(), rec.size());
    CHECK(c.pending_queries() <= 64);
    if (i % 1000 == 999) {
      stats.clear();
      c.Collect(t, &stats);
      CHECK(stats.size() <= 64);
      for (const auto& s : stats) CHECK(s.count > 0 && s.latency_max_ns <= s.latency_sum_ns && (s.rcode != -1 || s.latency_sum_ns == 0));
      names.clear();
      c.TakeNames(&names);
      CHECK(names.size() <= 32);
      for (const auto& n : names) CHECK(std::strlen(n.domain) < sizeof(n.domain) && (n.family == AF_INET || n.family == AF_INET6));
    }
    if (g_failures > 20) return;
  }
  auto s = c.stats();
  CHECK_EQ(s.packets, g_fuzz);
  std::printf("  fuzzed collector: %" PRIu64 " records: malformed %" PRIu64 ", not dns %" PRIu64 ", unmatched %" PRIu64
              ", tcp gaps %" PRIu64 ", tcp shed %" PRIu64 "\n",
              s.packets, s.malformed, s.not_dns, s.unmatched_answers, s.tcp_stream_gaps, s.tcp_streams_shed);
}

TEST(flat_map_grows_with_its_entries_and_shrinks_when_they_go) {
  struct K {
    uint64_t a;
  };
  FlatMap<K, uint64_t> m(10'000, 7);
  CHECK_EQ(m.capacity(), size_t{16});
  bool ins;
  for (uint64_t a = 0; a < 1000; a++) {
    K k{a};
    uint64_t* v = m.Insert(k, m.Hash(k), &ins);
    CHECK(v && ins);
    *v = a;
    CHECK(m.capacity() >= 2 * m.size());
  }
  CHECK_EQ(m.capacity(), size_t{2048});  // never more than needed for twice the entries
  m.EraseIf([](const K& k, uint64_t&) { return k.a >= 10; });
  m.Compact();
  CHECK_EQ(m.size(), size_t{10});
  CHECK(m.capacity() <= 64);
  for (uint64_t a = 0; a < 1000; a++) {
    K k{a};
    size_t at = m.Find(k, m.Hash(k));
    CHECK((at != FlatMap<K, uint64_t>::kNone) == (a < 10));
    if (at != FlatMap<K, uint64_t>::kNone) CHECK_EQ(m.ValueAt(at), a);
  }
  m.Clear();
  CHECK(m.size() == 0 && m.capacity() == 16);
  for (uint64_t a = 0; a < 10'000; a++) {
    K k{a};
    CHECK(m.Insert(k, m.Hash(k), &ins) != nullptr);
  }
  K over{10'000};
  CHECK(m.full() && m.Insert(over, m.Hash(over), &ins) == nullptr);
  CHECK_EQ(m.capacity(), size_t{32'768});  // the bound's: twice 10,000, rounded up to a power of two
}

TEST(flat_map_keeps_every_entry_findable_through_churn) {
  struct K {
    uint64_t a;
  };
  FlatMap<K, uint64_t> m(100, 1);
  Rng r(3);
  std::vector<bool> present(300);
  for (int i = 0; i < 200'000; i++) {
    K k{r.Below(300)};
    bool ins;
    if (r.Below(2)) {
      uint64_t* v = m.Insert(k, m.Hash(k), &ins);
      if (v) {
        CHECK(ins == !present[k.a]);
        *v = k.a;
        present[k.a] = true;
      } else {
        CHECK(!present[k.a] && m.full());
      }
    } else {
      size_t at = m.Find(k, m.Hash(k));
      CHECK((at != FlatMap<K, uint64_t>::kNone) == present[k.a]);
      if (at != FlatMap<K, uint64_t>::kNone) {
        CHECK(m.ValueAt(at) == k.a);
        m.EraseAt(at);
        present[k.a] = false;
      }
    }
    if (i % 10000 == 0) {
      m.EraseIf([&](const K& key, uint64_t&) {
        bool drop = key.a % 3 == 0;
        if (drop) present[key.a] = false;
        return drop;
      });
      size_t n = 0;
      m.ForEach([&](const K& key, const uint64_t& v) {
        n++;
        CHECK(present[key.a] && v == key.a);
      });
      CHECK_EQ(n, m.size());
      m.Compact();
      CHECK(m.capacity() >= 2 * m.size());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> filters;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--fuzz") == 0 && i + 1 < argc) {
      g_fuzz = std::strtoull(argv[++i], nullptr, 10);
    } else {
      filters.push_back(argv[i]);
    }
  }
  int ran = 0;
  for (const TestCase& t : Registry()) {
    bool selected = filters.empty();
    for (const auto& f : filters) selected = selected || std::strstr(t.name, f.c_str()) != nullptr;
    if (!selected) continue;
    g_test = t.name;
    int before = g_failures;
    auto t0 = std::chrono::steady_clock::now();
    t.fn();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s %s (%.0f ms)\n", g_failures == before ? "ok  " : "FAIL", t.name, ms);
    ran++;
  }
  if (ran == 0) {
    std::fprintf(stderr, "no test matched\n");
    return 2;
  }
  std::printf("%d test(s), %d failed check(s)\n", ran, g_failures);
  return g_failures == 0 ? 0 : 1;
}
