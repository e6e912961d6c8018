// The ebpf-bash BPF object as a JS class: open+load -> attach the readline
// uretprobe to each bash binary -> stream lines -> close. No decoding here:
// records leave as raw bytes whose layout (bpf/bash.h) is exported to JS as
// the constructor's static `layout`.
//
// Two ways to attach, chosen at construction: a uprobe_multi BPF link
// (Linux >= 6.6; needs CAP_BPF + CAP_PERFMON) or a perf-event uprobe (any
// kernel, but since the fix for CVE-2025-38466 it needs CAP_SYS_ADMIN). The
// program must be loaded for one or the other, so JS picks and falls back.
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "ringbuf_poller.h"

struct bash;
struct bpf_link;

namespace dke {

class BashTracer : public Napi::ObjectWrap<BashTracer> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit BashTracer(const Napi::CallbackInfo& info);
  ~BashTracer() override;

 private:
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value ReadTelemetry(const Napi::CallbackInfo& info);
  Napi::Value StartEvents(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  bool EnsureOpen(Napi::Env env);
  void Destroy();

  bash* skel_ = nullptr;
  bool multi_ = false;
  std::vector<bpf_link*> links_;
  std::vector<int> link_fds_;  // uprobe_multi links (libbpf 1.1 has no API for them)
  std::unique_ptr<RingbufPoller> poller_;
};

}  // namespace dke
