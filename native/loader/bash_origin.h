// Where a shell in a container runs, from what /proc says about it: the
// container id its cgroup path names, and user names from that container's
// own passwd(5). Pure functions on text (test_bash_origin.cc tests them); the
// bash loader reads the files.
#pragma once
#include <cstdint>
#include <string>

namespace dke {

// The container id /proc/<pid>/cgroup text names, "" if none: the deepest
// path component of the form docker-<id>.scope, cri-containerd-<id>.scope,
// crio-<id>.scope or libpod-<id>.scope (systemd cgroup drivers), or a bare
// <id> under docker/ or kubepods (cgroupfs drivers). <id> is 64 lower-case
// hex digits; crio-conmon-<id> (CRI-O's monitor) is not a container.
std::string ContainerIdFromCgroup(const std::string& text);

// The login name of `uid` in passwd(5) text (the first entry wins, as
// getpwuid does), "" if no entry names it.
std::string UserFromPasswd(const std::string& text, uint32_t uid);

}  // namespace dke
