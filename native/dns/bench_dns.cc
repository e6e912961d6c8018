// CPU cost of one DNS lookup in the native module: ring-buffer records of a
// query and its answer through DnsCollector (parse, pair, aggregate, learn
// names), with TakeNames every 1k lookups (a ring-buffer poll) and Collect every
// 64k, as the loader would run them. Scenarios: UDP answers with a CNAME and two A records, the same
// over TCP, and UDP NXDOMAIN. `bench_dns [lookups [distinct]]` (default
// 1,000,000 lookups among 4096 distinct clients/names/addresses);
// prints one line per scenario and a JSON line with all of them.
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dns_collector.h"
#include "dns_message.h"
#include "test_wire.h"

using namespace dke;
using namespace dke::dns::testing;

namespace {

size_t kTemplates = 4096;  // distinct lookups (client ports, ids, addresses): the working set

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct Scenario {
  const char* name;
  bool tcp;
  uint8_t rcode;
};

struct Result {
  double ns_per_lookup;
  uint64_t lookups_reported;
  uint64_t names;
};

Result Run(const Scenario& sc, uint64_t lookups) {
  std::vector<Bytes> queries, answers;
  for (size_t i = 0; i < kTemplates; i++) {
    uint16_t id = static_cast<uint16_t>(i * 7919);
    uint16_t port = static_cast<uint16_t>(32768 + i);
    std::string host = "host" + std::to_string(i) + ".svc.example.com";
    Msg q;
    q.id = id;
    q.questions = {{host, dns::kTypeA}};
    Msg a = q;
    a.qr = true;
    a.rcode = sc.rcode;
    if (sc.rcode == 0) {
      std::string edge = "e" + std::to_string(i) + ".cdn.example.net";
      a.answers = {{host, dns::kTypeCname, edge, 60},
                   {edge, dns::kTypeA, "10." + std::to_string(i >> 8) + "." + std::to_string(i & 255) + ".1", 60},
                   {edge, dns::kTypeA, "10." + std::to_string(i >> 8) + "." + std::to_string(i & 255) + ".2", 60}};
    }
    Pkt pq;
    pq.src = "10.201.3.1";
    pq.dst = "10.201.3.2";
    pq.sport = port;
    pq.dport = 53;
    pq.egress = true;
    pq.tcp = sc.tcp;
    pq.payload = sc.tcp ? TcpFramed(Build(q)) : Build(q);
    Pkt pa;
    pa.src = pq.dst;
    pa.dst = pq.src;
    pa.sport = 53;
    pa.dport = port;
    pa.tcp = sc.tcp;
    pa.payload = sc.tcp ? TcpFramed(Build(a)) : Build(a);
    queries.push_back(Record(pq));
    answers.push_back(Record(pa));
  }
  DnsCollector::Options opts;
  opts.max_tcp_streams = 2 * kTemplates;
  DnsCollector c(opts);
  std::vector<dke_dnsflow_stat> stats;
  std::vector<dke_dns_name> names;
  stats.reserve(1024);
  names.reserve(kTemplates * 2);
  uint64_t reported = 0, named = 0;
  uint64_t t = 1'000'000'000;
  double t0 = CpuSeconds();
  for (uint64_t i = 0; i < lookups; i++) {
    Bytes& q = queries[i % kTemplates];
    Bytes& a = answers[i % kTemplates];
    uint64_t sent = t;
    uint64_t got = t + 1'000'000 + (i & 0xffff) * 10;
    std::memcpy(q.data() + offsetof(dke_dns_event, ktime_ns), &sent, 8);
    std::memcpy(a.data() + offsetof(dke_dns_event, ktime_ns), &got, 8);
    if (sc.tcp) {
      // Each stream goes on where its last message ended.
      uint32_t seq = static_cast<uint32_t>((i / kTemplates) * (q.size() - sizeof(dke_dns_event)));
      std::memcpy(q.data() + offsetof(dke_dns_event, tcp_seq), &seq, 4);
      seq = static_cast<uint32_t>((i / kTemplates) * (a.size() - sizeof(dke_dns_event)));
      std::memcpy(a.data() + offsetof(dke_dns_event, tcp_seq), &seq, 4);
    }
    c.OnEvent(q.data(), q.size());
    c.OnEvent(a.data(), a.size());
    t += 20'000;  // 50k lookups per second of kernel time
    if ((i & 0x3ff) == 0x3ff) {  // a ring-buffer poll
      names.clear();
      c.TakeNames(&names);
      named += names.size();
    }
    if ((i & 0xffff) == 0xffff) {
      stats.clear();
      c.Collect(t, &stats);
      for (const auto& s : stats) reported += s.count;
    }
  }
  stats.clear();
  c.Collect(t, &stats);
  for (const auto& s : stats) reported += s.count;
  names.clear();
  c.TakeNames(&names);
  named += names.size();
  double elapsed = CpuSeconds() - t0;
  auto st = c.stats();
  if (reported != lookups || st.unmatched_answers || st.not_dns || st.malformed || st.tcp_stream_gaps) {
    std::fprintf(stderr, "%s: reported %" PRIu64 " of %" PRIu64 " lookups (unmatched %" PRIu64 ", not dns %" PRIu64 ", gaps %" PRIu64 ")\n",
                 sc.name, reported, lookups, st.unmatched_answers, st.not_dns, st.tcp_stream_gaps);
    std::exit(1);
  }
  return {elapsed * 1e9 / static_cast<double>(lookups), reported, named};
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t lookups = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  if (argc > 2) kTemplates = std::max<size_t>(1, std::strtoull(argv[2], nullptr, 10));
  const Scenario scenarios[] = {{"udp_cname_2a", false, 0}, {"tcp_cname_2a", true, 0}, {"udp_nxdomain", false, 3}};
  std::string json = "{\"lookups\":" + std::to_string(lookups) + ",\"distinct\":" + std::to_string(kTemplates);
  for (const Scenario& sc : scenarios) {
    Result r = Run(sc, lookups);
    std::printf("%-14s %8.1f ns CPU per lookup (query + answer), %" PRIu64 " lookups reported, %" PRIu64 " names sent\n",
                sc.name, r.ns_per_lookup, r.lookups_reported, r.names);
    char buf[128];
    std::snprintf(buf, sizeof(buf), ",\"%s_ns_per_lookup\":%.1f", sc.name, r.ns_per_lookup);
    json += buf;
  }
  std::printf("%s}\n", json.c_str());
  return 0;
}
