#include "tracer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "bpf_common.h"
#include "errors.h"
#include "libbpf_log.h"
#include "netflow.h"
#include "netflow.skel.h"

namespace dke {

Napi::Function Tracer::Define(Napi::Env env) {
  return DefineClass(env, "Tracer",
                     {
                         InstanceMethod<&Tracer::Attach>("attach"),
                         InstanceMethod<&Tracer::DumpMap>("dumpMap"),
                         InstanceMethod<&Tracer::LookupAndDelete>("lookupAndDelete"),
                         InstanceMethod<&Tracer::ReadTelemetry>("readTelemetry"),
                         InstanceMethod<&Tracer::StartEvents>("startEvents"),
                         InstanceMethod<&Tracer::Close>("close"),
                         InstanceMethod<&Tracer::DeleteKeys>("deleteKeys"),
                         InstanceMethod<&Tracer::Unpin>("unpin"),
                         InstanceMethod<&Tracer::PinInfo>("pinInfo"),
                     });
}

namespace {

// FNV-1a over the embedded BPF object: the pin directory's version.
std::string ObjectHash() {
  size_t sz = 0;
  const auto* p = static_cast<const unsigned char*>(netflow__elf_bytes(&sz));
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < sz; i++) h = (h ^ p[i]) * 1099511628211ULL;
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string LinkPinPath(const std::string& pin_dir, bpf_program* prog) {
  return pin_dir + "/link_" + bpf_program__name(prog);
}

}  // namespace

// new Tracer({ ipv6Disabled, cgroupPath, disabledPrograms, pinRoot })
// Options are validated in JS (src/loader/native.ts); here we only read them.
// pinRoot: a directory on bpffs (created by the caller) or "" to not pin.
Tracer::Tracer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tracer>(info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info[0].As<Napi::Object>();
  bool ipv6_disabled = opts.Get("ipv6Disabled").ToBoolean();
  cgroup_path_ = opts.Get("cgroupPath").ToString();
  Napi::Array disabled = opts.Get("disabledPrograms").As<Napi::Array>();
  std::string pin_root = opts.Get("pinRoot").ToString();

  ResetLibbpfLog();
  LIBBPF_OPTS(bpf_object_open_opts, open_opts);
  if (!pin_root.empty()) {
    pin_dir_ = pin_root + "/netflow-" + ObjectHash();
    if (mkdir(pin_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
      ThrowErrno(env, "EBPF_LOAD", "creating the pin directory " + pin_dir_ + " failed", errno, "");
      return;
    }
    maps_reused_ = Exists(pin_dir_ + "/tcp_conns");
    open_opts.pin_root_path = pin_dir_.c_str();
  }
  skel_ = netflow__open_opts(&open_opts);
  if (!skel_) {
    ThrowErrno(env, "EBPF_LOAD", "opening the netflow BPF object failed", errno, LibbpfLogTail());
    return;
  }
  if (pin_dir_.empty()) {
    // LIBBPF_PIN_BY_NAME defaults to /sys/fs/bpf: without a pin root the
    // maps must not be pinned (or picked up) anywhere.
    bpf_map* m;
    bpf_object__for_each_map(m, skel_->obj) bpf_map__set_pin_path(m, nullptr);
  }
  skel_->rodata->dke_ipv6_disabled = ipv6_disabled ? 1 : 0;
  for (uint32_t i = 0; i < disabled.Length(); i++) {
    std::string name = disabled.Get(i).ToString();
    bpf_program* prog = bpf_object__find_program_by_name(skel_->obj, name.c_str());
    if (prog) bpf_program__set_autoload(prog, false);
  }
  int err = netflow__load(skel_);
  if (err) {
    std::string prog = LibbpfFailedProgram();
    std::string what = prog.empty() ? "loading the netflow BPF programs failed"
                                    : "the kernel refused BPF program " + prog;
    ThrowErrno(env, "EBPF_LOAD", what, -err, LibbpfLogTail(), prog);
    Destroy();
    return;
  }
}

Tracer::~Tracer() { Destroy(); }

void Tracer::Destroy() {
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
    netflow__destroy(skel_);
    skel_ = nullptr;
  }
}

bool Tracer::EnsureOpen(Napi::Env env) {
  if (skel_) return true;
  ThrowPlain(env, "EBPF_CLOSED", "the tracer is closed");
  return false;
}

// Attaches every loaded program, one by one, so one hook the kernel lacks is a
// per-program failure the caller can weigh, not a dead collector.
// Returns [{ program, ok, error? }].
Napi::Value Tracer::Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  Napi::Array out = Napi::Array::New(env);
  uint32_t idx = 0;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    if (!bpf_program__autoload(prog)) continue;
    const char* name = bpf_program__name(prog);
    Napi::Object r = Napi::Object::New(env);
    r.Set("program", name);
    r.Set("section", bpf_program__section_name(prog));
    ResetLibbpfLog();
    bpf_link* link = nullptr;
    int err = 0;
    // A link pinned by an earlier loader is still counting into the same
    // pinned maps: keep it, attaching a second program would double count.
    std::string pin_path = pin_dir_.empty() ? "" : LinkPinPath(pin_dir_, prog);
    // (Only with the same maps: a link into maps that are gone is stale.)
    if (!pin_path.empty() && maps_reused_ && Exists(pin_path)) {
      link = bpf_link__open(pin_path.c_str());
      r.Set("reused", link != nullptr);
      if (link) {
        links_.push_back(link);
        r.Set("ok", true);
        out.Set(idx++, r);
        continue;
      }
    }
    if (!pin_path.empty()) unlink(pin_path.c_str());  // stale pin, if any: attach afresh
    if (bpf_program__type(prog) == BPF_PROG_TYPE_CGROUP_SKB) {
      link = AttachToCgroup(prog, cgroup_path_, &cgroup_fd_, &err);
    } else {
      link = bpf_program__attach(prog);
      if (!link) err = errno;
    }
    r.Set("ok", link != nullptr);
    if (link) {
      links_.push_back(link);
      if (!pin_path.empty() && bpf_link__pin(link, pin_path.c_str()) != 0) {
        r.Set("pinError", std::string(strerror(errno)));
      }
    } else {
      r.Set("error", DescribeAttachError(err));
    }
    out.Set(idx++, r);
  }
  return out;
}

bpf_map* Tracer::MapByName(Napi::Env env, const Napi::Value& name) {
  std::string n = name.ToString();
  bpf_map* m = nullptr;
  if (n == "tcp_conns") m = skel_->maps.tcp_conns;
  if (n == "udp_flows") m = skel_->maps.udp_flows;
  if (n == "sock_owners") m = skel_->maps.sock_owners;
  if (!m) ThrowPlain(env, "EINVAL", "unknown map " + n);
  return m;
}

// dumpMap(name) -> Buffer of concatenated [key][value] records.
// Uses batched lookups (one syscall per few thousand entries); the hash-map
// iteration is not a snapshot, which is fine for counters read as deltas.
Napi::Value Tracer::DumpMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  bpf_map* m = MapByName(env, info[0]);
  if (!m) return env.Undefined();
  const size_t ks = bpf_map__key_size(m), vs = bpf_map__value_size(m);
  const int fd = bpf_map__fd(m);
  std::vector<uint8_t> out;

  uint32_t chunk = 4096;
  std::vector<uint8_t> keys, vals;
  uint64_t in_batch = 0, out_batch = 0;
  bool first = true;
  for (;;) {
    keys.resize(chunk * ks);
    vals.resize(chunk * vs);
    uint32_t count = chunk;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_batch(fd, first ? nullptr : &in_batch, &out_batch, keys.data(), vals.data(), &count, &opts);
    int e = err ? errno : 0;
    if (err && e == ENOSPC) {  // one hash bucket holds more than `chunk` entries
      chunk *= 2;
      continue;
    }
    for (uint32_t i = 0; i < count; i++) {
      out.insert(out.end(), keys.begin() + i * ks, keys.begin() + (i + 1) * ks);
      out.insert(out.end(), vals.begin() + i * vs, vals.begin() + (i + 1) * vs);
    }
    if (err) {
      if (e == ENOENT) break;  // iteration complete
      ThrowErrno(env, "EBPF_MAP", "reading BPF map " + std::string(bpf_map__name(m)) + " failed", e, "");
      return env.Undefined();
    }
    in_batch = out_batch;
    first = false;
  }
  return Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size());
}

// lookupAndDelete(name, keys: Buffer) -> Buffer of [key][value] for the keys
// that were still present. Atomic per key, so no increment between our last
// read and the delete is lost.
Napi::Value Tracer::LookupAndDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  bpf_map* m = MapByName(env, info[0]);
  if (!m) return env.Undefined();
  Napi::Buffer<uint8_t> keys = info[1].As<Napi::Buffer<uint8_t>>();
  const size_t ks = bpf_map__key_size(m), vs = bpf_map__value_size(m);
  const int fd = bpf_map__fd(m);
  std::vector<uint8_t> out, val(vs);
  for (size_t off = 0; off + ks <= keys.Length(); off += ks) {
    const uint8_t* k = keys.Data() + off;
    if (bpf_map_lookup_and_delete_elem(fd, k, val.data()) == 0) {
      out.insert(out.end(), k, k + ks);
      out.insert(out.end(), val.begin(), val.end());
    }
  }
  return Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size());
}

// readTelemetry() -> number[]: per-CPU counters summed.
Napi::Value Tracer::ReadTelemetry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  return SumPerCpuCounters(env, bpf_map__fd(skel_->maps.telemetry), DKE_TEL_MAX);
}

// startEvents(onBatch: (records: Buffer) => void): close events stream.
Napi::Value Tracer::StartEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  if (poller_) {
    ThrowPlain(env, "EINVAL", "events already started");
    return env.Undefined();
  }
  poller_ = StartPoller(env, bpf_map__fd(skel_->maps.tcp_closed_events), sizeof(dke_tcp_conn), info[0], "close-event");
  return env.Undefined();
}

// deleteKeys(name, keys: Buffer) -> number deleted. For entries user space
// has finished with (closed connections already reported).
Napi::Value Tracer::DeleteKeys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!EnsureOpen(env)) return env.Undefined();
  bpf_map* m = MapByName(env, info[0]);
  if (!m) return env.Undefined();
  Napi::Buffer<uint8_t> keys = info[1].As<Napi::Buffer<uint8_t>>();
  const size_t ks = bpf_map__key_size(m);
  const int fd = bpf_map__fd(m);
  uint32_t deleted = 0;
  for (size_t off = 0; off + ks <= keys.Length(); off += ks) {
    if (bpf_map_delete_elem(fd, keys.Data() + off) == 0) deleted++;
  }
  return Napi::Number::New(env, deleted);
}

// unpin(): removes the pinned links and maps, so the programs detach when this
// process closes them (a clean stop must not leave probes behind).
Napi::Value Tracer::Unpin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!skel_ || pin_dir_.empty()) return env.Undefined();
  for (bpf_link* l : links_) bpf_link__unpin(l);
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) unlink(LinkPinPath(pin_dir_, prog).c_str());
  bpf_map* m;
  bpf_object__for_each_map(m, skel_->obj) {
    if (bpf_map__is_pinned(m)) bpf_map__unpin(m, nullptr);
  }
  rmdir(pin_dir_.c_str());
  return env.Undefined();
}

// pinInfo() -> { dir: string, mapsReused: boolean }
Napi::Value Tracer::PinInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("dir", pin_dir_);
  o.Set("mapsReused", maps_reused_);
  return o;
}

Napi::Value Tracer::Close(const Napi::CallbackInfo& info) {
  Destroy();
  return info.Env().Undefined();
}

}  // namespace dke
