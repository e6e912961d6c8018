// Every failure reaches JS as an Error with a stable `code`, an `errno` and the
// libbpf lines that explain it. Never an abort, never a C++ exception.
#pragma once
#include <napi.h>

#include <string>

namespace dke {

void ThrowPlain(Napi::Env env, const char* code, const std::string& message);
void ThrowErrno(Napi::Env env, const char* code, const std::string& what, int err, const std::string& libbpf_log,
                const std::string& program = "");

}  // namespace dke
