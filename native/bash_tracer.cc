#include "bash_tracer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "bash.h"
#include "bash.skel.h"
#include "bpf_common.h"
#include "errors.h"
#include "libbpf_log.h"

namespace dke {
namespace {

static_assert(sizeof(dke_bash_line) == 4128, "dke_bash_line layout changed: update src/bash/record.ts");

// Our uapi headers are Linux 6.1's; uprobe_multi (6.6) is spelled out here.
constexpr int kAttachUprobeMulti = 48;  // BPF_TRACE_UPROBE_MULTI
constexpr uint32_t kUprobeMultiReturn = 1;  // BPF_F_UPROBE_MULTI_RETURN
struct UprobeMultiLinkCreate {  // union bpf_attr, link_create member
  uint32_t prog_fd;
  uint32_t target_fd;
  uint32_t attach_type;
  uint32_t flags;
  uint64_t path;
  uint64_t offsets;
  uint64_t ref_ctr_offsets;
  uint64_t cookies;
  uint32_t cnt;
  uint32_t multi_flags;
  uint32_t pid;
};
static_assert(offsetof(UprobeMultiLinkCreate, path) == 16 && offsetof(UprobeMultiLinkCreate, pid) == 56,
              "link_create.uprobe_multi layout");
static_assert(sizeof(UprobeMultiLinkCreate) <= sizeof(union bpf_attr), "bpf_attr too small");

#define DKE_BASH_FIELD(field) \
  l.Set(#field, Napi::Number::New(env, static_cast<double>(offsetof(dke_bash_line, field))))

Napi::Object Layout(Napi::Env env) {
  Napi::Object l = Napi::Object::New(env);
  l.Set("size", static_cast<double>(sizeof(dke_bash_line)));
  DKE_BASH_FIELD(ktime_ns);
  DKE_BASH_FIELD(pid);
  DKE_BASH_FIELD(uid);
  DKE_BASH_FIELD(len);
  DKE_BASH_FIELD(flags);
  DKE_BASH_FIELD(line);
  l.Set("lineMax", static_cast<double>(DKE_BASH_LINE_MAX));
  l.Set("flagTruncated", static_cast<double>(DKE_BASH_TRUNCATED));
  l.Set("telemetryMax", static_cast<double>(DKE_BASH_TEL_MAX));
  return l;
}

}  // namespace

Napi::Function BashTracer::Define(Napi::Env env) {
  Napi::Function ctor = DefineClass(env, "BashTracer",
                                    {
                                        InstanceMethod<&BashTracer::Attach>("attach"),
                                        InstanceMethod<&BashTracer::ReadTelemetry>("readTelemetry"),
                                        InstanceMethod<&BashTracer::StartEvents>("startEvents"),
                                        InstanceMethod<&BashTracer::Close>("close"),
                                    });
  ctor.Set("layout", Layout(env));
  return ctor;
}

// new BashTracer({ uprobeMulti }): opens and loads for one way of attaching;
// nothing is attached yet.
BashTracer::BashTracer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BashTracer>(info) {
  Napi::Env env = info.Env();
  multi_ = info[0].As<Napi::Object>().Get("uprobeMulti").ToBoolean();
  ResetLibbpfLog();
  skel_ = bash__open();
  if (!skel_) {
    ThrowErrno(env, "EBPF_LOAD", "opening the bash BPF object failed", errno, LibbpfLogTail());
    return;
  }
  if (multi_)
    bpf_program__set_expected_attach_type(skel_->progs.dke_bash_readline,
                                          static_cast<enum bpf_attach_type>(kAttachUprobeMulti));
  int err = bash__load(skel_);
  if (err) {
    ThrowErrno(env, "EBPF_LOAD", "the kernel refused the bash readline uretprobe program", -err, LibbpfLogTail(),
               "dke_bash_readline");
    Destroy();
  }
}

BashTracer::~BashTracer() { Destroy(); }

void BashTracer::Destroy() {
  if (poller_) {
    poller_->Stop();
    poller_.reset();
  }
  for (bpf_link* l : links_) bpf_link__destroy(l);
  links_.clear();
  for (int fd : link_fds_) close(fd);
  link_fds_.clear();
  if (skel_) {
    bash__destroy(skel_);
    skel_ = nullptr;
  }
}

bool BashTracer::EnsureOpen(Napi::Env env) {
  if (skel_) return true;
  ThrowPlain(env, "EBPF_CLOSED", "the bash tracer is closed");
  return false;
}

// attach(binaryPath, fileOffset) -> { ok, error?, errno? }: the uretprobe on
// the function at that offset of that ELF file (readline, found by JS), for
// every process that runs it. One call per binary so the caller can weigh
// each failure.
Napi::Value BashTracer::Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  std::string path = info[0].ToString();
  uint64_t offset = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
  Napi::Object r = Napi::Object::New(env);
  ResetLibbpfLog();
  bool ok = false;
  int err = 0;
  if (multi_) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    auto* a = reinterpret_cast<UprobeMultiLinkCreate*>(&attr);
    a->prog_fd = bpf_program__fd(skel_->progs.dke_bash_readline);
    a->attach_type = kAttachUprobeMulti;
    a->path = reinterpret_cast<uint64_t>(path.c_str());
    a->offsets = reinterpret_cast<uint64_t>(&offset);
    a->cnt = 1;
    a->multi_flags = kUprobeMultiReturn;
    int fd = static_cast<int>(syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr)));
    ok = fd >= 0;
    if (ok) link_fds_.push_back(fd);
    else err = errno;
  } else {
    bpf_link* link = bpf_program__attach_uprobe(skel_->progs.dke_bash_readline, true, -1, path.c_str(), offset);
    ok = link != nullptr;
    if (ok) links_.push_back(link);
    else err = errno;
  }
  r.Set("ok", ok);
  if (!ok) {
    r.Set("error", DescribeAttachError(err));
    r.Set("errno", Napi::Number::New(env, err));
  }
  return r;
}

// readTelemetry() -> number[]: per-CPU counters of enum dke_bash_telemetry, summed.
Napi::Value BashTracer::ReadTelemetry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  return SumPerCpuCounters(env, bpf_map__fd(skel_->maps.bash_telemetry), DKE_BASH_TEL_MAX);
}

// startEvents(onBatch: (records: Buffer) => void): concatenated dke_bash_line records.
Napi::Value BashTracer::StartEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  if (poller_) {
    ThrowPlain(env, "EINVAL", "events already started");
    return env.Undefined();
  }
  poller_ = StartPoller(env, bpf_map__fd(skel_->maps.bash_lines), sizeof(dke_bash_line), info[0], "bash line");
  return env.Undefined();
}

Napi::Value BashTracer::Close(const Napi::CallbackInfo& info) {
  Destroy();
  return info.Env().Undefined();
}

}  // namespace dke
