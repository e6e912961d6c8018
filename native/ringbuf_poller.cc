#include "ringbuf_poller.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

namespace dke {
namespace {
constexpr int kPollTimeoutMs = 100;
// The BPF side wakes us only past a fill threshold; a poll timeout followed by
// consume() picks up the rest, so latency is bounded by the timeout.
constexpr size_t kMaxBatchBytes = 256 * 1024;
constexpr size_t kMaxQueuedBatches = 64;
}  // namespace

RingbufPoller::RingbufPoller(Napi::Env env, int map_fd, size_t record_size, Napi::Function on_batch)
    : record_size_(record_size) {
  rb_ = ring_buffer__new(map_fd, &RingbufPoller::OnRecord, this, nullptr);
  if (!rb_) return;
  tsfn_ = Napi::ThreadSafeFunction::New(env, on_batch, "dke-ringbuf", kMaxQueuedBatches, 1);
  thread_ = std::thread(&RingbufPoller::Run, this);
}

RingbufPoller::~RingbufPoller() { Stop(); }

void RingbufPoller::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (rb_) {
    tsfn_.Release();
    ring_buffer__free(rb_);
    rb_ = nullptr;
  }
}

int RingbufPoller::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<RingbufPoller*>(ctx);
  auto* p = static_cast<uint8_t*>(data);
  if (self->record_size_ == 0) {
    const uint32_t len = static_cast<uint32_t>(size);
    const uint8_t prefix[4] = {static_cast<uint8_t>(len), static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len >> 16),
                               static_cast<uint8_t>(len >> 24)};
    self->batch_.insert(self->batch_.end(), prefix, prefix + 4);
  } else if (size != self->record_size_) {
    return 0;  // layout mismatch: never forward garbage
  }
  self->batch_.insert(self->batch_.end(), p, p + size);
  if (self->batch_.size() >= kMaxBatchBytes) self->Flush();
  return 0;
}

void RingbufPoller::Flush() {
  if (batch_.empty()) return;
  auto* payload = new std::vector<uint8_t>(std::move(batch_));
  batch_.clear();
  napi_status st = tsfn_.BlockingCall(payload, [](Napi::Env env, Napi::Function fn, std::vector<uint8_t>* data) {
    if (env != nullptr && fn != nullptr) {
      auto buf = Napi::Buffer<uint8_t>::Copy(env, data->data(), data->size());
      fn.Call({buf});
    }
    delete data;
  });
  if (st != napi_ok) {
    delete payload;  // napi_closing: the environment is going away
    stop_.store(true);
  }
}

void RingbufPoller::Run() {
  while (!stop_.load()) {
    int n = ring_buffer__poll(rb_, kPollTimeoutMs);
    if (n == -EINTR) continue;
    if (n < 0) break;
    ring_buffer__consume(rb_);
    Flush();
  }
}

}  // namespace dke
