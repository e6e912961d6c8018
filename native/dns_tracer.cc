#include "dns_tracer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "dns.h"
#include "dns.skel.h"
#include "bpf_common.h"
#include "errors.h"
#include "libbpf_log.h"

namespace dke {
namespace {

static_assert(offsetof(dke_dns_event, payload) == 64, "dke_dns_event layout changed: update src/dnsflow/record.ts");

#define DKE_DNS_FIELD(field) \
  l.Set(#field, Napi::Number::New(env, static_cast<double>(offsetof(dke_dns_event, field))))

Napi::Object Layout(Napi::Env env) {
  Napi::Object l = Napi::Object::New(env);
  DKE_DNS_FIELD(ktime_ns);
  DKE_DNS_FIELD(saddr);
  DKE_DNS_FIELD(daddr);
  DKE_DNS_FIELD(sport);
  DKE_DNS_FIELD(dport);
  DKE_DNS_FIELD(family);
  DKE_DNS_FIELD(proto);
  DKE_DNS_FIELD(flags);
  DKE_DNS_FIELD(tcp_seq);
  DKE_DNS_FIELD(wire_len);
  DKE_DNS_FIELD(cap_len);
  DKE_DNS_FIELD(payload);
  l.Set("payloadMax", static_cast<double>(DKE_DNS_PAYLOAD_MAX));
  l.Set("portsMax", static_cast<double>(DKE_DNS_PORTS_MAX));
  l.Set("flagEgress", static_cast<double>(DKE_DNS_EGRESS));
  l.Set("telemetryMax", static_cast<double>(DKE_DNS_TEL_MAX));
  return l;
}

}  // namespace

Napi::Function DnsTracer::Define(Napi::Env env) {
  Napi::Function ctor = DefineClass(env, "DnsTracer",
                                    {
                                        InstanceMethod<&DnsTracer::Attach>("attach"),
                                        InstanceMethod<&DnsTracer::ReadTelemetry>("readTelemetry"),
                                        InstanceMethod<&DnsTracer::StartEvents>("startEvents"),
                                        InstanceMethod<&DnsTracer::Close>("close"),
                                    });
  ctor.Set("layout", Layout(env));
  return ctor;
}

// new DnsTracer({ ports: number[], ipv6Disabled }): opens and loads; nothing
// is attached yet. Ports are validated in JS (1..65535, at most portsMax).
DnsTracer::DnsTracer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DnsTracer>(info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info[0].As<Napi::Object>();
  Napi::Array ports = opts.Get("ports").As<Napi::Array>();
  bool ipv6_disabled = opts.Get("ipv6Disabled").ToBoolean();

  ResetLibbpfLog();
  skel_ = dns__open();
  if (!skel_) {
    ThrowErrno(env, "EBPF_LOAD", "opening the dns BPF object failed", errno, LibbpfLogTail());
    return;
  }
  for (uint32_t i = 0; i < DKE_DNS_PORTS_MAX; i++) {
    skel_->rodata->dke_dns_ports[i] =
        i < ports.Length() ? static_cast<__u16>(ports.Get(i).ToNumber().Uint32Value()) : 0;
  }
  skel_->rodata->dke_dns_ipv6_disabled = ipv6_disabled ? 1 : 0;
  int err = dns__load(skel_);
  if (err) {
    std::string prog = LibbpfFailedProgram();
    std::string what = prog.empty() ? "loading the dns BPF programs failed" : "the kernel refused BPF program " + prog;
    ThrowErrno(env, "EBPF_LOAD", what, -err, LibbpfLogTail(), prog);
    Destroy();
  }
}

DnsTracer::~DnsTracer() { Destroy(); }

void DnsTracer::Destroy() {
  if (poller_) {
    poller_->Stop();
    poller_.reset();
  }
  for (bpf_link* l : links_) bpf_link__destroy(l);
  links_.clear();
  if (cgroup_fd_ >= 0) {
    close(cgroup_fd_);
    cgroup_fd_ = -1;
  }
  if (skel_) {
    dns__destroy(skel_);
    skel_ = nullptr;
  }
}

bool DnsTracer::EnsureOpen(Napi::Env env) {
  if (skel_) return true;
  ThrowPlain(env, "EBPF_CLOSED", "the dns tracer is closed");
  return false;
}

// attach(cgroupPath) -> [{ program, section, ok, error? }]: both directions on
// that cgroup v2 directory (the root sees every process). Links are not
// pinned: nothing counts in the kernel, so nothing needs to outlive us.
Napi::Value DnsTracer::Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  std::string cgroup_path = info[0].ToString();
  Napi::Array out = Napi::Array::New(env);
  uint32_t idx = 0;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("program", bpf_program__name(prog));
    r.Set("section", bpf_program__section_name(prog));
    ResetLibbpfLog();
    int err = 0;
    bpf_link* link = AttachToCgroup(prog, cgroup_path, &cgroup_fd_, &err);
    r.Set("ok", link != nullptr);
    if (link) links_.push_back(link);
    else r.Set("error", DescribeAttachError(err));
    out.Set(idx++, r);
  }
  return out;
}

// readTelemetry() -> number[]: per-CPU counters of enum dke_dns_telemetry, summed.
Napi::Value DnsTracer::ReadTelemetry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  return SumPerCpuCounters(env, bpf_map__fd(skel_->maps.dns_telemetry), DKE_DNS_TEL_MAX);
}

// startEvents(onBatch: (records: Buffer) => void): [u32 length][dke_dns_event
// header + payload] records, concatenated.
Napi::Value DnsTracer::StartEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  if (poller_) {
    ThrowPlain(env, "EINVAL", "events already started");
    return env.Undefined();
  }
  poller_ = StartPoller(env, bpf_map__fd(skel_->maps.dns_events), 0, info[0], "dns packet");
  return env.Undefined();
}

Napi::Value DnsTracer::Close(const Napi::CallbackInfo& info) {
  Destroy();
  return info.Env().Undefined();
}

}  // namespace dke
