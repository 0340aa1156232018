// Invariant checks for the fuzz targets: a broken invariant is a bug, so it
// aborts with what was expected, which libFuzzer reports as a crash and saves
// the input that caused it.
#ifndef SCHEMAGATE_TESTS_FUZZ_FUZZ_CHECK_H_
#define SCHEMAGATE_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(condition)                                                        \
  do {                                                                               \
    if (!(condition)) {                                                              \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, \
                   #condition);                                                      \
      std::abort();                                                                  \
    }                                                                                \
  } while (false)

#endif  // SCHEMAGATE_TESTS_FUZZ_FUZZ_CHECK_H_
