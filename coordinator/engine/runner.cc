#include "coordinator/engine/runner.h"

#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "coordinator/base/log.h"
#include "coordinator/engine/readiness.h"
#include "coordinator/sql/sql_split.h"
#include "coordinator/base/status_macros.h"

namespace schemagate {
namespace {

// A history event of run `run_id`, about migration `m` when given.
EventRecord NewEvent(const char* kind, const std::string& run_id, const std::string& actor,
                     const Migration* m = nullptr) {
  EventRecord event;
  event.kind = kind;
  event.run_id = run_id;
  event.actor = actor;
  if (m != nullptr) {
    event.version = m->version;
    event.name = m->name;
  }
  return event;
}

// "migration 0003_add_index", "repeatable views".
std::string Subject(const PlanStep& step) {
  return step.migration != nullptr ? absl::StrCat("migration ", step.Label()) : step.Label();
}

// A history event of run `run_id` about the migration of `step`.
EventRecord NewEvent(const char* kind, const std::string& run_id, const std::string& actor,
                     const PlanStep& step) {
  EventRecord event = NewEvent(kind, run_id, actor);
  event.version = step.version();
  event.name = step.name();
  return event;
}

// " and 2 repeatable(s)"; "" for none.
std::string RepeatablesNote(size_t n) {
  return n == 0 ? std::string() : absl::StrCat(" and ", n, " repeatable(s)");
}

std::string DescribeFailure(const PlanStep& step, const SqlFailure& f) {
  return absl::StrCat(Subject(step), " failed",
                      f.statement_index > 0
                          ? absl::StrCat(" at statement ", f.statement_index, " (",
                                         step.script->path, ":", f.line, ")")
                          : "",
                      ": ", f.message, " [SQLSTATE ", f.sqlstate,
                      "]; the transaction was rolled back");
}

}  // namespace

std::string NewRunId() {
  static thread_local std::mt19937 rng(std::random_device{}());
  return absl::StrFormat("r-%08x", rng());
}

absl::Status Runner::TakeBackup(RunSession* session, const std::string& run_id,
                                const std::string& actor,
                                const std::function<void(RunEvent)>& emit) {
  if (!options_.backup) return absl::OkStatus();
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> taken = options_.backup(run_id);
  // A failed backup is its own kind of event: it has no SQLSTATE.
  EventRecord event = NewEvent(taken.ok() ? "backup" : "backup_failed", run_id, actor);
  event.duration = absl::Now() - start;
  event.message = taken.ok() ? *taken : std::string(taken.status().message());
  RETURN_IF_ERROR(session->RecordEvent(event));
  RunEvent progress;
  progress.kind = taken.ok() ? RunEvent::Kind::kBackupTaken : RunEvent::Kind::kBackupFailed;
  progress.elapsed = absl::Now() - start;
  progress.message = taken.ok() ? absl::StrCat("backup written: ", *taken) : event.message;
  emit(progress);
  if (!taken.ok()) LogError("run %s: %s", run_id, taken.status().message());
  return taken.status();
}

void Runner::RecordSchema(RunSession* session, const std::string& run_id) {
  if (!options_.describe_schema) return;
  SchemaRecord record;
  record.run_id = run_id;
  absl::StatusOr<SchemaDescription> described = options_.describe_schema();
  if (described.ok()) {
    record.fingerprint = described->fingerprint;
    record.description = described->text;
  } else {
    LogWarning("run %s: could not describe the schema for validate's drift check: %s", run_id,
               described.status().message());
  }
  absl::Status recorded = session->RecordSchema(record);
  if (!recorded.ok()) {
    LogWarning("run %s: could not record the schema fingerprint: %s", run_id, recorded.message());
  }
}

absl::Status Runner::NoteDrift(RunSession* session, const std::string& run_id,
                               const std::string& actor) {
  if (!options_.describe_schema) return absl::OkStatus();
  absl::StatusOr<std::optional<SchemaRecord>> recorded = store_->ReadSchemaRecord();
  if (!recorded.ok() || !recorded->has_value() || (*recorded)->fingerprint.empty()) {
    return absl::OkStatus();
  }
  absl::StatusOr<SchemaDescription> live = options_.describe_schema();
  if (!live.ok() || live->fingerprint == (*recorded)->fingerprint) return absl::OkStatus();
  const SchemaDiff diff =
      DiffSchemas(ParseSchemaDescription((*recorded)->description), *live);
  EventRecord event = NewEvent("schema_drift", run_id, actor);
  event.message = DescribeDrift(diff, (*recorded)->run_id);
  LogWarning("run %s: %s", run_id, event.message);
  return session->RecordEvent(event);
}

Runner::Runner(Store* store, const MigrationSet* set, RunnerOptions options)
    : store_(store), set_(set), options_(std::move(options)) {}

StepDefaults Runner::defaults() const {
  StepDefaults d;
  d.lock_timeout = options_.lock_timeout;
  d.statement_timeout = options_.statement_timeout;
  return d;
}

absl::StatusOr<std::unique_ptr<RunSession>> Runner::LockForRun(
    const std::atomic<bool>* cancelled, const std::function<void(RunEvent)>& emit) {
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
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<RunSession> session, store_->BeginRun(wait));
  RunEvent acquired;
  acquired.kind = RunEvent::Kind::kLockAcquired;
  acquired.elapsed = absl::Now() - start;
  emit(acquired);
  RETURN_IF_ERROR(session->EnsureSchema());
  return session;
}

absl::Status Runner::ExecuteStep(const RunContext& run, const PlanStep& step, int first,
                                 bool resuming) {
  const MigrationScript& script = *step.script;
  const absl::Time started = absl::Now();
  auto progress = [&](RunEvent::Kind kind) { return StepEvent(kind, step, started); };
  {
    RunEvent begin = progress(RunEvent::Kind::kMigrationStarted);
    if (!step.up) begin.message = "rolling back";
    if (resuming) begin.message = absl::StrCat("resuming at statement ", first + 1);
    run.emit(begin);
  }
  const StepRecord record = RecordOf(run, step);
  auto observer = [&](int index) {
    first = index;
    RunEvent event = progress(RunEvent::Kind::kStatementStarted);
    event.statement_index = index + 1;
    run.emit(event);
  };
  if (!step.transactional() && !resuming) RETURN_IF_ERROR(run.session->MarkDirty(record));
  absl::Duration backoff = options_.retry_backoff;
  absl::Status status;
  SqlFailure failure;
  for (int attempt = 0;; ++attempt) {
    failure = SqlFailure();
    status = step.transactional()
                 ? run.session->RunTransactional(script.statements, step.limits, record, observer,
                                                 &failure)
                 : run.session->RunNonTransactional(script.statements, first, step.limits,
                                                    record, observer, &failure);
    if (status.ok() || !failure.lock_timeout || attempt >= options_.lock_retries) break;
    RunEvent retry = progress(RunEvent::Kind::kLockTimeoutRetry);
    retry.message = absl::StrCat("lock_timeout (", absl::FormatDuration(step.limits.lock_timeout),
                                 ") tripped: ", failure.message, "; retry ", attempt + 1, "/",
                                 options_.lock_retries, " in ", absl::FormatDuration(backoff));
    run.emit(retry);
    LogWarning("run %s: %s: %s", run.run_id, step.Label(), retry.message);
    // In history too: an operator asking why a rollout took long sees the waits.
    EventRecord waited = NewEvent("lock_timeout", run.run_id, run.actor, step);
    waited.duration = retry.elapsed;
    waited.sqlstate = failure.sqlstate;
    waited.message = retry.message;
    RETURN_IF_ERROR(run.session->RecordEvent(waited));
    options_.sleep(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(30));
  }
  if (status.ok() && !step.transactional()) {
    status = run.session->FinishDirty(record, absl::Now() - started);
  }
  if (status.ok()) {
    RunEvent done = progress(RunEvent::Kind::kMigrationFinished);
    if (!step.up) done.message = "rolled back";
    run.emit(done);
    LogInfo("run %s: %s%s in %s", run.run_id, step.up ? "applied " : "rolled back ", step.Label(),
            absl::FormatDuration(absl::Now() - started));
    return absl::OkStatus();
  }
  if (!absl::IsFailedPrecondition(status) || failure.sqlstate.empty()) return status;
  return ReportFailure(run, step, resuming, started, failure);
}

RunEvent Runner::StepEvent(RunEvent::Kind kind, const PlanStep& step, absl::Time started) {
  RunEvent event;
  event.kind = kind;
  event.version = step.version();
  event.name = step.name();
  event.statement_count = static_cast<int>(step.script->statements.size());
  event.elapsed = absl::Now() - started;
  return event;
}

StepRecord Runner::RecordOf(const RunContext& run, const PlanStep& step) {
  StepRecord record;
  record.version = step.version();
  record.name = step.name();
  record.checksum = step.checksum();
  record.repeatable = step.repeatable != nullptr;
  if (record.repeatable) {
    record.message = step.applied_checksum.empty()
                         ? absl::StrCat("applied (new), checksum ", step.checksum().substr(0, 12))
                         : absl::StrCat("re-applied (changed): checksum ",
                                        step.applied_checksum.substr(0, 12), " -> ",
                                        step.checksum().substr(0, 12));
  }
  record.run_id = run.run_id;
  record.actor = run.actor;
  record.up = step.up;
  return record;
}

absl::Status Runner::ReportFailure(const RunContext& run, const PlanStep& step, bool resuming,
                                   absl::Time started, const SqlFailure& failure) {
  const MigrationScript& script = *step.script;
  const char* verb = step.up ? "" : "rollback ";
  auto progress = [&](RunEvent::Kind kind) { return StepEvent(kind, step, started); };
  EventRecord event = NewEvent("failure", run.run_id, run.actor, step);
  event.duration = absl::Now() - started;
  event.sqlstate = failure.sqlstate;
  event.message = absl::StrCat(verb, resuming ? "resume failed: " : "", failure.message);
  event.statement_index = failure.statement_index;
  event.line = failure.line;
  // The text that failed: a coordinator (or an app) that still has it later
  // holds an older file, not an edited one (DatabaseState::failed_texts).
  // A lock timeout says nothing about the text.
  if (step.up && !failure.lock_timeout) event.checksum = step.checksum();
  // A migration that keeps timing out on its locks is not broken: the set
  // stays pending and a later run tries again. A failed no-transaction step
  // leaves its row dirty instead.
  if (step.up && !failure.lock_timeout && step.transactional()) {
    RETURN_IF_ERROR(run.session->SetFailure(failure));
  }
  RETURN_IF_ERROR(run.session->RecordEvent(event));
  RunEvent failed = progress(RunEvent::Kind::kMigrationFailed);
  failed.failure = failure;
  const std::string where = absl::StrCat(" at statement ", failure.statement_index, " (",
                                         script.path, ":", failure.line, "): ", failure.message,
                                         " [SQLSTATE ", failure.sqlstate, "]");
  if (failure.lock_timeout) {
    failed.message = absl::StrCat(
        Subject(step), " could not take its locks within lock_timeout ",
        absl::FormatDuration(step.limits.lock_timeout), " after ", options_.lock_retries + 1,
        " tries (a long transaction holds them); the run will be tried again later");
    run.emit(failed);
    return absl::UnavailableError(failed.message);
  }
  if (!step.up) {
    failed.message = absl::StrCat("rollback of ", step.Label(), " failed", where);
  } else if (!step.transactional()) {
    failed.message = absl::StrCat(resuming ? "resume of " : "no-transaction migration ",
                                  step.Label(), " failed", where,
                                  "; its row is left dirty: fix the database, then "
                                  "'schemagatectl repair'");
  } else {
    failed.message = DescribeFailure(step, failure);
  }
  run.emit(failed);
  return absl::FailedPreconditionError(failed.message);
}

Runner::RunContext Runner::NewRun(const std::string& actor, const ProgressSink& progress,
                                  RunOutcome* outcome) const {
  outcome->run_id = NewRunId();
  RunContext run;
  run.run_id = outcome->run_id;
  run.actor = actor.empty() ? options_.coordinator_id : actor;
  // Every progress message carries the run's id and counts so far.
  run.emit = [outcome, progress](RunEvent event) {
    event.run_id = outcome->run_id;
    event.applied = outcome->applied;
    event.held_back = outcome->held_back;
    if (progress) progress(event);
  };
  return run;
}

absl::Status Runner::FinishRun(const RunContext& run, absl::Time run_start, absl::Status result,
                               const std::string& message) {
  EventRecord finish = NewEvent("run_finish", run.run_id, run.actor);
  finish.duration = absl::Now() - run_start;
  finish.message = message;
  absl::Status recorded = run.session->RecordEvent(finish);
  RunEvent end;
  end.kind = RunEvent::Kind::kRunFinished;
  end.elapsed = absl::Now() - run_start;
  end.message = message;
  run.emit(end);
  if (!result.ok()) return result;
  return recorded;
}

absl::Status BlockerStatus(const PlanBlocker& blocker) {
  switch (blocker.kind) {
    case BlockerKind::kUnknownVersion: return absl::InvalidArgumentError(blocker.message);
    case BlockerKind::kHold:
    case BlockerKind::kBreakingHeld:
    case BlockerKind::kNone: return absl::OkStatus();
    default: return absl::FailedPreconditionError(blocker.message);
  }
}

absl::StatusOr<RunOutcome> Runner::Apply(const RunRequest& request, const ProgressSink& progress,
                                         const std::atomic<bool>* cancelled) {
  RunOutcome outcome;
  RunContext run = NewRun(request.actor, progress, &outcome);
  if (request.target_version != 0 && set_->Find(request.target_version) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target version ", request.target_version, " is not in the migration set (head ",
        set_->Head(), ")"));
  }
  const absl::Time run_start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<RunSession> session, LockForRun(cancelled, run.emit));
  run.session = session.get();
  // Never trust a cache: what to run is decided from this read, under the lock.
  ASSIGN_OR_RETURN(DatabaseState state, session->ReadState());
  if (options_.permissions.adopt && state.applied.empty() && !state.foreign.empty()) {
    AdoptRequest adopt;
    adopt.actor = run.actor;
    RETURN_IF_ERROR(AdoptUnderLock(session.get(), state, adopt, outcome.run_id).status());
    ASSIGN_OR_RETURN(state, session->ReadState());
  }
  PlanRequest plan_request;
  plan_request.target_version = request.target_version;
  plan_request.respect_hold = request.respect_hold;
  plan_request.retry_failed = request.retry_failed;
  plan_request.allow_breaking = request.allow_breaking;
  plan_request.breaking_gate = request.breaking_gate;
  plan_request.permissions = options_.permissions;
  const RunPlan plan = PlanRun(*set_, state, plan_request, defaults());
  if (plan.stopped()) RETURN_IF_ERROR(BlockerStatus(plan.blocker));
  if (plan.lifts_hold) RETURN_IF_ERROR(session->SetHold(std::nullopt));
  if (plan.blocker.kind == BlockerKind::kBreakingHeld) {
    // Every pending migration the plan leaves out, as the dry run counts them.
    outcome.held_back = static_cast<int>(plan.pending.size() - plan.steps.size());
    outcome.held_back_message = plan.blocker.message;
  }
  if (plan.steps.empty() && plan.repeatables.empty()) {
    RunEvent event;
    event.kind = RunEvent::Kind::kRunFinished;
    event.elapsed = absl::Now() - run_start;
    event.message = plan.blocked() ? plan.blocker.message
                                   : absl::StrCat("nothing to apply: the database is at ",
                                                  state.AppliedHead());
    run.emit(event);
    return outcome;
  }

  // Only a run with steps to take is worth a drift check and a backup.
  RETURN_IF_ERROR(NoteDrift(session.get(), outcome.run_id, run.actor));
  RETURN_IF_ERROR(TakeBackup(session.get(), outcome.run_id, run.actor, run.emit));
  ASSIGN_OR_RETURN(const int64_t epoch, session->BumpEpoch());
  if (plan.clears_failure) RETURN_IF_ERROR(session->SetFailure(std::nullopt));
  const int64_t target = request.target_version == 0 ? set_->Head() : request.target_version;
  {
    EventRecord start = NewEvent("run_start", outcome.run_id, run.actor);
    start.message = absl::StrCat("applying ", plan.steps.size(), " migration(s) up to ", target,
                                 RepeatablesNote(plan.repeatables.size()), " (epoch ", epoch,
                                 ")");
    RETURN_IF_ERROR(session->RecordEvent(start));
  }
  LogInfo("run %s: epoch %d, %d migration(s) to apply up to %d", outcome.run_id, epoch,
          plan.steps.size(), target);

  absl::Status result = absl::OkStatus();
  // Steps before this one are not sent in a batch again (one that hit its
  // lock_timeout in a batch is retried by ExecuteStep).
  size_t unbatched_until = 0;
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const PlanStep& step = plan.steps[i];
    const Migration& m = *step.migration;
    if (cancelled != nullptr && cancelled->load()) {
      result = absl::CancelledError(
          "the coordinator is shutting down; the run stopped between migrations");
      break;
    }
    if (const size_t n = i < unbatched_until ? 0 : BatchableFrom(plan.steps, i); n > 1) {
      size_t done = 0;
      result = ExecuteBatch(run, plan.steps, i, n, &done);
      outcome.applied += static_cast<int>(done);
      if (!result.ok()) break;
      unbatched_until = i + done + 1;
      if (done > 0) {
        i += done - 1;  // the loop's ++i moves to the first step not done
        continue;
      }
      // The first step hit its lock_timeout: ExecuteStep retries it below.
    }
    if (m.breaking()) {
      // Re-read under the lock just before it runs: who is live right now.
      ASSIGN_OR_RETURN(DatabaseState now, session->ReadState());
      const std::vector<InstanceRecord> older = InstancesBelow(now, m.version);
      if (!request.allow_breaking && !older.empty()) {
        outcome.held_back = static_cast<int>(plan.pending.size()) - outcome.applied;
        outcome.held_back_message = absl::StrCat(
            "breaking migration ", m.Label(), " held back: ", older.size(),
            " live instance(s) still need the schema before it: ", DescribeInstances(older),
            "; it is applied once they are gone (or force it with 'schemagatectl apply "
            "--allow-breaking')");
        break;
      }
      if (request.allow_breaking && !older.empty()) {
        EventRecord forced = NewEvent("breaking_forced", outcome.run_id, run.actor, &m);
        forced.message = absl::StrCat("applied with --allow-breaking while ", older.size(),
                                      " live instance(s) need the old schema: ",
                                      DescribeInstances(older));
        RETURN_IF_ERROR(session->RecordEvent(forced));
        LogWarning("run %s: %s: %s (by %s)", outcome.run_id, m.Label(), forced.message,
                   run.actor);
      }
    }
    result = ExecuteStep(run, step, 0, /*resuming=*/false);
    if (!result.ok()) break;
    ++outcome.applied;
  }
  // Then the repeatables, in name order, once every versioned one is in.
  for (size_t i = 0; result.ok() && outcome.held_back == 0 && i < plan.repeatables.size(); ++i) {
    if (cancelled != nullptr && cancelled->load()) {
      result = absl::CancelledError(
          "the coordinator is shutting down; the run stopped between migrations");
      break;
    }
    result = ExecuteStep(run, plan.repeatables[i], 0, /*resuming=*/false);
    if (result.ok()) ++outcome.repeatables_applied;
  }
  if (!outcome.held_back_message.empty()) {
    LogInfo("run %s: %s", outcome.run_id, outcome.held_back_message);
  }

  if (absl::IsAborted(result)) return result;  // The connection is gone: record nothing.
  if (outcome.applied > 0 || outcome.repeatables_applied > 0 || !result.ok()) {
    RecordSchema(session.get(), outcome.run_id);
  }
  RETURN_IF_ERROR(FinishRun(
      run, run_start, result,
      result.ok() ? absl::StrCat("applied ", outcome.applied, " migration(s)",
                                 RepeatablesNote(outcome.repeatables_applied),
                                 outcome.held_back_message.empty() ? "" : "; ",
                                 outcome.held_back_message)
                  : absl::StrCat("stopped after ", outcome.applied, " migration(s)",
                                 RepeatablesNote(outcome.repeatables_applied), ": ",
                                 result.message())));
  return outcome;
}

absl::StatusOr<RunOutcome> Runner::Rollback(const RollbackRequest& request,
                                            const ProgressSink& progress,
                                            const std::atomic<bool>* cancelled) {
  RunOutcome outcome;
  RunContext run = NewRun(request.actor, progress, &outcome);
  if (request.target_version < 0) {
    return absl::InvalidArgumentError("the rollback target must not be negative");
  }
  const absl::Time run_start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<RunSession> session, LockForRun(cancelled, run.emit));
  run.session = session.get();
  ASSIGN_OR_RETURN(DatabaseState state, session->ReadState());
  PlanRequest plan_request;
  plan_request.direction = PlanRequest::Direction::kDown;
  plan_request.target_version = request.target_version;
  plan_request.force = request.force;
  const RunPlan plan = PlanRun(*set_, state, plan_request, defaults());
  if (plan.blocked()) return BlockerStatus(plan.blocker);
  if (plan.steps.empty()) {
    RunEvent event;
    event.kind = RunEvent::Kind::kRunFinished;
    event.message = absl::StrCat("nothing to roll back: the database is at ", state.AppliedHead());
    run.emit(event);
    return outcome;
  }
  RETURN_IF_ERROR(TakeBackup(session.get(), outcome.run_id, run.actor, run.emit));
  ASSIGN_OR_RETURN(const int64_t epoch, session->BumpEpoch());
  // Hold automatic runs below the target, or the next one re-applies them.
  RETURN_IF_ERROR(session->SetHold(request.target_version));
  {
    EventRecord start = NewEvent("run_start", outcome.run_id, run.actor);
    start.message = absl::StrCat("rolling back ", plan.steps.size(), " migration(s) to ",
                                 request.target_version, " (epoch ", epoch, ")");
    RETURN_IF_ERROR(session->RecordEvent(start));
  }
  if (const std::vector<InstanceRecord> stranded =
          InstancesRequiringAbove(state, request.target_version);
      !stranded.empty()) {
    // Only a forced rollback gets here with live instances that need more.
    EventRecord forced = NewEvent("rollback_forced", outcome.run_id, run.actor);
    forced.version = request.target_version;
    forced.message = absl::StrCat(
        "rolled back to ", request.target_version, " with --force while ", stranded.size(),
        " live instance(s) need a version above it: ",
        DescribeInstances(stranded, 5, InstanceDetail::kRequired));
    RETURN_IF_ERROR(session->RecordEvent(forced));
    LogWarning("run %s: %s (by %s)", outcome.run_id, forced.message, run.actor);
  }
  absl::Status result = absl::OkStatus();
  for (const PlanStep& step : plan.steps) {
    result = ExecuteStep(run, step, 0, /*resuming=*/false);
    if (!result.ok()) break;
    ++outcome.applied;
  }
  if (absl::IsAborted(result)) return result;
  RecordSchema(session.get(), outcome.run_id);
  RETURN_IF_ERROR(FinishRun(
      run, run_start, result,
      result.ok() ? absl::StrCat("rolled back ", outcome.applied, " migration(s) to ",
                                 request.target_version,
                                 "; automatic runs hold below it until 'schemagatectl apply'")
                  : absl::StrCat("rollback stopped after ", outcome.applied,
                                 " migration(s): ", result.message())));
  return outcome;
}

}  // namespace schemagate
