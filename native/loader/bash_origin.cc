#include "bash_origin.h"

#include <cstdlib>
#include <vector>

namespace dke {

namespace {

constexpr size_t kIdLen = 64;

bool IsId(const std::string& s) {
  if (s.size() != kIdLen) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  for (;;) {
    size_t next = s.find(sep, pos);
    out.push_back(s.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) return out;
    pos = next + 1;
  }
}

// The id in <prefix><id>.scope, or "".
std::string ScopeId(const std::string& c) {
  static const char* const kPrefixes[] = {"docker-", "cri-containerd-", "crio-", "libpod-"};
  const std::string suffix = ".scope";
  if (c.size() <= suffix.size() || c.compare(c.size() - suffix.size(), suffix.size(), suffix) != 0) return "";
  for (const char* p : kPrefixes) {
    std::string prefix = p;
    if (c.compare(0, prefix.size(), prefix) != 0) continue;
    std::string id = c.substr(prefix.size(), c.size() - prefix.size() - suffix.size());
    if (IsId(id)) return id;
  }
  return "";
}

}  // namespace

std::string ContainerIdFromCgroup(const std::string& text) {
  for (const auto& line : Split(text, '\n')) {
    // hierarchy-ID:controllers:path; the path may itself hold colons.
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::vector<std::string> parts = Split(line.substr(b + 1), '/');
    for (size_t i = parts.size(); i-- > 0;) {
      std::string id = ScopeId(parts[i]);
      if (!id.empty()) return id;
      if (!IsId(parts[i]) || i == 0) continue;
      bool under = parts[i - 1] == "docker";
      for (size_t j = 0; j < i && !under; j++) under = parts[j].compare(0, 8, "kubepods") == 0;
      if (under) return parts[i];
    }
  }
  return "";
}

std::string UserFromPasswd(const std::string& text, uint32_t uid) {
  for (const auto& line : Split(text, '\n')) {
    if (line.empty() || line[0] == '#' || line[0] == '+' || line[0] == '-') continue;
    std::vector<std::string> f = Split(line, ':');
    if (f.size() < 3 || f[0].empty() || f[2].empty()) continue;
    char* end = nullptr;
    unsigned long v = strtoul(f[2].c_str(), &end, 10);
    if (*end != '\0' || f[2][0] == '-' || v != uid) continue;
    return f[0];
  }
  return "";
}

}  // namespace dke
