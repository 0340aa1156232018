#include "coordinator/engine/store.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"

#include "coordinator/base/status_macros.h"

namespace schemagate {

const AppliedMigration* DatabaseState::Find(int64_t version) const {
  auto it = std::lower_bound(
      applied.begin(), applied.end(), version,
      [](const AppliedMigration& m, int64_t v) { return m.version < v; });
  if (it == applied.end() || it->version != version) return nullptr;
  return &*it;
}

const AppliedRepeatable* DatabaseState::FindRepeatable(const std::string& name) const {
  auto it = std::lower_bound(
      repeatables.begin(), repeatables.end(), name,
      [](const AppliedRepeatable& r, const std::string& n) { return r.name < n; });
  if (it == repeatables.end() || it->name != name) return nullptr;
  return &*it;
}

bool DatabaseState::RepeatableTextApplied(const std::string& name,
                                          const std::string& checksum) const {
  auto it = repeatable_texts.find(name);
  return it != repeatable_texts.end() &&
         std::find(it->second.begin(), it->second.end(), checksum) != it->second.end();
}

absl::Status RunSession::RunTransactionalBatch(const std::vector<BatchStep>& steps,
                                               const std::function<void(size_t)>& on_step,
                                               size_t* committed, SqlFailure* failure) {
  *committed = 0;
  for (const BatchStep& step : steps) {
    on_step(*committed);
    RETURN_IF_ERROR(
        RunTransactional(*step.statements, step.limits, step.record, nullptr, failure));
    ++*committed;
  }
  return absl::OkStatus();
}

int64_t DatabaseState::AppliedHead() const {
  for (auto it = applied.rbegin(); it != applied.rend(); ++it) {
    if (!it->dirty) return it->version;
  }
  return 0;
}

absl::Status WaitForRunLock(const LockWaitOptions& options, Clock* clock,
                            const std::function<absl::StatusOr<bool>()>& try_lock) {
  const absl::Time start = clock->Now();
  absl::Duration backoff = absl::Milliseconds(20);
  absl::Time next_report = start + absl::Seconds(1);
  std::mt19937_64 rng(std::random_device{}());
  while (true) {
    ASSIGN_OR_RETURN(const bool taken, try_lock());
    if (taken) return absl::OkStatus();
    if (options.cancelled != nullptr && options.cancelled->load()) {
      return absl::CancelledError("stopped while waiting for the run lock");
    }
    const absl::Time now = clock->Now();
    if (now - start >= options.max_wait) {
      return absl::DeadlineExceededError(absl::StrCat(
          "another run held the lock for ", absl::FormatDuration(now - start),
          "; try again later (schemagatectl status shows the running coordinator)"));
    }
    if (options.on_wait && now >= next_report) {
      options.on_wait(now - start);
      next_report = now + absl::Seconds(5);
    }
    // Full jitter on an exponential backoff, capped at 500 ms.
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    clock->SleepFor(backoff * jitter(rng));
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
}

bool DatabaseState::TextFailed(int64_t version, const std::string& checksum) const {
  auto it = failed_texts.find(version);
  return it != failed_texts.end() &&
         std::find(it->second.begin(), it->second.end(), checksum) != it->second.end();
}

absl::Status Store::EnsureBookkeeping() {
  LockWaitOptions wait;
  wait.max_wait = absl::Seconds(30);
  ASSIGN_OR_RETURN(std::unique_ptr<RunSession> session, BeginRun(wait));
  return session->EnsureSchema();
}

}  // namespace schemagate
