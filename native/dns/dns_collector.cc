#include "dns_collector.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <random>

#include "dns.h"
#include "dns_message.h"
#include "dns_names.h"
#include "dns_tcp.h"
#include "flat_map.h"

namespace dke {
namespace {

using dns::FlatMap;

static_assert(offsetof(dke_dns_event, payload) == 64, "dke_dns_event layout changed");
static_assert(sizeof(dke_dns_event) == 64, "dke_dns_event header size changed");

constexpr int32_t kRcodeTimeout = -1;

// A transaction: {id, transport, family, client ip:port, server ip:port},
// the local socket's network namespace and which side of it is local.
struct PairKey {
  uint8_t client[16];
  uint8_t server[16];
  uint32_t netns;
  uint16_t client_port;
  uint16_t server_port;
  uint16_t id;
  uint8_t family;
  uint8_t proto;
  uint8_t side;
  uint8_t pad[3];
};
static_assert(sizeof(PairKey) == 48);

// A stat: the lookup's endpoints with ports that are not DNS ports as 0, and its rcode.
struct GroupKey {
  uint8_t client[16];
  uint8_t server[16];
  uint32_t netns;
  int32_t rcode;
  uint16_t client_port;
  uint16_t server_port;
  uint8_t family;
  uint8_t proto;
  uint8_t side;
  uint8_t pad;
};
static_assert(sizeof(GroupKey) == 48);

struct Group {
  uint64_t count;
  uint64_t latency_sum_ns;
  uint64_t latency_max_ns;
};

uint64_t RandomSeed() {
  uint64_t seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  try {
    std::random_device rd;
    seed ^= (uint64_t{rd()} << 32) | rd();
  } catch (...) {
    // no entropy source: the clock alone still differs per process
  }
  return seed;
}

}  // namespace

class DnsCollector::Impl final : public dns::TcpMessageSink {
 public:
  explicit Impl(Options opts)
      : opts_(std::move(opts)),
        seed_(RandomSeed()),
        pending_(std::max<size_t>(opts_.max_pending, 1), seed_),
        groups_(std::max<size_t>(opts_.max_groups, 1), seed_ ^ 0x5bd1e995u),
        tcp_({opts_.max_tcp_streams, opts_.tcp_max_message_bytes, opts_.tcp_idle_ns}, seed_ ^ 0x27d4eb2fu),
        dedupe_(std::max<size_t>(opts_.max_known_names, 1), seed_ ^ 0x165667b1u),
        queued_(std::max<size_t>(opts_.max_queued_names, 1), seed_ ^ 0x9e3779b9u) {
    for (uint16_t p : opts_.dns_ports) dns_ports_[p >> 6] |= uint64_t{1} << (p & 63);
    names_.reserve(opts_.max_queued_names);
  }

  void OnEvent(const void* rec, size_t len) {
    stats_.packets++;
    if (!rec || len < sizeof(dke_dns_event)) {
      stats_.malformed++;
      return;
    }
    dke_dns_event ev;
    std::memcpy(&ev, rec, sizeof(ev));  // ring-buffer records are aligned, test buffers need not be
    if ((ev.family != AF_INET && ev.family != AF_INET6) || (ev.proto != IPPROTO_TCP && ev.proto != IPPROTO_UDP) ||
        ev.cap_len > len - sizeof(ev) || ev.cap_len > DKE_DNS_PAYLOAD_MAX || ev.cap_len > ev.wire_len) {
      stats_.malformed++;
      return;
    }
    if (ev.family == AF_INET) {
      // Only the first 4 bytes are the address: keys compare all 16.
      std::memset(ev.saddr + 4, 0, 12);
      std::memset(ev.daddr + 4, 0, 12);
    }
    const uint8_t* payload = static_cast<const uint8_t*>(rec) + sizeof(ev);
    if (ev.proto == IPPROTO_UDP) {
      OnMessage(ev, payload, ev.cap_len, ev.ktime_ns);
      return;
    }
    dns::TcpStreamKey key{};
    std::memcpy(key.saddr, ev.saddr, 16);
    std::memcpy(key.daddr, ev.daddr, 16);
    key.netns = ev.netns;
    key.sport = ev.sport;
    key.dport = ev.dport;
    key.family = ev.family;
    cur_ = &ev;
    tcp_.Push(key, {payload, ev.cap_len, ev.wire_len, ev.tcp_seq, ev.ktime_ns}, this);
    cur_ = nullptr;
  }

  // A query is sent when its first byte leaves; an answer is in when its last byte arrives.
  void OnTcpMessage(const uint8_t* msg, size_t len, bool, uint64_t first_ns, uint64_t last_ns) override {
    OnMessage(*cur_, msg, len, (cur_->flags & DKE_DNS_EGRESS) ? first_ns : last_ns);
  }

  void Collect(uint64_t now_ns, std::vector<dke_dnsflow_stat>* out) {
    ExpirePending(now_ns);
    pending_.Compact();  // after a burst, the lookups in flight fit a few cache lines again
    tcp_.Expire(now_ns);
    out->reserve(out->size() + groups_.size());
    groups_.ForEach([&](const GroupKey& k, const Group& g) {
      dke_dnsflow_stat s;
      std::memset(&s, 0, sizeof(s));
      std::memcpy(s.client_addr, k.client, 16);
      std::memcpy(s.server_addr, k.server, 16);
      s.client_port = k.client_port;
      s.server_port = k.server_port;
      s.family = k.family;
      s.proto = k.proto;
      s.side = k.side;
      s.netns = k.netns;
      s.rcode = k.rcode;
      s.count = static_cast<uint32_t>(std::min<uint64_t>(g.count, UINT32_MAX));
      s.latency_sum_ns = g.latency_sum_ns;
      s.latency_max_ns = g.latency_max_ns;
      out->push_back(s);
    });
    groups_.Clear();
  }

  void TakeNames(std::vector<dke_dns_name>* out) {
    out->insert(out->end(), names_.begin(), names_.end());
    names_.clear();
    queued_.Clear();
  }

  Stats stats() const {
    Stats s = stats_;
    s.tcp_streams_shed = tcp_.shed();
    s.tcp_stream_gaps = tcp_.gaps();
    return s;
  }

  size_t pending_queries() const { return pending_.size(); }

 private:
  bool IsDnsPort(uint16_t p) const { return (dns_ports_[p >> 6] >> (p & 63)) & 1; }

  // One DNS message of the packet `ev`, complete at kernel time t_ns.
  void OnMessage(const dke_dns_event& ev, const uint8_t* buf, size_t len, uint64_t t_ns) {
    if (len < dns::kHeaderLen) {
      stats_.not_dns++;
      return;
    }
    bool qr = (buf[2] & 0x80) != 0;
    bool egress = (ev.flags & DKE_DNS_EGRESS) != 0;
    bool local_server = (ev.flags & DKE_DNS_LOCAL_SERVER) != 0;
    // Queries leave a client and arrive at a server; answers go the other way.
    bool query_dir = egress != local_server;
    if (qr == query_dir) {
      // Both ends on DNS ports (resolver to resolver): the QR bit says which end is local.
      if (!IsDnsPort(ev.sport) || !IsDnsPort(ev.dport)) {
        stats_.not_dns++;
        return;
      }
      local_server = !local_server;
      query_dir = !query_dir;
    }
    if (!dns::ParseMessage(buf, len, query_dir ? dns::ParseDepth::kQuestions : dns::ParseDepth::kAll, &msg_)) {
      stats_.not_dns++;
      return;
    }
    PairKey k{};
    std::memcpy(k.client, query_dir ? ev.saddr : ev.daddr, 16);
    std::memcpy(k.server, query_dir ? ev.daddr : ev.saddr, 16);
    k.client_port = query_dir ? ev.sport : ev.dport;
    k.server_port = query_dir ? ev.dport : ev.sport;
    k.netns = ev.netns;
    k.id = msg_.id;
    k.family = static_cast<uint8_t>(ev.family);
    k.proto = ev.proto;
    k.side = local_server ? DKE_DNS_SIDE_SERVER : DKE_DNS_SIDE_CLIENT;
    if (query_dir) {
      // Something on a DNS port that does not even hold its question is not a query.
      if (msg_.n_questions == 0) {
        stats_.not_dns++;
        return;
      }
      OnQuery(k, t_ns);
      return;
    }
    if (!local_server) {
      size_t n = learner_.Learn(buf, len, msg_, learned_);
      for (size_t i = 0; i < n; i++) OnAddress(buf, len, learned_[i], t_ns);
    }
    OnAnswer(k, msg_.rcode, t_ns);
  }

  // An address a local client resolved: queued when it is news. An address
  // queued already since the last TakeNames gets the new name in its place:
  // the daemon names flows after the last answer anyway, and one address
  // behind many names (a CDN's, or the benchmark's 1,024 names) would
  // otherwise cost a record per answer.
  void OnAddress(const uint8_t* buf, size_t len, const dns::LearnedAddress& a, uint64_t t_ns) {
    uint64_t hold_s = std::clamp<uint64_t>(a.ttl_s, 1, std::max<uint32_t>(opts_.name_resend_max_s, 1));
    if (!dedupe_.ShouldSend(a.addr, a.family, a.domain_hash, hold_s * 1'000'000'000ull, t_ns)) return;
    const dns::AddrKey qk = dns::AddrKey::Of(a.addr, a.family);
    uint64_t qh = queued_.Hash(qk);
    size_t at = queued_.Find(qk, qh);
    if (at == FlatMap<dns::AddrKey, uint32_t>::kNone && names_.size() >= opts_.max_queued_names) {
      stats_.names_shed++;
      dedupe_.Forget(a.addr, a.family);
      return;
    }
    size_t next;
    // The root, or a name whose escaped text does not fit the record, is of no use to netflow.
    if (!dns::ReadName(buf, len, a.domain_off, &text_, &next) || text_.len >= sizeof(dke_dns_name::domain) ||
        (text_.len == 1 && text_.text[0] == '.')) {
      return;
    }
    dke_dns_name n;
    std::memset(&n, 0, sizeof(n));
    std::memcpy(n.addr, qk.addr, sizeof(n.addr));
    n.family = a.family;
    n.ttl_s = a.ttl_s;
    std::memcpy(n.domain, text_.text, text_.len);
    if (at != FlatMap<dns::AddrKey, uint32_t>::kNone) {
      names_[queued_.ValueAt(at)] = n;
      return;
    }
    bool inserted = false;
    uint32_t* index = queued_.Insert(qk, qh, &inserted);
    if (index) *index = static_cast<uint32_t>(names_.size());
    names_.push_back(n);
  }

  void OnQuery(const PairKey& k, uint64_t t_ns) {
    uint64_t h = pending_.Hash(k);
    bool inserted = false;
    uint64_t* sent = pending_.Insert(k, h, &inserted);
    if (!sent) {
      // Full: queries already past their timeout give up their places first.
      ExpirePending(t_ns);
      sent = pending_.Insert(k, h, &inserted);
      if (!sent) {
        stats_.pending_shed++;
        return;
      }
    }
    if (!inserted) {
      stats_.repeated_queries++;
      return;
    }
    *sent = t_ns;
    oldest_pending_ns_ = std::min(oldest_pending_ns_, t_ns);
  }

  void OnAnswer(const PairKey& answer, int32_t rcode, uint64_t t_ns) {
    PairKey k = answer;
    size_t i = pending_.Find(k, pending_.Hash(k));
    if (i == FlatMap<PairKey, uint64_t>::kNone && k.netns != 0) {
      // The query reached a socket older than the collector before its
      // namespace was known (netns 0 in the event): same exchange otherwise.
      k.netns = 0;
      i = pending_.Find(k, pending_.Hash(k));
    }
    if (i == FlatMap<PairKey, uint64_t>::kNone) {
      stats_.unmatched_answers++;
      return;
    }
    uint64_t sent = pending_.ValueAt(i);
    pending_.EraseAt(i);
    // An answer stamped before its query (CPUs' clocks) took no time.
    uint64_t latency = t_ns > sent ? t_ns - sent : 0;
    // Too late is no answer, whenever we learn of it.
    if (latency > opts_.timeout_ns) {
      AddLookup(k, kRcodeTimeout, 0);
    } else {
      AddLookup(k, rcode, latency);
    }
  }

  // Queries sent at or before now - timeout - grace become lookups with rcode -1.
  void ExpirePending(uint64_t now_ns) {
    uint64_t wait = opts_.timeout_ns + opts_.grace_ns;
    if (wait < opts_.timeout_ns || now_ns < wait) return;  // (a wait past 2^64 ns never ends)
    uint64_t cutoff = now_ns - wait;
    if (oldest_pending_ns_ > cutoff) return;  // nothing is that old: no scan
    uint64_t oldest = UINT64_MAX;
    pending_.EraseIf([&](const PairKey& k, uint64_t& sent) {
      if (sent > cutoff) {
        oldest = std::min(oldest, sent);
        return false;
      }
      AddLookup(k, kRcodeTimeout, 0);
      return true;
    });
    oldest_pending_ns_ = oldest;
  }

  void AddLookup(const PairKey& p, int32_t rcode, uint64_t latency_ns) {
    GroupKey k{};
    std::memcpy(k.client, p.client, 16);
    std::memcpy(k.server, p.server, 16);
    k.netns = p.netns;
    k.rcode = rcode;
    k.client_port = IsDnsPort(p.client_port) ? p.client_port : 0;
    k.server_port = IsDnsPort(p.server_port) ? p.server_port : 0;
    k.family = p.family;
    k.proto = p.proto;
    k.side = p.side;
    bool inserted;
    Group* g = groups_.Insert(k, groups_.Hash(k), &inserted);
    if (!g) {
      stats_.groups_shed++;
      return;
    }
    g->count++;
    g->latency_sum_ns += latency_ns;
    g->latency_max_ns = std::max(g->latency_max_ns, latency_ns);
  }

  Options opts_;
  uint64_t seed_;
  uint64_t dns_ports_[65536 / 64] = {};
  FlatMap<PairKey, uint64_t> pending_;  // transaction -> kernel time the query was sent
  uint64_t oldest_pending_ns_ = UINT64_MAX;  // no pending query is older (a lower bound)
  FlatMap<GroupKey, Group> groups_;
  dns::TcpReassembler tcp_;
  dns::NameLearner learner_;
  dns::NameDedupe dedupe_;
  std::vector<dke_dns_name> names_;
  // Addresses in names_ -> their index there (until TakeNames).
  FlatMap<dns::AddrKey, uint32_t> queued_;
  // Scratch of one message.
  dns::Message msg_;
  dns::LearnedAddress learned_[dns::kMaxAnswers];
  dns::NameText text_;
  const dke_dns_event* cur_ = nullptr;  // the packet whose TCP segment is being reassembled
  Stats stats_{};
};

DnsCollector::DnsCollector(Options opts) : impl_(std::make_unique<Impl>(std::move(opts))) {}
DnsCollector::~DnsCollector() = default;
void DnsCollector::OnEvent(const void* rec, size_t len) noexcept { impl_->OnEvent(rec, len); }
void DnsCollector::Collect(uint64_t now_ktime_ns, std::vector<dke_dnsflow_stat>* out) { impl_->Collect(now_ktime_ns, out); }
void DnsCollector::TakeNames(std::vector<dke_dns_name>* out) { impl_->TakeNames(out); }
DnsCollector::Stats DnsCollector::stats() const { return impl_->stats(); }
size_t DnsCollector::pending_queries() const { return impl_->pending_queries(); }

}  // namespace dke
