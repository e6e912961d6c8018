// What main.cc drives: one plugin's BPF object in one loader process.
#pragma once
#include <cstdint>

namespace dke {

class LoaderPlugin {
 public:
  virtual ~LoaderPlugin() = default;
  // Loads and attaches; sends READY, or FATAL and returns false.
  virtual bool Open() = 0;
  // A ring buffer's epoll fd to wait on (-1: none); Drain() on readiness and on a timer.
  virtual int PollFd() const = 0;
  virtual void Drain() = 0;
  // Sends what the collect asks for, then DKE_FRAME_COLLECTED.
  virtual void Collect(uint64_t seq, uint32_t what) = 0;
  virtual void Commit(uint64_t seq) { (void)seq; }
  virtual void Resume(uint64_t last_durable_seq) { (void)last_durable_seq; }
  // Detaches; `unpin` also removes pins (a clean stop).
  virtual void Close(bool unpin) = 0;
};

}  // namespace dke
