// Drains a BPF ring buffer on its own thread and hands batches of raw records
// to JS through a bounded thread-safe function, so the event loop never waits
// on the kernel. When JS falls behind the thread blocks, the ring fills and the
// BPF side counts what it could not reserve (telemetry), which is the signal
// we want rather than unbounded memory here.
#pragma once
#include <napi.h>

#include <atomic>
#include <thread>
#include <vector>

struct ring_buffer;

namespace dke {

class RingbufPoller {
 public:
  // `record_size` is the fixed size of one record; records are concatenated
  // and a record of any other size is dropped. `record_size` 0 is for
  // variable-size records: each is delivered as a u32 little-endian length
  // followed by that many bytes.
  RingbufPoller(Napi::Env env, int map_fd, size_t record_size, Napi::Function on_batch);
  ~RingbufPoller();
  RingbufPoller(const RingbufPoller&) = delete;
  RingbufPoller& operator=(const RingbufPoller&) = delete;

  bool ok() const { return rb_ != nullptr; }
  // Stops and joins the thread; idempotent. Records still queued are dropped.
  void Stop();

 private:
  static int OnRecord(void* ctx, void* data, size_t size);
  void Run();
  void Flush();

  ring_buffer* rb_ = nullptr;
  size_t record_size_;
  std::vector<uint8_t> batch_;
  std::atomic<bool> stop_{false};
  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace dke
