// Creating a BPF map charged to no memory cgroup.
//
// The kernel charges a map's allocations to the memory cgroup of the process
// that created it, at every allocation and every free. For a map whose
// entries are born and freed with the host's sockets (socket-local storage),
// that is two charged allocations at each socket's birth and two uncharged
// RCU frees at its death, on the workload's CPU, for memory that belongs to
// the host's sockets rather than to the collector. A map created from the
// root memory cgroup is charged to none. The loader itself stays where its
// service manager put it: a forked child joins the root memory cgroup,
// creates the map and hands its descriptor back.
#ifndef DKE_ROOT_MEMCG_H
#define DKE_ROOT_MEMCG_H

#include <functional>
#include <string>

namespace dke {

// Runs `create` (which returns a map's fd, or -1 with errno) in a child
// process moved to the root memory cgroup, and returns the fd received from
// it, or -1 with the reason in *why. Returns -1 with *why empty when there is
// nothing to gain: this process is in the root memory cgroup already, or no
// memory controller is mounted.
int CreateInRootMemcg(const std::function<int()>& create, std::string* why);

}  // namespace dke

#endif
