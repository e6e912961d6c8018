// The dnsflow BPF object as a JS class: open -> set rodata (ports) -> load ->
// attach the cgroup_skb programs to the cgroup v2 root -> stream packets ->
// close. No parsing here: packets leave as raw variable-size records whose
// header layout (bpf/dns.h) is exported as the constructor's static `layout`.
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "ringbuf_poller.h"

struct dns;
struct bpf_link;

namespace dke {

class DnsTracer : public Napi::ObjectWrap<DnsTracer> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit DnsTracer(const Napi::CallbackInfo& info);
  ~DnsTracer() override;

 private:
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value ReadTelemetry(const Napi::CallbackInfo& info);
  Napi::Value StartEvents(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  bool EnsureOpen(Napi::Env env);
  void Destroy();

  dns* skel_ = nullptr;
  int cgroup_fd_ = -1;
  std::vector<bpf_link*> links_;
  std::unique_ptr<RingbufPoller> poller_;
};

}  // namespace dke
