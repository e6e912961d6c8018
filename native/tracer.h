// The netflow BPF object as a JS class: open -> set rodata -> load -> attach
// -> read maps / stream close events -> close. No aggregation or parsing here:
// records leave as raw bytes whose layout (bpf/netflow.h) is exported to JS.
#pragma once
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "ringbuf_poller.h"

struct netflow;
struct bpf_map;
struct bpf_link;

namespace dke {

class Tracer : public Napi::ObjectWrap<Tracer> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Tracer(const Napi::CallbackInfo& info);
  ~Tracer() override;

 private:
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value DumpMap(const Napi::CallbackInfo& info);
  Napi::Value LookupAndDelete(const Napi::CallbackInfo& info);
  Napi::Value ReadTelemetry(const Napi::CallbackInfo& info);
  Napi::Value StartEvents(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value DeleteKeys(const Napi::CallbackInfo& info);
  Napi::Value Unpin(const Napi::CallbackInfo& info);
  Napi::Value PinInfo(const Napi::CallbackInfo& info);

  bpf_map* MapByName(Napi::Env env, const Napi::Value& name);
  bool EnsureOpen(Napi::Env env);
  void Destroy();

  netflow* skel_ = nullptr;
  std::string cgroup_path_;
  // Where maps and links are pinned ("" = not pinned). Named after a hash of
  // the BPF object, so a different build never reuses incompatible pins.
  std::string pin_dir_;
  bool maps_reused_ = false;
  int cgroup_fd_ = -1;
  std::vector<bpf_link*> links_;
  std::unique_ptr<RingbufPoller> poller_;
};

}  // namespace dke
