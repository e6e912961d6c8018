// DNS over TCP (RFC 7766): each message is prefixed by its 2-byte length and
// may span segments, or share one. Segments arrive as captured at the socket
// (retransmissions included, ingress possibly out of order) with at most
// DKE_DNS_PAYLOAD_MAX bytes of each, so this follows every stream by sequence
// number: bytes already seen are skipped, bytes not captured leave a hole in
// the message (the parser reads what came before it), and a hole that hides a
// length prefix loses the stream (counted as a gap), which is then ignored
// until it goes idle. Streams and message buffers are bounded and allocated
// once; a new stream that finds the table full first takes the place of an
// idle stream, then of the longest-unused one that sits between messages
// (nothing is lost by forgetting it), and only then is shed and counted.
// Same rules as src/dnsflow/tcp.ts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "flat_map.h"

namespace dke::dns {

// One direction of one connection.
struct TcpStreamKey {
  uint8_t saddr[16];
  uint8_t daddr[16];
  uint32_t netns;
  uint16_t sport;
  uint16_t dport;
  uint16_t family;
  uint16_t pad0;
  uint32_t pad1;
};

struct TcpSegment {
  const uint8_t* data;  // the captured prefix of the payload
  uint32_t cap_len;
  uint32_t wire_len;  // payload bytes on the wire
  uint32_t seq;       // sequence number of the first payload byte
  uint64_t ktime_ns;
};

class TcpMessageSink {
 public:
  // A complete message: its bytes up to its end, its first hole or the
  // buffer bound; first_ns/last_ns: kernel times of the segments that carried
  // its first and last byte. The bytes are valid during the call only.
  virtual void OnTcpMessage(const uint8_t* msg, size_t len, bool holes, uint64_t first_ns, uint64_t last_ns) = 0;

 protected:
  ~TcpMessageSink() = default;
};

class TcpReassembler {
 public:
  struct Options {
    size_t max_streams = 1024;
    // Bytes kept of one message; the parser needs the header and the answers.
    size_t max_message_bytes = 4096;
    // A stream without a segment for this long is forgotten.
    uint64_t idle_ns = 30'000'000'000ull;
  };

  TcpReassembler(const Options& opts, uint64_t seed);

  void Push(const TcpStreamKey& key, const TcpSegment& seg, TcpMessageSink* sink);
  // Forgets streams idle since before now_ns - idle_ns.
  void Expire(uint64_t now_ns);

  size_t size() const { return streams_.size(); }
  // Segments of new streams dropped because the table was full of busy streams.
  uint64_t shed() const { return shed_; }
  // Streams given up after a hole hid a message boundary.
  uint64_t gaps() const { return gaps_; }

 private:
  struct Stream {
    uint32_t next;  // sequence number of the next byte to consume
    uint32_t buf;   // index of its message buffer
    uint64_t first_ns;
    uint64_t last_ns;
    uint32_t msg_len;
    uint32_t got;     // body bytes consumed (captured or holes)
    uint32_t stored;  // body bytes kept in the buffer
    uint8_t prefix_got;  // length-prefix bytes read (0, 1), 2 while in a body
    uint8_t prefix_high;
    bool holes;
    bool lost;
  };

  bool MakeRoom(uint64_t now_ns);
  void ConsumeData(Stream* s, const uint8_t* p, size_t n, uint64_t ktime_ns, TcpMessageSink* sink);
  void ConsumeHole(Stream* s, uint64_t count, uint64_t ktime_ns, TcpMessageSink* sink);
  void Complete(Stream* s, uint64_t ktime_ns, TcpMessageSink* sink);
  static void Reset(Stream* s);
  void Lose(Stream* s);
  uint8_t* Buffer(const Stream& s) { return arena_.get() + size_t{s.buf} * opts_.max_message_bytes; }

  Options opts_;
  FlatMap<TcpStreamKey, Stream> streams_;
  // max_streams buffers of max_message_bytes, untouched (not resident) until used.
  std::unique_ptr<uint8_t[]> arena_;
  std::vector<uint32_t> free_bufs_;
  uint64_t shed_ = 0;
  uint64_t gaps_ = 0;
};

}  // namespace dke::dns
