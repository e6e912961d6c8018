#include "root_memcg.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

namespace dke {

namespace {

// Where the memory controller is mounted: its own cgroup v1 hierarchy, or
// the unified (v2) one when it is enabled there. Empty when neither.
struct MemcgMount {
  std::string dir;
  bool v1 = false;
};

MemcgMount FindMemcgMount() {
  std::ifstream f("/proc/self/mounts");
  std::string line, v2;
  while (std::getline(f, line)) {
    std::istringstream ls(line);
    std::string dev, mnt, type, opts;
    if (!(ls >> dev >> mnt >> type >> opts)) continue;
    if (type == "cgroup" && ("," + opts + ",").find(",memory,") != std::string::npos) return {mnt, true};
    if (type == "cgroup2" && v2.empty()) v2 = mnt;
  }
  if (!v2.empty()) {
    std::ifstream c(v2 + "/cgroup.controllers");
    std::string controller;
    while (c >> controller)
      if (controller == "memory") return {v2, false};
  }
  return {};
}

// This process's cgroup in the memory controller's hierarchy.
std::string OwnMemcg(const MemcgMount& m) {
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  while (std::getline(f, line)) {
    // id:controllers:path
    auto a = line.find(':');
    auto b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    bool match = m.v1 ? ("," + controllers + ",").find(",memory,") != std::string::npos : line.compare(0, a, "0") == 0;
    if (match) return line.substr(b + 1);
  }
  return "/";
}

struct Reply {
  int err;
  char what[160];
};

void ChildCreate(int sock, const MemcgMount& m, const std::function<int()>& create) {
  Reply r{};
  int fd = -1;
  std::string procs = m.dir + "/cgroup.procs";
  int pf = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
  if (pf < 0 || write(pf, "0", 1) != 1) {
    r.err = errno;
    snprintf(r.what, sizeof(r.what), "joining %s", procs.c_str());
  } else if ((fd = create()) < 0) {
    r.err = errno;
    snprintf(r.what, sizeof(r.what), "creating the map");
  }
  if (pf >= 0) close(pf);

  iovec iov{&r, sizeof(r)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  sendmsg(sock, &msg, MSG_NOSIGNAL);
}

}  // namespace

int CreateInRootMemcg(const std::function<int()>& create, std::string* why) {
  why->clear();
  MemcgMount m = FindMemcgMount();
  if (m.dir.empty() || OwnMemcg(m) == "/") return -1;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    *why = std::string("socketpair: ") + strerror(errno);
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    *why = std::string("fork: ") + strerror(errno);
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  if (pid == 0) {
    close(sv[0]);
    ChildCreate(sv[1], m, create);
    _exit(0);
  }
  close(sv[1]);

  Reply r{};
  iovec iov{&r, sizeof(r)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  int fd = -1;
  // The child does one write and one map creation: seconds mean it hangs.
  pollfd p{sv[0], POLLIN, 0};
  ssize_t n = poll(&p, 1, 10000) == 1 ? recvmsg(sv[0], &msg, MSG_CMSG_CLOEXEC) : -1;
  if (n == static_cast<ssize_t>(sizeof(r))) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof(int));
    if (fd < 0) *why = std::string(r.what) + ": " + strerror(r.err);
  } else {
    *why = "the child creating the map did not answer";
  }
  close(sv[0]);
  if (n <= 0) kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  return fd;
}

}  // namespace dke
