// The library function a TSan annotation wrapper stands in for
// (tsan_absl_sync.cc, tsan_grpc_sync.cc): the next definition of the mangled
// symbol NAME after the executable's own, as a plain function pointer (a
// member function takes `this` as its first argument).
#ifndef SCHEMAGATE_TESTS_SANITIZERS_TSAN_REAL_H_
#define SCHEMAGATE_TESTS_SANITIZERS_TSAN_REAL_H_

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

namespace schemagate::tsan {

template <typename Fn>
Fn Real(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    std::fprintf(stderr, "TSan annotations: %s is not in the loaded libraries\n", name);
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

}  // namespace schemagate::tsan

#endif  // SCHEMAGATE_TESTS_SANITIZERS_TSAN_REAL_H_
