// Placeholder until the native DNS module lands (same API).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "frame.h"

namespace dke {

class DnsCollector {
 public:
  struct Options {
    std::vector<uint16_t> dns_ports;
    uint64_t timeout_ns = 0;
    uint64_t grace_ns = 0;
    size_t max_pending = 0;
    size_t max_groups = 0;
    size_t max_tcp_streams = 0;
  };
  struct Stats {
    uint64_t malformed = 0, pending_shed = 0, groups_shed = 0, tcp_streams_shed = 0, tcp_stream_gaps = 0,
             unmatched_answers = 0, repeated_queries = 0;
  };
  explicit DnsCollector(Options o) : opts_(std::move(o)) {}
  void OnEvent(const void*, size_t) {}
  void Collect(uint64_t, std::vector<dke_dnsflow_stat>*) {}
  void TakeNames(std::vector<dke_dns_name>*) {}
  Stats stats() const { return {}; }

 private:
  Options opts_;
};

}  // namespace dke
