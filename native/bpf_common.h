// Pieces every tracer class needs the same way: summing per-CPU telemetry,
// attaching to a cgroup, describing a failed attach, starting a ring-buffer
// poller. One implementation, so the three tracers cannot drift apart.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "ringbuf_poller.h"

struct bpf_program;
struct bpf_link;

namespace dke {

// Sums each of the first `count` slots of a PERCPU_ARRAY map over all CPUs.
Napi::Array SumPerCpuCounters(Napi::Env env, int map_fd, uint32_t count);

// Attaches a cgroup program to the cgroup v2 directory `path`, opening it into
// `*cgroup_fd` on first use. Returns the link, or nullptr with `*err` set.
bpf_link* AttachToCgroup(bpf_program* prog, const std::string& path, int* cgroup_fd, int* err);

// "<strerror> (errno N): <last libbpf lines>" for a failed attach.
std::string DescribeAttachError(int err);

// Starts a poller on a ring buffer map; throws a JS error (and returns
// nullptr) when libbpf cannot open it. `what` names the buffer for the message.
std::unique_ptr<RingbufPoller> StartPoller(Napi::Env env, int map_fd, size_t record_size, const Napi::Value& on_batch,
                                           const std::string& what);

}  // namespace dke
