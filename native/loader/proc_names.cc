#include "proc_names.h"

#include <fstream>
#include <iterator>

namespace dke {

namespace {
constexpr size_t kCommMax = 15;  // TASK_COMM_LEN - 1
}

std::string ProcessName(uint32_t pid, const std::string& comm) {
  std::string name = comm;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  if (status && std::getline(status, line) && line.rfind("Name:", 0) == 0) {
    size_t start = line.find_first_not_of(" \t", 5);
    if (start != std::string::npos) name = line.substr(start);
  }
  if (name.size() < kCommMax) return name;
  // Cut by the kernel: the command line's first word says more.
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::string argv0 = cmdline.substr(0, cmdline.find('\0'));
  size_t slash = argv0.rfind('/');
  std::string base = slash == std::string::npos ? argv0 : argv0.substr(slash + 1);
  // Only when it extends what the kernel kept (a renamed process keeps its name).
  if (!base.empty() && base.compare(0, name.size(), name) == 0) return base;
  return name;
}

}  // namespace dke
