// Entry point of the native loader: the Tracer class, kernel probing and the
// record layouts of bpf/netflow.h (so JS decodes by the compiler's offsets).
#include <napi.h>

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cstddef>

#include "bash_tracer.h"
#include "dns_tracer.h"
#include "libbpf_log.h"
#include "netflow.h"
#include "privileges.h"
#include "tracer.h"

namespace dke {
namespace {

static_assert(sizeof(dke_tuple) == 48, "dke_tuple layout changed: update src/loader/layout.ts");
static_assert(sizeof(dke_tcp_conn) == 112, "dke_tcp_conn layout changed: update src/loader/layout.ts");
static_assert(sizeof(dke_udp_key) == 56, "dke_udp_key layout changed: update src/loader/layout.ts");
static_assert(sizeof(dke_udp_stats) == 24, "dke_udp_stats layout changed: update src/loader/layout.ts");
static_assert(sizeof(dke_sock_owner) == 24, "dke_sock_owner layout changed: update src/loader/layout.ts");

#define DKE_FIELD(obj, type, field) obj.Set(#field, Napi::Number::New(env, offsetof(type, field)))

Napi::Object Layout(Napi::Env env) {
  Napi::Object l = Napi::Object::New(env);
  Napi::Object tuple = Napi::Object::New(env);
  tuple.Set("size", sizeof(dke_tuple));
  DKE_FIELD(tuple, dke_tuple, local_addr);
  DKE_FIELD(tuple, dke_tuple, remote_addr);
  DKE_FIELD(tuple, dke_tuple, local_port);
  DKE_FIELD(tuple, dke_tuple, remote_port);
  DKE_FIELD(tuple, dke_tuple, family);
  DKE_FIELD(tuple, dke_tuple, proto);
  DKE_FIELD(tuple, dke_tuple, direction);
  DKE_FIELD(tuple, dke_tuple, netns);
  l.Set("tuple", tuple);

  Napi::Object tcp = Napi::Object::New(env);
  tcp.Set("size", sizeof(dke_tcp_conn));
  DKE_FIELD(tcp, dke_tcp_conn, cookie);
  DKE_FIELD(tcp, dke_tcp_conn, bytes_sent);
  DKE_FIELD(tcp, dke_tcp_conn, bytes_received);
  DKE_FIELD(tcp, dke_tcp_conn, pid);
  DKE_FIELD(tcp, dke_tcp_conn, total_retrans);
  DKE_FIELD(tcp, dke_tcp_conn, srtt_us);
  DKE_FIELD(tcp, dke_tcp_conn, rttvar_us);
  DKE_FIELD(tcp, dke_tcp_conn, established);
  DKE_FIELD(tcp, dke_tcp_conn, closed);
  DKE_FIELD(tcp, dke_tcp_conn, comm);
  l.Set("tcpConn", tcp);

  Napi::Object udpKey = Napi::Object::New(env);
  udpKey.Set("size", sizeof(dke_udp_key));
  DKE_FIELD(udpKey, dke_udp_key, cookie);
  l.Set("udpKey", udpKey);

  Napi::Object udpStats = Napi::Object::New(env);
  udpStats.Set("size", sizeof(dke_udp_stats));
  DKE_FIELD(udpStats, dke_udp_stats, bytes_sent);
  DKE_FIELD(udpStats, dke_udp_stats, bytes_received);
  DKE_FIELD(udpStats, dke_udp_stats, last_seen_ns);
  l.Set("udpStats", udpStats);

  Napi::Object owner = Napi::Object::New(env);
  owner.Set("size", sizeof(dke_sock_owner));
  DKE_FIELD(owner, dke_sock_owner, pid);
  DKE_FIELD(owner, dke_sock_owner, netns);
  DKE_FIELD(owner, dke_sock_owner, comm);
  l.Set("sockOwner", owner);
  l.Set("telemetryMax", static_cast<double>(DKE_TEL_MAX));
  return l;
}

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
  exports.Set("Tracer", Tracer::Define(env));
  exports.Set("BashTracer", BashTracer::Define(env));
  exports.Set("DnsTracer", DnsTracer::Define(env));
  exports.Set("probeKernel", Napi::Function::New(env, ProbeKernel));
  exports.Set("layout", Layout(env));
  RegisterPrivileges(env, exports);
  return exports;
}

}  // namespace dke

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return dke::Init(env, exports); }

NODE_API_MODULE(dke_native, InitAddon)
