// Unit tests of the container id and user name parsers (bash_origin.h), run
// by test/unit/native-loader.test.ts. Exit code 0 = every check passed.
#include <cstdio>
#include <string>

#include "bash_origin.h"
#include "unit_check.h"

namespace {

#define CHECK_EQ(got, want)                                                                       \
  do {                                                                                            \
    std::string g_ = (got), w_ = (want);                                                          \
    if (g_ != w_) {                                                                               \
      fprintf(stderr, "%s:%d: %s: got \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got, g_.c_str(), w_.c_str()); \
      dke::unit::failures++;                                                                      \
    }                                                                                             \
  } while (0)

const std::string kId = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";
const std::string kInner = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

void ContainerIds() {
  using dke::ContainerIdFromCgroup;
  // systemd cgroup drivers (cgroup v2 and hybrid layouts).
  CHECK_EQ(ContainerIdFromCgroup("0::/system.slice/docker-" + kId + ".scope\n"), kId);
  CHECK_EQ(ContainerIdFromCgroup("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-" + kId + ".scope\n"), kId);
  CHECK_EQ(ContainerIdFromCgroup("0::/kubepods.slice/kubepods-pod1.slice/crio-" + kId + ".scope"), kId);
  CHECK_EQ(ContainerIdFromCgroup("0::/machine.slice/libpod-" + kId + ".scope/container\n"), kId);
  CHECK_EQ(ContainerIdFromCgroup("12:pids:/\n4:memory:/system.slice/docker-" + kId + ".scope\n0::/\n"), kId);
  // cgroupfs drivers.
  CHECK_EQ(ContainerIdFromCgroup("0::/docker/" + kId + "\n"), kId);
  CHECK_EQ(ContainerIdFromCgroup("11:cpu,cpuacct:/kubepods/besteffort/pod0c1d/" + kId + "\n"), kId);
  // Docker in Docker: the innermost container.
  CHECK_EQ(ContainerIdFromCgroup("0::/docker/" + kId + "/docker/" + kInner + "\n"), kInner);
  // Not containers: the host, CRI-O's monitor, a 64-hex directory elsewhere, ids of another length or case.
  CHECK_EQ(ContainerIdFromCgroup("0::/\n"), "");
  CHECK_EQ(ContainerIdFromCgroup("0::/user.slice/user-0.slice/session-3.scope\n"), "");
  CHECK_EQ(ContainerIdFromCgroup("0::/machine.slice/crio-conmon-" + kId + ".scope\n"), "");
  CHECK_EQ(ContainerIdFromCgroup("0::/process_api/" + kId + "\n"), "");
  CHECK_EQ(ContainerIdFromCgroup("4:memory:/process_api/60cb8cccfddef4ab0793566aa4e5192d\n"), "");
  CHECK_EQ(ContainerIdFromCgroup("0::/system.slice/docker-" + kId.substr(0, 63) + ".scope\n"), "");
  std::string upper = kId;
  upper[0] = 'F';
  CHECK_EQ(ContainerIdFromCgroup("0::/docker/" + upper + "\n"), "");
  CHECK_EQ(ContainerIdFromCgroup(""), "");
  CHECK_EQ(ContainerIdFromCgroup("garbage without colons\n::\n"), "");
}

void UserNames() {
  using dke::UserFromPasswd;
  const std::string passwd =
      "root:x:0:0:root:/root:/bin/bash\n"
      "# a comment\n"
      "+nis::::::\n"
      "toor:x:0:0::/:/bin/sh\n"
      "ctruser:x:4242:4242:In the container:/home/ctruser:/bin/bash\n"
      "bad:x::1:::\n"
      "neg:x:-5:1:::\n"
      "big:x:4294967297:1:::\n";
  CHECK_EQ(UserFromPasswd(passwd, 0), "root");
  CHECK_EQ(UserFromPasswd(passwd, 4242), "ctruser");
  CHECK_EQ(UserFromPasswd(passwd, 1), "");
  CHECK_EQ(UserFromPasswd(passwd, 5), "");
  CHECK_EQ(UserFromPasswd("", 0), "");
  CHECK_EQ(UserFromPasswd("nocolon\nx:y:7", 7), "x");
}

}  // namespace

int main() {
  ContainerIds();
  UserNames();
  return dke::unit::Finish("bash origins");
}
