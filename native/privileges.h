// Process credentials for the daemon parent and the loader child: the parent
// gives up its user and its effective capabilities but hands the BPF ones to
// the loader children it forks later (ambient capabilities); the child ties
// its life to the parent's. JS decides what to keep (src/daemon/privileges.ts).
#pragma once
#include <napi.h>

namespace dke {

// Adds lookupUser, dropPrivileges, setParentDeathSignal and readCapabilities to `exports`.
void RegisterPrivileges(Napi::Env env, Napi::Object exports);

}  // namespace dke
