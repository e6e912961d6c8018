#include "errors.h"

#include <cstring>

namespace dke {

void ThrowPlain(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", code);
  e.ThrowAsJavaScriptException();
}

void ThrowErrno(Napi::Env env, const char* code, const std::string& what, int err, const std::string& libbpf_log,
                const std::string& program) {
  if (err < 0) err = -err;
  std::string msg = what + ": " + strerror(err);
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", code);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("libbpfLog", libbpf_log);
  if (!program.empty()) e.Set("program", program);
  e.ThrowAsJavaScriptException();
}

}  // namespace dke
