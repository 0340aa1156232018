// ThreadSanitizer annotations for the handoffs of Debian's libgrpc++ that
// order a callback reactor's reactions (linked beside tsan_absl_sync.cc into
// every test executable of a SCHEMAGATE_TSAN=ON build; docs/testing.md).
// The functions below are called through the PLT, so these definitions,
// exported by the executable (-rdynamic), take their place: each says what
// the library's atomics do and calls the library's function.
//
// 1. OnDone after every other reaction. Each reaction's end drops a count
// (ServerCallbackCall::callbacks_outstanding_, an acq_rel fetch_sub); the
// one that drops the last calls ScheduleOnDone, and OnDone follows. The
// drops compiled from gRPC's headers into schemagate are instrumented; the
// ones inside libgrpc++ (after OnCancel, after the call's completion op)
// are not. ScheduleOnDone acquires the count, and OnCancel is run through a
// relay that releases it once the reactor's OnCancel returns, before the
// library drops its count.
//
// 2. A batch's completion after its start. A reactor's StartWrite (or
// read, or finish) fills an op set and hands it to libgrpc with
// grpc_call_start_batch; a gRPC thread later runs the tag's functor
// (CallbackWithSuccessTag::StaticRun), which reads the op set back. libgrpc
// orders the two; TSan cannot see how. grpc_call_start_batch releases the
// tag, and a callback tag's functor is pointed at a trampoline that
// acquires it before running StaticRun.
//
// 3. A callback call's end (its reactor's OnDone included) drops a reference
// on the grpc::Server: UnrefWithPossibleNotify, an acq_rel fetch_sub in the
// uninstrumented library. Server::Shutdown drops the last one and waits for
// the count to reach zero in UnrefAndWaitLocked. So everything a reactor did
// happens before Shutdown (and Wait) returns, but TSan cannot see the
// atomic, and would report the destruction of whatever the reactors used
// (after the server is shut down) as racing with them.
#include <grpc/grpc.h>
#include <grpcpp/server.h>
#include <grpcpp/support/server_callback.h>
#include <sanitizer/tsan_interface.h>

#include "tests/sanitizers/tsan_real.h"

namespace {

using schemagate::tsan::Real;

using UnrefFn = void (*)(grpc::Server*);
using ScheduleOnDoneFn = void (*)(grpc::internal::ServerCallbackCall*, bool);
using CallOnCancelFn = void (*)(grpc::internal::ServerCallbackCall*,
                                grpc::internal::ServerReactor*);

// &ServerCallbackCall::callbacks_outstanding_, a private member: an explicit
// instantiation may name it.
struct Outstanding {
  using type = std::atomic_int grpc::internal::ServerCallbackCall::*;
  friend type Member(Outstanding);
};
template <typename Tag, typename Tag::type M>
struct Expose {
  friend typename Tag::type Member(Tag) { return M; }
};
template struct Expose<Outstanding, &grpc::internal::ServerCallbackCall::callbacks_outstanding_>;

void* OutstandingOf(grpc::internal::ServerCallbackCall* call) {
  return &(call->*Member(Outstanding()));
}

// Runs the reactor's OnCancel for the library, then releases the call's
// count (the library drops it next, uninstrumented). Deletes itself.
class CancelRelay : public grpc::internal::ServerReactor {
 public:
  CancelRelay(grpc::internal::ServerReactor* reactor, void* outstanding)
      : reactor_(reactor), outstanding_(outstanding) {}
  void OnDone() override {}  // never called: the library only cancels through it
  void OnCancel() override {
    reactor_->OnCancel();
    __tsan_release(outstanding_);
    delete this;
  }
  bool InternalInlineable() override { return reactor_->InternalInlineable(); }

 private:
  grpc::internal::ServerReactor* const reactor_;
  void* const outstanding_;
};

using StartBatchFn = grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*, void*);

// CallbackWithSuccessTag::StaticRun, private too.
struct SuccessTagRun {
  using type = void (*)(grpc_completion_queue_functor*, int);
  friend type Member(SuccessTagRun);
};
template struct Expose<SuccessTagRun, &grpc::internal::CallbackWithSuccessTag::StaticRun>;

// Runs a callback tag's functor once the batch it ended is acquired.
void AcquireThenRun(grpc_completion_queue_functor* functor, int ok) {
  __tsan_acquire(functor);
  Member(SuccessTagRun())(functor, ok);
}

}  // namespace

extern "C" grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops, size_t nops,
                                                 void* tag, void* reserved) {
  static const auto real = Real<StartBatchFn>("grpc_call_start_batch");
  // A callback tag is a grpc_completion_queue_functor; any other tag is a
  // C++ object whose first word is its vtable, never StaticRun.
  auto* functor = static_cast<grpc_completion_queue_functor*>(tag);
  if (functor != nullptr && functor->functor_run == Member(SuccessTagRun())) {
    functor->functor_run = &AcquireThenRun;
  }
  __tsan_release(tag);
  return real(call, ops, nops, tag, reserved);
}

namespace grpc {
namespace internal {

void ServerCallbackCall::ScheduleOnDone(bool inline_ondone) {
  static const auto real =
      Real<ScheduleOnDoneFn>("_ZN4grpc8internal18ServerCallbackCall14ScheduleOnDoneEb");
  __tsan_acquire(OutstandingOf(this));
  real(this, inline_ondone);
}

void ServerCallbackCall::CallOnCancel(ServerReactor* reactor) {
  static const auto real = Real<CallOnCancelFn>(
      "_ZN4grpc8internal18ServerCallbackCall12CallOnCancelEPNS0_13ServerReactorE");
  real(this, new CancelRelay(reactor, OutstandingOf(this)));
}

}  // namespace internal
}  // namespace grpc

namespace grpc {

void Server::UnrefWithPossibleNotify() {
  static const auto real = Real<UnrefFn>("_ZN4grpc6Server23UnrefWithPossibleNotifyEv");
  __tsan_release(this);
  real(this);
}

void Server::UnrefAndWaitLocked() {
  static const auto real = Real<UnrefFn>("_ZN4grpc6Server18UnrefAndWaitLockedEv");
  __tsan_release(this);
  real(this);
  __tsan_acquire(this);
}

}  // namespace grpc
