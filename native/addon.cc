// The addon: what the daemon itself needs natively (privileges, kernel
// probing). Everything that touches BPF lives in dke-loader (native/loader).
#include <napi.h>

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cstddef>

#include "libbpf_log.h"
#include "privileges.h"

namespace dke {
namespace {

// probeKernel() -> { btf: boolean, btfError?: string, tracepoints: { name: boolean } }
// Answers from the kernel's own BTF which typed tracepoints exist, so the
// loader can name what is missing before libbpf fails with a raw errno.
Napi::Value ProbeKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Object tps = Napi::Object::New(env);
  ResetLibbpfLog();
  struct btf* btf = btf__load_vmlinux_btf();
  out.Set("btf", btf != nullptr);
  if (!btf) out.Set("btfError", LibbpfLogTail(2));
  static const char* kTracepoints[] = {"inet_sock_set_state", "sock_send_length", "sock_recv_length", "tcp_destroy_sock",
                                       "tcp_retransmit_skb"};
  for (const char* tp : kTracepoints) {
    bool found = false;
    if (btf) {
      std::string type = std::string("btf_trace_") + tp;
      found = btf__find_by_name_kind(btf, type.c_str(), BTF_KIND_TYPEDEF) > 0;
    }
    tps.Set(tp, found);
  }
  out.Set("tracepoints", tps);
  if (btf) btf__free(btf);
  return out;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfLogger();
  exports.Set("probeKernel", Napi::Function::New(env, ProbeKernel));
  RegisterPrivileges(env, exports);
  return exports;
}

}  // namespace dke

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return dke::Init(env, exports); }

NODE_API_MODULE(dke_native, InitAddon)
