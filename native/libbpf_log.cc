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
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  if (n <= 0) return n;
  std::string line(buf);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  std::lock_guard<std::mutex> lock(g_mu);
  g_lines.push_back(std::move(line));
  if (g_lines.size() > kMaxLines) g_lines.pop_front();
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
