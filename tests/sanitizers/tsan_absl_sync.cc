// ThreadSanitizer annotations for Debian's absl::Mutex, absl::CondVar and
// absl::Notification (linked into every test executable of a
// SCHEMAGATE_TSAN=ON build only; docs/testing.md).
//
// Abseil annotates its locks for TSan, but only when mutex.cc itself is
// compiled with -fsanitize=thread; Debian's libabsl_synchronization is not,
// so TSan sees none of its locks (they are atomics and futexes in an
// uninstrumented library) and would report every access guarded by an
// absl::Mutex as a race. This file defines the public entry points that
// schemagate and gRPC call. The executable exports them (-rdynamic), so the
// dynamic linker binds every caller, libgrpc included, to these
// definitions; each tells TSan what the lock does (the same
// __tsan_mutex_* calls as abseil's own annotations in mutex.cc) and calls
// the library's function, found with dlsym(RTLD_NEXT).
//
// A Condition is evaluated inside the library, by the locking thread or by
// an unlocking one; the wrapper Condition below repeats abseil's
// EvalConditionAnnotated, so its reads count as made under the lock.
// Await and CondVar waits are told to TSan as an unlock, then a lock when
// they return (what they do); a Condition evaluated in between is a short
// critical section of its own.
#include <sanitizer/tsan_interface.h>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "tests/sanitizers/tsan_real.h"

namespace {

// `real`: the library's function NAME (a mangled symbol) of type TYPE.
#define REAL(type, name) static const auto real = schemagate::tsan::Real<type>(name)

using absl::Condition;
using absl::Duration;
using absl::Mutex;
using absl::Time;

// What the calling thread is doing to a Mutex, for a Condition evaluated
// inside the library.
enum class Phase { kLocking, kUnlocking, kReleased };
struct Context {
  const Mutex* mu = nullptr;
  Phase phase = Phase::kReleased;
  unsigned flags = 0;
};
thread_local Context current;

class ScopedContext {
 public:
  ScopedContext(const Mutex* mu, Phase phase, unsigned flags) : saved_(current) {
    current = Context{mu, phase, flags};
  }
  ~ScopedContext() { current = saved_; }

 private:
  Context saved_;
};

struct Wrapped {
  const Condition* cond;
  Mutex* mu;
};

// Evaluates a waiter's Condition, maybe on another thread than the waiter's.
// The waiter's Wrapped (on its stack) is read before anything is released,
// and released after: the waiter acquires it when it returns, so no access
// of that frame counts as racing with the waiter's next use of its stack.
bool EvalAnnotated(void* arg) {
  auto* w = static_cast<Wrapped*>(arg);
  Mutex* mu = w->mu;
  const Condition* cond = w->cond;
  const Context c = current;
  bool res = false;
  if (c.mu != mu) {  // not inside an annotated call on MU: nothing to say
    res = cond->Eval();
  } else if (c.phase == Phase::kLocking) {  // inside pre_lock: as if locked, then back
    __tsan_mutex_post_lock(mu, c.flags, 0);
    res = cond->Eval();
    __tsan_mutex_pre_unlock(mu, c.flags);
    __tsan_mutex_post_unlock(mu, c.flags);
    __tsan_mutex_pre_lock(mu, c.flags);
  } else if (c.phase == Phase::kUnlocking) {  // inside pre_unlock: as if still locked
    __tsan_mutex_post_unlock(mu, c.flags);
    __tsan_mutex_pre_lock(mu, c.flags);
    __tsan_mutex_post_lock(mu, c.flags, 0);
    res = cond->Eval();
    __tsan_mutex_pre_unlock(mu, c.flags);
  } else {  // released: a critical section of its own
    __tsan_mutex_pre_lock(mu, c.flags);
    __tsan_mutex_post_lock(mu, c.flags, 0);
    res = cond->Eval();
    __tsan_mutex_pre_unlock(mu, c.flags);
    __tsan_mutex_post_unlock(mu, c.flags);
  }
  __tsan_release(w);
  return res;
}

// Whether the thread is already inside one of these functions for MU: the
// library calls its own public functions (AwaitWithTimeout calls
// AwaitWithDeadline), and only the outer call is annotated.
bool Nested(const Mutex* mu) { return current.mu == mu; }

// Locks MU with a Condition: FN(mu, wrapped condition) inside the lock
// annotations.
template <typename Fn>
auto LockWith(Mutex* mu, const Condition& cond, unsigned flags, Fn fn) {
  if (Nested(mu)) return fn(cond);
  Wrapped w{&cond, mu};
  Condition wrapped(&EvalAnnotated, &w);
  __tsan_mutex_pre_lock(mu, flags);
  auto res = [&] {
    ScopedContext ctx(mu, Phase::kLocking, flags);
    return fn(wrapped);
  }();
  __tsan_acquire(&w);
  __tsan_mutex_post_lock(mu, flags, 0);
  return res;
}

// Releases MU for the wait FN(wrapped condition or none) and holds it again.
template <typename Fn>
auto ReleasedFor(Mutex* mu, const Condition* cond, unsigned flags, Fn fn) {
  if (Nested(mu)) return fn(cond != nullptr ? *cond : Condition::kTrue);
  Wrapped w{cond, mu};
  Condition wrapped(&EvalAnnotated, &w);
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
  auto res = [&] {
    ScopedContext ctx(mu, Phase::kReleased, flags);
    return fn(wrapped);
  }();
  __tsan_acquire(&w);
  __tsan_mutex_pre_lock(mu, flags);
  __tsan_mutex_post_lock(mu, flags, 0);
  return res;
}

void LockPlain(Mutex* mu, unsigned flags, void (*real)(Mutex*)) {
  if (Nested(mu)) return real(mu);
  __tsan_mutex_pre_lock(mu, flags);
  {
    ScopedContext ctx(mu, Phase::kLocking, flags);
    real(mu);
  }
  __tsan_mutex_post_lock(mu, flags, 0);
}

void UnlockPlain(Mutex* mu, unsigned flags, void (*real)(Mutex*)) {
  if (Nested(mu)) return real(mu);
  __tsan_mutex_pre_unlock(mu, flags);
  {
    ScopedContext ctx(mu, Phase::kUnlocking, flags);
    real(mu);
  }
  __tsan_mutex_post_unlock(mu, flags);
}

bool TryLockPlain(Mutex* mu, unsigned flags, bool (*real)(Mutex*)) {
  if (Nested(mu)) return real(mu);
  flags |= __tsan_mutex_try_lock;
  __tsan_mutex_pre_lock(mu, flags);
  bool locked = [&] {
    ScopedContext ctx(mu, Phase::kLocking, flags);
    return real(mu);
  }();
  __tsan_mutex_post_lock(mu, locked ? flags : flags | __tsan_mutex_try_lock_failed, 0);
  return locked;
}

constexpr unsigned kRead = __tsan_mutex_read_lock;

using LockFn = void (*)(Mutex*);
using TryFn = bool (*)(Mutex*);
using CondFn = void (*)(Mutex*, const Condition&);
using CondTimeoutFn = bool (*)(Mutex*, const Condition&, Duration);
using CondDeadlineFn = bool (*)(Mutex*, const Condition&, Time);

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

Mutex::~Mutex() {
  REAL(LockFn, "_ZN4absl7debian35MutexD1Ev");
  __tsan_mutex_destroy(this, __tsan_mutex_not_static);
  real(this);
}

void Mutex::Lock() {
  REAL(LockFn, "_ZN4absl7debian35Mutex4LockEv");
  LockPlain(this, 0, real);
}
void Mutex::Unlock() {
  REAL(LockFn, "_ZN4absl7debian35Mutex6UnlockEv");
  UnlockPlain(this, 0, real);
}
bool Mutex::TryLock() {
  REAL(TryFn, "_ZN4absl7debian35Mutex7TryLockEv");
  return TryLockPlain(this, 0, real);
}
void Mutex::ReaderLock() {
  REAL(LockFn, "_ZN4absl7debian35Mutex10ReaderLockEv");
  LockPlain(this, kRead, real);
}
void Mutex::ReaderUnlock() {
  REAL(LockFn, "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  UnlockPlain(this, kRead, real);
}
bool Mutex::ReaderTryLock() {
  REAL(TryFn, "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  return TryLockPlain(this, kRead, real);
}

void Mutex::LockWhen(const Condition& cond) {
  REAL(CondFn, "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  LockWith(this, cond, 0, [&](const Condition& c) { return real(this, c), 0; });
}
void Mutex::ReaderLockWhen(const Condition& cond) {
  REAL(CondFn, "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  LockWith(this, cond, kRead, [&](const Condition& c) { return real(this, c), 0; });
}
bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(CondTimeoutFn,
       "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return LockWith(this, cond, 0, [&](const Condition& c) { return real(this, c, timeout); });
}
bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(CondTimeoutFn,
       "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return LockWith(this, cond, kRead, [&](const Condition& c) { return real(this, c, timeout); });
}
bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(CondDeadlineFn, "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return LockWith(this, cond, 0, [&](const Condition& c) { return real(this, c, deadline); });
}
bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(CondDeadlineFn,
       "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return LockWith(this, cond, kRead, [&](const Condition& c) { return real(this, c, deadline); });
}

// Await* are called with the lock held exclusively (schemagate never
// awaits under a reader lock).
void Mutex::Await(const Condition& cond) {
  REAL(CondFn, "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  ReleasedFor(this, &cond, 0, [&](const Condition& c) { return real(this, c), 0; });
}
bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  REAL(CondTimeoutFn, "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return ReleasedFor(this, &cond, 0, [&](const Condition& c) { return real(this, c, timeout); });
}
bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  REAL(CondDeadlineFn, "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return ReleasedFor(this, &cond, 0, [&](const Condition& c) { return real(this, c, deadline); });
}

using WaitFn = void (*)(CondVar*, Mutex*);
using WaitTimeoutFn = bool (*)(CondVar*, Mutex*, Duration);
using WaitDeadlineFn = bool (*)(CondVar*, Mutex*, Time);

void CondVar::Wait(Mutex* mu) {
  REAL(WaitFn, "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  ReleasedFor(mu, nullptr, 0, [&](const Condition&) { return real(this, mu), 0; });
}
bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  REAL(WaitTimeoutFn, "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  return ReleasedFor(mu, nullptr, 0, [&](const Condition&) { return real(this, mu, timeout); });
}
bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  REAL(WaitDeadlineFn, "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  return ReleasedFor(mu, nullptr, 0, [&](const Condition&) { return real(this, mu, deadline); });
}

// Notify publishes what was written before it to whoever sees the
// notification.
using NotifyFn = void (*)(Notification*);
using WaitNotFn = void (*)(const Notification*);
using WaitNotTimeoutFn = bool (*)(const Notification*, Duration);
using WaitNotDeadlineFn = bool (*)(const Notification*, Time);

// What a wait that saw the notification (NOTIFIED) returns, after acquiring it.
static bool Notified(const Notification* n, bool notified) {
  if (notified) __tsan_acquire(const_cast<Notification*>(n));
  return notified;
}

void Notification::Notify() {
  REAL(NotifyFn, "_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(this);
  real(this);
}
void Notification::WaitForNotification() const {
  REAL(WaitNotFn, "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  Notified(this, true);
}
bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  REAL(WaitNotTimeoutFn,
       "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  return Notified(this, real(this, timeout));
}
bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  REAL(WaitNotDeadlineFn,
       "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  return Notified(this, real(this, deadline));
}

ABSL_NAMESPACE_END
}  // namespace absl
