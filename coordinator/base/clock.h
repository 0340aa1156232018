// The clock as an interface, so tests can move time by hand instead of
// sleeping (DESIGN.md layer table: base holds status macros, log, clock).
#ifndef SCHEMAGATE_COORDINATOR_BASE_CLOCK_H_
#define SCHEMAGATE_COORDINATOR_BASE_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace schemagate {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  virtual void SleepFor(absl::Duration d) = 0;
};

// The wall clock.
class RealClock : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
  // One process-wide instance.
  static RealClock* Get() {
    static RealClock* clock = new RealClock();
    return clock;
  }
};

// Time moves only when a test says so: SleepFor advances it at once.
class ManualClock : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::FromUnixSeconds(1800000000)) : now_(start) {}
  absl::Time Now() override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void SleepFor(absl::Duration d) override { Advance(d); }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    if (d > absl::ZeroDuration()) now_ += d;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_BASE_CLOCK_H_
