#include "dns_tcp.h"

#include <algorithm>
#include <cstring>

namespace dke::dns {

TcpReassembler::TcpReassembler(const Options& opts, uint64_t seed)
    : opts_(opts),
      streams_(std::max<size_t>(opts.max_streams, 1), seed),
      arena_(new uint8_t[streams_.max_entries() * std::max<size_t>(opts.max_message_bytes, 1)]) {
  opts_.max_streams = streams_.max_entries();
  opts_.max_message_bytes = std::max<size_t>(opts.max_message_bytes, 1);
  free_bufs_.reserve(opts_.max_streams);
  for (size_t i = opts_.max_streams; i > 0; i--) free_bufs_.push_back(static_cast<uint32_t>(i - 1));
}

void TcpReassembler::Expire(uint64_t now_ns) {
  if (now_ns < opts_.idle_ns) return;
  uint64_t cutoff = now_ns - opts_.idle_ns;
  streams_.EraseIf([&](const TcpStreamKey&, Stream& s) {
    if (s.last_ns >= cutoff) return false;
    free_bufs_.push_back(s.buf);
    return true;
  });
  streams_.Compact();
}

// The table is full: idle streams go, else the longest-unused stream that is
// between messages (or lost), whose next segment, if any, starts a new stream.
bool TcpReassembler::MakeRoom(uint64_t now_ns) {
  Expire(now_ns);
  if (!streams_.full()) return true;
  bool found = false;
  TcpStreamKey victim{};
  uint64_t oldest = 0;
  streams_.ForEach([&](const TcpStreamKey& k, const Stream& s) {
    if ((s.prefix_got == 0 || s.lost) && (!found || s.last_ns < oldest)) {
      found = true;
      oldest = s.last_ns;
      victim = k;
    }
  });
  if (!found) return false;
  size_t i = streams_.Find(victim, streams_.Hash(victim));
  free_bufs_.push_back(streams_.ValueAt(i).buf);
  streams_.EraseAt(i);
  return true;
}

void TcpReassembler::Push(const TcpStreamKey& key, const TcpSegment& seg, TcpMessageSink* sink) {
  uint64_t h = streams_.Hash(key);
  bool inserted = false;
  Stream* s = streams_.Insert(key, h, &inserted);
  if (!s) {
    if (!MakeRoom(seg.ktime_ns) || !(s = streams_.Insert(key, h, &inserted))) {
      shed_++;
      return;
    }
  }
  if (inserted) {
    // The first data of a DNS connection is a length prefix.
    s->next = seg.seq;
    s->buf = free_bufs_.back();
    free_bufs_.pop_back();
  }
  s->last_ns = seg.ktime_ns;
  if (s->lost) return;
  uint32_t captured = std::min(seg.cap_len, seg.wire_len);
  int64_t skip = static_cast<int32_t>(s->next - seg.seq);
  if (skip < 0) {
    // Bytes between what we have and this segment never came (or come later, out of order).
    ConsumeHole(s, static_cast<uint64_t>(-skip), seg.ktime_ns, sink);
    skip = 0;
  }
  if (skip >= seg.wire_len) return;  // a retransmission of bytes already consumed
  if (skip < captured) ConsumeData(s, seg.data + skip, captured - skip, seg.ktime_ns, sink);
  uint64_t done = std::max<uint64_t>(static_cast<uint64_t>(skip), captured);
  if (seg.wire_len > done) ConsumeHole(s, seg.wire_len - done, seg.ktime_ns, sink);
}

void TcpReassembler::ConsumeData(Stream* s, const uint8_t* p, size_t n, uint64_t ktime_ns, TcpMessageSink* sink) {
  size_t i = 0;
  while (i < n && !s->lost) {
    if (s->prefix_got == 0 && n - i >= 2) {
      // The common case: a whole message in this segment is handed over in place.
      uint32_t len = (uint32_t{p[i]} << 8) | p[i + 1];
      if (len > 0 && n - i - 2 >= len) {
        sink->OnTcpMessage(p + i + 2, std::min<size_t>(len, opts_.max_message_bytes), false, ktime_ns, ktime_ns);
        i += 2 + len;
        s->next += 2 + len;
        continue;
      }
    }
    if (s->prefix_got < 2) {
      if (s->prefix_got == 0) {
        s->prefix_high = p[i];
        s->prefix_got = 1;
        s->first_ns = ktime_ns;
      } else {
        s->msg_len = (uint32_t{s->prefix_high} << 8) | p[i];
        s->prefix_got = 2;
        s->got = 0;
        if (s->msg_len == 0) Reset(s);  // an empty message: nothing to parse
      }
      i++;
      s->next++;
      continue;
    }
    size_t take = std::min<size_t>(s->msg_len - s->got, n - i);
    if (!s->holes && s->stored < opts_.max_message_bytes) {
      size_t keep = std::min<size_t>(take, opts_.max_message_bytes - s->stored);
      std::memcpy(Buffer(*s) + s->stored, p + i, keep);
      s->stored += static_cast<uint32_t>(keep);
    }
    s->got += static_cast<uint32_t>(take);
    i += take;
    s->next += static_cast<uint32_t>(take);
    if (s->got == s->msg_len) Complete(s, ktime_ns, sink);
  }
}

void TcpReassembler::ConsumeHole(Stream* s, uint64_t count, uint64_t ktime_ns, TcpMessageSink* sink) {
  if (s->prefix_got < 2) {
    Lose(s);
    return;
  }
  uint64_t n = std::min<uint64_t>(s->msg_len - s->got, count);
  s->got += static_cast<uint32_t>(n);
  s->holes = true;
  s->next += static_cast<uint32_t>(n);
  if (s->got == s->msg_len) Complete(s, ktime_ns, sink);
  if (count > n) Lose(s);  // the hole runs on past the next length prefix
}

void TcpReassembler::Complete(Stream* s, uint64_t ktime_ns, TcpMessageSink* sink) {
  sink->OnTcpMessage(Buffer(*s), s->stored, s->holes, s->first_ns, ktime_ns);
  Reset(s);
}

void TcpReassembler::Reset(Stream* s) {
  s->prefix_got = 0;
  s->msg_len = 0;
  s->got = 0;
  s->stored = 0;
  s->holes = false;
}

void TcpReassembler::Lose(Stream* s) {
  if (!s->lost) gaps_++;
  s->lost = true;
}

}  // namespace dke::dns
