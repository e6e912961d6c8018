#include "bpf_common.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "errors.h"
#include "libbpf_log.h"

namespace dke {

Napi::Array SumPerCpuCounters(Napi::Env env, int map_fd, uint32_t count) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) ncpu = 1;
  std::vector<uint64_t> per_cpu(ncpu);
  Napi::Array out = Napi::Array::New(env);
  for (uint32_t i = 0; i < count; i++) {
    uint64_t sum = 0;
    if (bpf_map_lookup_elem(map_fd, &i, per_cpu.data()) == 0)
      for (uint64_t v : per_cpu) sum += v;
    out.Set(i, Napi::Number::New(env, static_cast<double>(sum)));
  }
  return out;
}

bpf_link* AttachToCgroup(bpf_program* prog, const std::string& path, int* cgroup_fd, int* err) {
  if (*cgroup_fd < 0) *cgroup_fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (*cgroup_fd < 0) {
    *err = errno;
    return nullptr;
  }
  bpf_link* link = bpf_program__attach_cgroup(prog, *cgroup_fd);
  if (!link) *err = errno;
  return link;
}

std::string DescribeAttachError(int err) {
  std::string msg = std::string(strerror(err)) + " (errno " + std::to_string(err) + ")";
  std::string tail = LibbpfLogTail(3);
  if (!tail.empty()) msg += ": " + tail;
  return msg;
}

std::unique_ptr<RingbufPoller> StartPoller(Napi::Env env, int map_fd, size_t record_size, const Napi::Value& on_batch,
                                           const std::string& what) {
  auto poller = std::make_unique<RingbufPoller>(env, map_fd, record_size, on_batch.As<Napi::Function>());
  if (!poller->ok()) {
    int e = errno;
    ThrowErrno(env, "EBPF_LOAD", "opening the " + what + " ring buffer failed", e, LibbpfLogTail(3));
    return nullptr;
  }
  return poller;
}

}  // namespace dke
