// ThreadSanitizer annotations for the one handoff of Debian's libgrpc++ that
// the tests' reports depend on (linked beside tsan_absl_sync.cc into every
// test executable of a SCHEMAGATE_TSAN=ON build; docs/testing.md).
//
// A callback call's end (its reactor's OnDone included) drops a reference
// on the grpc::Server: UnrefWithPossibleNotify, an acq_rel fetch_sub in the
// uninstrumented library. Server::Shutdown drops the last one and waits for
// the count to reach zero in UnrefAndWaitLocked. So everything a reactor did
// happens before Shutdown (and Wait) returns, but TSan cannot see the
// atomic, and would report the destruction of whatever the reactors used
// (after the server is shut down) as racing with them. The two functions
// are called through the PLT, so these definitions, exported by the
// executable (-rdynamic), take their place: each says what its atomic does
// and calls the library's function.
#include <dlfcn.h>
#include <grpcpp/server.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

namespace {

using UnrefFn = void (*)(grpc::Server*);

UnrefFn Real(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan_grpc_sync: %s not found in libgrpc++\n", name);
    std::abort();
  }
  return reinterpret_cast<UnrefFn>(fn);
}

}  // namespace

namespace grpc {

void Server::UnrefWithPossibleNotify() {
  static const UnrefFn real = Real("_ZN4grpc6Server23UnrefWithPossibleNotifyEv");
  __tsan_release(this);
  real(this);
}

void Server::UnrefAndWaitLocked() {
  static const UnrefFn real = Real("_ZN4grpc6Server18UnrefAndWaitLockedEv");
  __tsan_release(this);
  real(this);
  __tsan_acquire(this);
}

}  // namespace grpc
