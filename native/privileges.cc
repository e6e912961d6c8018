// See privileges.h. Thin on purpose: JS validates the user and chooses the
// capabilities; this file only performs the system calls in the one order
// that works and reports the first that fails.
#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "errors.h"

namespace dke {
namespace {

struct CapSets {
  uint64_t effective = 0;
  uint64_t permitted = 0;
  uint64_t inheritable = 0;
};

// glibc has no capget/capset wrappers and libcap is not worth a dependency
// for two system calls.
bool GetCaps(CapSets* out) {
  __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  out->effective = data[0].effective | (static_cast<uint64_t>(data[1].effective) << 32);
  out->permitted = data[0].permitted | (static_cast<uint64_t>(data[1].permitted) << 32);
  out->inheritable = data[0].inheritable | (static_cast<uint64_t>(data[1].inheritable) << 32);
  return true;
}

bool SetCaps(const CapSets& s) {
  __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  data[0].effective = static_cast<uint32_t>(s.effective);
  data[1].effective = static_cast<uint32_t>(s.effective >> 32);
  data[0].permitted = static_cast<uint32_t>(s.permitted);
  data[1].permitted = static_cast<uint32_t>(s.permitted >> 32);
  data[0].inheritable = static_cast<uint32_t>(s.inheritable);
  data[1].inheritable = static_cast<uint32_t>(s.inheritable >> 32);
  return syscall(SYS_capset, &hdr, data) == 0;
}

int LastCap() {
  int last = 0;
  FILE* f = fopen("/proc/sys/kernel/cap_last_cap", "r");
  if (f) {
    if (fscanf(f, "%d", &last) != 1) last = 0;
    fclose(f);
  }
  if (last <= 0 || last > 63) {
    last = 0;
    while (last < 63 && prctl(PR_CAPBSET_READ, last + 1, 0, 0, 0) >= 0) last++;
  }
  return last;
}

std::string Hex(uint64_t v) {
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t AmbientSet(int last) {
  uint64_t amb = 0;
  for (int c = 0; c <= last; c++) {
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0) == 1) amb |= 1ULL << c;
  }
  return amb;
}

uint64_t BoundingSet(int last) {
  uint64_t bnd = 0;
  for (int c = 0; c <= last; c++) {
    if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1) bnd |= 1ULL << c;
  }
  return bnd;
}

// lookupUser(nameOrUid: string | number) -> { name, uid, gid, home } | null
Napi::Value LookupUser(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  long bufsize = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(bufsize > 0 ? static_cast<size_t>(bufsize) : 16384);
  struct passwd pw;
  struct passwd* found = nullptr;
  int rc;
  for (;;) {
    if (info[0].IsNumber()) {
      rc = getpwuid_r(info[0].As<Napi::Number>().Uint32Value(), &pw, buf.data(), buf.size(), &found);
    } else if (info[0].IsString()) {
      std::string name = info[0].As<Napi::String>().Utf8Value();
      rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
    } else {
      ThrowPlain(env, "EINVAL", "lookupUser expects a user name or a uid");
      return env.Undefined();
    }
    if (rc != ERANGE || buf.size() > (1u << 20)) break;
    buf.resize(buf.size() * 4);
  }
  if (rc != 0) {
    ThrowErrno(env, "USER_LOOKUP", "looking up the user", rc, "");
    return env.Undefined();
  }
  if (!found) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", pw.pw_name);
  out.Set("uid", static_cast<double>(pw.pw_uid));
  out.Set("gid", static_cast<double>(pw.pw_gid));
  out.Set("home", pw.pw_dir ? pw.pw_dir : "");
  return out;
}

// dropPrivileges({ uid, gid, keepCaps: number[], keepEffective?: boolean }) ->
// the resulting sets as hex strings: { uid, gid, effective, permitted,
// inheritable, ambient, bounding }. keepEffective (a loader narrowing itself)
// leaves `keepCaps` effective instead of clearing the effective set.
//
// Order matters: the bounding set shrinks first (needs CAP_SETPCAP, still
// effective as root); then the groups and ids change with KEEPCAPS so the
// permitted set survives setresuid; then effective becomes empty while
// permitted and inheritable keep `keepCaps`, which are raised as ambient so a
// plain (non-setuid) exec of the loader gets them as its effective set. Last,
// no_new_privs: no setuid or file-capability program can give more back.
//
// Threads: setgroups/setresgid/setresuid are glibc's process-wide versions,
// so every thread changes user; the capability calls act on this (the main)
// thread, the one Node forks children from. Other threads lose their
// permitted set entirely at setresuid (they have no KEEPCAPS).
//
// A failure part-way leaves the process half-dropped: the caller must exit.
Napi::Value DropPrivileges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    ThrowPlain(env, "EINVAL", "dropPrivileges expects { uid, gid, keepCaps }");
    return env.Undefined();
  }
  Napi::Object opts = info[0].As<Napi::Object>();
  if (!opts.Get("uid").IsNumber() || !opts.Get("gid").IsNumber() || !opts.Get("keepCaps").IsArray()) {
    ThrowPlain(env, "EINVAL", "dropPrivileges expects { uid: number, gid: number, keepCaps: number[] }");
    return env.Undefined();
  }
  uid_t uid = opts.Get("uid").As<Napi::Number>().Uint32Value();
  bool keep_effective = opts.Get("keepEffective").IsBoolean() && opts.Get("keepEffective").As<Napi::Boolean>().Value();
  gid_t gid = opts.Get("gid").As<Napi::Number>().Uint32Value();
  Napi::Array keepArr = opts.Get("keepCaps").As<Napi::Array>();
  int last = LastCap();
  uint64_t keep = 0;
  for (uint32_t i = 0; i < keepArr.Length(); i++) {
    Napi::Value v = keepArr.Get(i);
    int c = v.IsNumber() ? v.As<Napi::Number>().Int32Value() : -1;
    if (c < 0 || c > 63) {
      ThrowPlain(env, "EINVAL", "keepCaps holds capability numbers from 0 to 63");
      return env.Undefined();
    }
    if (c <= last) keep |= 1ULL << c;
  }

  CapSets cur;
  if (!GetCaps(&cur)) {
    ThrowErrno(env, "PRIVILEGE", "capget", errno, "");
    return env.Undefined();
  }
  keep &= cur.permitted;

  if (cur.effective & (1ULL << CAP_SETPCAP)) {
    for (int c = 0; c <= last; c++) {
      if ((keep & (1ULL << c)) || prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 1) continue;
      if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) {
        ThrowErrno(env, "PRIVILEGE", "dropping capability " + std::to_string(c) + " from the bounding set", errno, "");
        return env.Undefined();
      }
    }
  }

  if (getuid() != uid || geteuid() != uid) {
    if (setgroups(0, nullptr) != 0) {
      ThrowErrno(env, "PRIVILEGE", "setgroups", errno, "");
      return env.Undefined();
    }
    if (setresgid(gid, gid, gid) != 0) {
      ThrowErrno(env, "PRIVILEGE", "setresgid", errno, "");
      return env.Undefined();
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) {
      ThrowErrno(env, "PRIVILEGE", "prctl(PR_SET_KEEPCAPS)", errno, "");
      return env.Undefined();
    }
    if (setresuid(uid, uid, uid) != 0) {
      ThrowErrno(env, "PRIVILEGE", "setresuid", errno, "");
      return env.Undefined();
    }
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  }

  CapSets next;
  next.effective = keep_effective ? keep : 0;
  next.permitted = keep;
  next.inheritable = keep;
  if (!SetCaps(next)) {
    ThrowErrno(env, "PRIVILEGE", "capset", errno, "");
    return env.Undefined();
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    ThrowErrno(env, "PRIVILEGE", "clearing the ambient capabilities", errno, "");
    return env.Undefined();
  }
  for (int c = 0; c <= last; c++) {
    if (!(keep & (1ULL << c))) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) != 0) {
      ThrowErrno(env, "PRIVILEGE", "raising ambient capability " + std::to_string(c), errno, "");
      return env.Undefined();
    }
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    ThrowErrno(env, "PRIVILEGE", "prctl(PR_SET_NO_NEW_PRIVS)", errno, "");
    return env.Undefined();
  }

  CapSets now;
  GetCaps(&now);
  Napi::Object out = Napi::Object::New(env);
  out.Set("uid", static_cast<double>(getuid()));
  out.Set("gid", static_cast<double>(getgid()));
  out.Set("effective", Hex(now.effective));
  out.Set("permitted", Hex(now.permitted));
  out.Set("inheritable", Hex(now.inheritable));
  out.Set("ambient", Hex(AmbientSet(last)));
  out.Set("bounding", Hex(BoundingSet(last)));
  return out;
}

// setParentDeathSignal(signal: number) -> the parent pid at the time it took
// effect. If that is not the pid the caller expected, the parent is already
// gone and the signal will never come.
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sig = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : SIGKILL;
  if (prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0) {
    ThrowErrno(env, "PRIVILEGE", "prctl(PR_SET_PDEATHSIG)", errno, "");
    return env.Undefined();
  }
  return Napi::Number::New(env, getppid());
}

}  // namespace

void RegisterPrivileges(Napi::Env env, Napi::Object exports) {
  exports.Set("lookupUser", Napi::Function::New(env, LookupUser));
  exports.Set("dropPrivileges", Napi::Function::New(env, DropPrivileges));
  exports.Set("setParentDeathSignal", Napi::Function::New(env, SetParentDeathSignal));
}

}  // namespace dke
