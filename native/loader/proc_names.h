// A process's own name as upstream reports it (gopsutil Name()): the name in
// /proc/<pid>/status, replaced by the command line's basename when the kernel
// cut it at 15 characters. Read by the loader, which can see /proc even when
// the daemon cannot (the unit's ProtectProc=invisible).
#pragma once
#include <cstdint>
#include <string>

namespace dke {

// `comm` is what BPF saw (the thread group leader's comm): the answer when the
// process is already gone.
std::string ProcessName(uint32_t pid, const std::string& comm);

}  // namespace dke
