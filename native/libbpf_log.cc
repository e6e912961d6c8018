#include "libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <deque>
#include <mutex>

namespace dke {
namespace {

std::mutex g_mu;
std::deque<std::string> g_lines;
constexpr size_t kMaxLines = 200;

int Print(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  // A verifier log arrives as one message of many lines: keep each line.
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n <= 0) return n;
  std::string text(static_cast<size_t>(n) + 1, '\0');
  vsnprintf(text.data(), text.size(), fmt, args);
  text.resize(static_cast<size_t>(n));
  std::lock_guard<std::mutex> lock(g_mu);
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    while (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) g_lines.push_back(std::move(line));
    if (g_lines.size() > kMaxLines) g_lines.pop_front();
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return n;
}

}  // namespace

void InstallLibbpfLogger() { libbpf_set_print(Print); }

void ResetLibbpfLog() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_lines.clear();
}

std::string LibbpfLogTail(size_t max_lines) {
  std::lock_guard<std::mutex> lock(g_mu);
  std::string out;
  size_t start = g_lines.size() > max_lines ? g_lines.size() - max_lines : 0;
  for (size_t i = start; i < g_lines.size(); i++) {
    if (!out.empty()) out += "\n";
    out += g_lines[i];
  }
  return out;
}

std::string LibbpfFailedProgram() {
  std::lock_guard<std::mutex> lock(g_mu);
  for (auto it = g_lines.rbegin(); it != g_lines.rend(); ++it) {
    const std::string& l = *it;
    size_t p = l.find("prog '");
    if (p == std::string::npos) continue;
    size_t q = l.find('\'', p + 6);
    if (q == std::string::npos) continue;
    return l.substr(p + 6, q - p - 6);
  }
  return "";
}

}  // namespace dke
