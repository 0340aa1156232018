#include "coordinator/runner.h"

#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "coordinator/log.h"
#include "coordinator/readiness.h"
#include "coordinator/status_macros.h"

namespace schemagate {
namespace {

constexpr char kLockNotAvailable[] = "55P03";

StatementLimits LimitsFor(const MigrationScript& script, const RunnerOptions& options) {
  StatementLimits limits;
  limits.lock_timeout = script.directives.lock_timeout.value_or(options.lock_timeout);
  limits.statement_timeout =
      script.directives.statement_timeout.value_or(options.statement_timeout);
  return limits;
}

std::string DescribeFailure(const Migration& m, const SqlFailure& f) {
  return absl::StrCat("migration ", m.Label(), " failed",
                      f.statement_index > 0
                          ? absl::StrCat(" at statement ", f.statement_index, " (", m.up.path,
                                         ":", f.line, ")")
                          : "",
                      ": ", f.message, " [SQLSTATE ", f.sqlstate,
                      "]; the transaction was rolled back");
}

}  // namespace

int CountInstancesBelow(const DatabaseState& state, int64_t version) {
  int n = 0;
  for (const InstanceRecord& i : state.live_instances) n += i.known_version < version;
  return n;
}

std::string NewRunId() {
  static thread_local std::mt19937 rng(std::random_device{}());
  return absl::StrFormat("r-%08x", rng());
}

Runner::Runner(Store* store, const MigrationSet* set, RunnerOptions options)
    : store_(store), set_(set), options_(std::move(options)) {}

absl::StatusOr<RunOutcome> Runner::Apply(const RunRequest& request, const ProgressSink& progress,
                                         const std::atomic<bool>* cancelled) {
  RunOutcome outcome;
  outcome.run_id = NewRunId();
  const std::string actor = request.actor.empty() ? options_.coordinator_id : request.actor;
  auto emit = [&](RunEvent event) {
    event.run_id = outcome.run_id;
    event.applied = outcome.applied;
    if (progress) progress(event);
  };
  const int64_t target = request.target_version == 0 ? set_->Head() : request.target_version;
  if (request.target_version != 0 && set_->Find(request.target_version) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target version ", request.target_version, " is not in the migration set (head ",
        set_->Head(), ")"));
  }

  LockWaitOptions wait;
  wait.max_wait = options_.max_lock_wait;
  wait.cancelled = cancelled;
  wait.on_wait = [&](absl::Duration waited) {
    RunEvent event;
    event.kind = RunEvent::Kind::kLockWait;
    event.elapsed = waited;
    event.message = "another run holds the lock; waiting";
    emit(event);
  };
  const absl::Time run_start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<RunSession> session, store_->BeginRun(wait));
  {
    RunEvent event;
    event.kind = RunEvent::Kind::kLockAcquired;
    event.elapsed = absl::Now() - run_start;
    emit(event);
  }
  RETURN_IF_ERROR(session->EnsureSchema());
  // Never trust a cache: what to run is decided from this read, under the lock.
  ASSIGN_OR_RETURN(DatabaseState state, session->ReadState());

  for (const AppliedMigration& row : state.applied) {
    if (row.dirty) {
      return absl::FailedPreconditionError(absl::StrCat(
          "migration ", row.version, " (", row.name,
          ") is dirty: a no-transaction migration stopped part-way; check the database, then "
          "run 'schemagatectl repair'"));
    }
  }
  std::vector<std::string> conflicts = FindConflicts(*set_, state);
  if (!conflicts.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the migration set disagrees with the database: ", absl::StrJoin(conflicts, "; "),
        "; nothing runs until an operator resolves it"));
  }
  std::vector<const Migration*> pending;
  for (const Migration& m : set_->migrations()) {
    if (m.version > target) break;
    if (state.Find(m.version) == nullptr) pending.push_back(&m);
  }
  if (state.failure) {
    const Migration* failed = set_->Find(state.failure->version);
    const bool unchanged = failed != nullptr && failed->checksum == state.failure->checksum;
    const bool still_pending = state.Find(state.failure->version) == nullptr;
    if (unchanged && still_pending && !request.retry_failed) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the last run failed on migration ", state.failure->version, ": ",
          state.failure->message, " [SQLSTATE ", state.failure->sqlstate,
          "]; fix the file and redeploy, or retry with 'schemagatectl apply'"));
    }
  }
  if (pending.empty()) {
    RunEvent event;
    event.kind = RunEvent::Kind::kRunFinished;
    event.elapsed = absl::Now() - run_start;
    event.message = absl::StrCat("nothing to apply: the database is at ", state.AppliedHead());
    emit(event);
    return outcome;
  }

  ASSIGN_OR_RETURN(const int64_t epoch, session->BumpEpoch());
  if (state.failure) RETURN_IF_ERROR(session->SetFailure(std::nullopt));
  {
    EventRecord start;
    start.kind = "run_start";
    start.run_id = outcome.run_id;
    start.actor = actor;
    start.message = absl::StrCat("applying ", pending.size(), " migration(s) up to ", target,
                                 " (epoch ", epoch, ")");
    RETURN_IF_ERROR(session->RecordEvent(start));
  }
  LogInfo("run %s: epoch %d, %d migration(s) to apply up to %d", outcome.run_id, epoch,
          pending.size(), target);

  absl::Status result = absl::OkStatus();
  std::string held_back_message;
  for (const Migration* m : pending) {
    if (cancelled != nullptr && cancelled->load()) {
      result = absl::CancelledError("the coordinator is shutting down; the run stopped between migrations");
      break;
    }
    if (m->breaking()) {
      // Re-read under the lock just before it runs: who is live right now.
      ASSIGN_OR_RETURN(DatabaseState now, session->ReadState());
      const int old_instances = CountInstancesBelow(now, m->version);
      if (!request.allow_breaking &&
          !(request.breaking_gate && request.breaking_gate(*m, now))) {
        ++outcome.held_back;
        held_back_message = absl::StrCat(
            "breaking migration ", m->Label(), " held back: ", old_instances,
            " live instance(s) still need the schema before it",
            old_instances > 0 ? "; it is applied once they are gone (or force it with "
                                "'schemagatectl apply --allow-breaking')"
                              : " (grace period running)");
        LogInfo("run %s: %s", outcome.run_id, held_back_message);
        break;
      }
      if (request.allow_breaking && old_instances > 0) {
        EventRecord forced;
        forced.kind = "breaking_forced";
        forced.version = m->version;
        forced.name = m->name;
        forced.run_id = outcome.run_id;
        forced.actor = actor;
        forced.message = absl::StrCat("applied with --allow-breaking while ", old_instances,
                                      " live instance(s) need the old schema");
        RETURN_IF_ERROR(session->RecordEvent(forced));
        LogWarning("run %s: %s: %s (by %s)", outcome.run_id, m->Label(), forced.message, actor);
      }
    }
    if (auto lint = options_.refused_by_lint.find(m->version);
        lint != options_.refused_by_lint.end()) {
      // Refused before any statement runs; recorded like a failure so that
      // agents and operators see why, and retried once the file changes.
      SqlFailure failure;
      failure.version = m->version;
      failure.name = m->name;
      failure.checksum = m->checksum;
      failure.sqlstate = "lint";
      failure.message = absl::StrCat("refused by lint: ", lint->second);
      failure.at = absl::Now();
      failure.coordinator_id = options_.coordinator_id;
      RETURN_IF_ERROR(session->SetFailure(failure));
      EventRecord event;
      event.kind = "failure";
      event.version = m->version;
      event.name = m->name;
      event.run_id = outcome.run_id;
      event.actor = actor;
      event.sqlstate = "lint";
      event.message = failure.message;
      RETURN_IF_ERROR(session->RecordEvent(event));
      result = absl::FailedPreconditionError(absl::StrCat(
          "migration ", m->Label(), " is ", failure.message,
          "; fix the file (or mark a contract change -- schemagate:breaking), or start "
          "schemagated with --lint=warn"));
      break;
    }
    const absl::Time started = absl::Now();
    const int count = static_cast<int>(m->up.statements.size());
    RunEvent begin;
    begin.kind = RunEvent::Kind::kMigrationStarted;
    begin.version = m->version;
    begin.name = m->name;
    begin.statement_count = count;
    emit(begin);
    StepRecord record;
    record.version = m->version;
    record.name = m->name;
    record.checksum = m->checksum;
    record.run_id = outcome.run_id;
    record.actor = actor;
    record.up = true;
    const StatementLimits limits = LimitsFor(m->up, options_);
    int first = 0;
    auto observer = [&](int index) {
      first = index;
      RunEvent event;
      event.kind = RunEvent::Kind::kStatementStarted;
      event.version = m->version;
      event.name = m->name;
      event.statement_index = index + 1;
      event.statement_count = count;
      event.elapsed = absl::Now() - started;
      emit(event);
    };
    if (!m->transactional()) RETURN_IF_ERROR(session->MarkDirty(record));
    absl::Duration backoff = options_.retry_backoff;
    absl::Status status;
    SqlFailure failure;
    for (int attempt = 0;; ++attempt) {
      failure = SqlFailure();
      status = m->transactional()
                   ? session->RunTransactional(m->up.statements, limits, record, observer, &failure)
                   : session->RunNonTransactional(m->up.statements, first, limits, record,
                                                  observer, &failure);
      if (status.ok() || failure.sqlstate != kLockNotAvailable ||
          attempt >= options_.lock_retries) {
        break;
      }
      RunEvent retry;
      retry.kind = RunEvent::Kind::kLockTimeoutRetry;
      retry.version = m->version;
      retry.name = m->name;
      retry.elapsed = absl::Now() - started;
      retry.message = absl::StrCat("lock_timeout (", absl::FormatDuration(limits.lock_timeout),
                                   ") tripped: ", failure.message, "; retry ", attempt + 1, "/",
                                   options_.lock_retries, " in ", absl::FormatDuration(backoff));
      emit(retry);
      LogWarning("run %s: %s: %s", outcome.run_id, m->Label(), retry.message);
      options_.sleep(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(30));
    }
    if (status.ok() && !m->transactional()) {
      status = session->FinishDirty(record, absl::Now() - started);
    }
    if (!status.ok()) {
      if (absl::IsFailedPrecondition(status) && !failure.sqlstate.empty()) {
        const bool lock_exhausted = failure.sqlstate == kLockNotAvailable;
        EventRecord event;
        event.kind = "failure";
        event.version = m->version;
        event.name = m->name;
        event.run_id = outcome.run_id;
        event.actor = actor;
        event.duration = absl::Now() - started;
        event.sqlstate = failure.sqlstate;
        event.message = failure.message;
        event.statement_index = failure.statement_index;
        event.line = failure.line;
        // A migration that keeps timing out on its locks is not broken: the
        // set stays pending and a later run tries again.
        if (!lock_exhausted && m->transactional()) {
          RETURN_IF_ERROR(session->SetFailure(failure));
        }
        RETURN_IF_ERROR(session->RecordEvent(event));
        RunEvent failed;
        failed.kind = RunEvent::Kind::kMigrationFailed;
        failed.version = m->version;
        failed.name = m->name;
        failed.elapsed = absl::Now() - started;
        failed.failure = failure;
        failed.message = DescribeFailure(*m, failure);
        emit(failed);
        if (lock_exhausted) {
          result = absl::UnavailableError(absl::StrCat(
              "migration ", m->Label(), " could not take its locks within lock_timeout ",
              absl::FormatDuration(limits.lock_timeout), " after ", options_.lock_retries + 1,
              " tries (a long transaction holds them); the run will be tried again later"));
        } else if (!m->transactional()) {
          result = absl::FailedPreconditionError(absl::StrCat(
              "no-transaction migration ", m->Label(), " failed at statement ",
              failure.statement_index, " (", m->up.path, ":", failure.line, "): ",
              failure.message, " [SQLSTATE ", failure.sqlstate,
              "]; its row is left dirty: fix the database, then 'schemagatectl repair'"));
        } else {
          result = absl::FailedPreconditionError(DescribeFailure(*m, failure));
        }
      } else {
        result = status;
      }
      break;
    }
    ++outcome.applied;
    RunEvent done;
    done.kind = RunEvent::Kind::kMigrationFinished;
    done.version = m->version;
    done.name = m->name;
    done.statement_count = count;
    done.elapsed = absl::Now() - started;
    emit(done);
    LogInfo("run %s: applied %s in %s", outcome.run_id, m->Label(),
            absl::FormatDuration(absl::Now() - started));
  }

  if (absl::IsAborted(result)) return result;  // The connection is gone: record nothing.
  EventRecord finish;
  finish.kind = "run_finish";
  finish.run_id = outcome.run_id;
  finish.actor = actor;
  finish.duration = absl::Now() - run_start;
  finish.message = result.ok() ? absl::StrCat("applied ", outcome.applied, " migration(s)",
                                              held_back_message.empty() ? "" : "; ",
                                              held_back_message)
                               : absl::StrCat("stopped after ", outcome.applied,
                                              " migration(s): ", result.message());
  absl::Status recorded = session->RecordEvent(finish);
  RunEvent end;
  end.kind = RunEvent::Kind::kRunFinished;
  end.elapsed = absl::Now() - run_start;
  end.message = finish.message;
  emit(end);
  if (!result.ok()) return result;
  RETURN_IF_ERROR(recorded);
  return outcome;
}

}  // namespace schemagate
