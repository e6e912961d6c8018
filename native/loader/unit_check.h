// What the loader's C++ unit tests (test_*.cc beside this file, run by
// test/unit/native-loader.test.ts) share: a check that counts its failures
// and says where, and the end of main.
#pragma once
#include <cstdio>

namespace dke::unit {

inline int failures = 0;

// main's return value: 0 when every check passed.
inline int Finish(const char* what) {
  if (failures) {
    fprintf(stderr, "%s: %d check(s) failed\n", what, failures);
    return 1;
  }
  printf("%s: all checks passed\n", what);
  return 0;
}

}  // namespace dke::unit

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      dke::unit::failures++;                                                    \
    }                                                                           \
  } while (0)
