// dnsflow in the loader: ring-buffer records of DNS packets (bpf/dns.h) in,
// one collect's lookups aggregated by key and the addresses local clients
// resolved out (native/frame.h). Packets -> DNS messages (TCP reassembled) ->
// query/answer pairs -> aggregation groups; client-side answers also name
// addresses. Replaces src/dnsflow/{parser,pairing,tcp,domains,aggregator,
// dnsflow}.ts on the loader side, with the same rules plus:
//  - the network namespace is part of every key (two containers using the
//    same addresses, port and id never pair with each other);
//  - a resolver on this host (DKE_DNS_LOCAL_SERVER: its query arrives, its
//    answer leaves) is paired and reported apart, as side SERVER, so a client
//    and a resolver both on this host give one stat for each side.
// A query is timed from when it left (or, on the server side, fully arrived)
// to when its answer fully arrived (or started to leave); a query repeated
// while pending keeps its first send; the query alone is never a sample.
//
// Everything is bounded and allocated at construction: the per-packet path
// takes no lock and allocates nothing. Not thread-safe: one thread drains the
// ring buffer and collects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "frame.h"

namespace dke {

class DnsCollector {
 public:
  struct Options {
    // Ports of DNS servers (--dns-ports): kept in stats, any other port is 0.
    std::vector<uint16_t> dns_ports{53};
    // A query unanswered this long is a lookup with rcode -1 (--dns-timeout).
    uint64_t timeout_ns = 6'000'000'000ull;
    // Packets reach us up to a poll period after the kernel saw them: a query
    // is declared unanswered only this long after its timeout.
    uint64_t grace_ns = 1'000'000'000ull;
    size_t max_pending = 10'000;  // queries waiting for an answer; new ones beyond are shed
    size_t max_groups = 10'000;   // stats per collect; lookups of further keys are shed
    size_t max_tcp_streams = 1024;
    size_t tcp_max_message_bytes = 4096;  // kept of one DNS-over-TCP message
    uint64_t tcp_idle_ns = 30'000'000'000ull;
    size_t max_known_names = 16'384;  // addresses remembered as sent
    size_t max_queued_names = 4096;   // names held between TakeNames calls
    // An address seen again with the same domain is sent again after its
    // TTL, and at least this often: keep it below the daemon's TTL cap so
    // its cache never expires a name clients still look up.
    uint32_t name_resend_max_s = 600;
  };

  explicit DnsCollector(Options opts);
  ~DnsCollector();
  DnsCollector(const DnsCollector&) = delete;
  DnsCollector& operator=(const DnsCollector&) = delete;

  // One ring-buffer record: struct dke_dns_event and its cap_len payload
  // bytes (len may be larger: the reservation's size). Never throws; a
  // record that is not one is counted as malformed.
  void OnEvent(const void* rec, size_t len) noexcept;

  // Expires queries unanswered for timeout + grace at now_ktime_ns
  // (CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns) as rcode -1, appends
  // the stats of lookups completed since the last Collect and starts anew.
  void Collect(uint64_t now_ktime_ns, std::vector<dke_dnsflow_stat>* out);

  // Appends the names learnt since the last call (address -> domain): an
  // address is sent when first seen, when its domain changes and again after
  // its TTL (see name_resend_max_s).
  void TakeNames(std::vector<dke_dns_name>* out);

  // Cumulative since construction.
  struct Stats {
    uint64_t malformed;          // records that are not a dke_dns_event
    uint64_t pending_shed;       // queries dropped: the pending table was full
    uint64_t groups_shed;        // lookups dropped: max_groups stats were open
    uint64_t tcp_streams_shed;   // TCP segments dropped: the stream table was full of busy streams
    uint64_t tcp_stream_gaps;    // TCP streams given up: a hole hid a message boundary
    uint64_t unmatched_answers;  // answers to no pending query (it predates us, timed out or was shed)
    uint64_t repeated_queries;   // a query sent again while pending (kept once, from its first send)
    uint64_t not_dns;            // payloads that are not a query or answer of their direction, or a query without a question
    uint64_t names_shed;         // names dropped: max_queued_names were waiting for TakeNames
    uint64_t packets;            // records seen
  };
  Stats stats() const;
  size_t pending_queries() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dke
