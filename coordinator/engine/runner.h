// The runner sequences one run (DESIGN.md "Runs: the lock"): take the lock on
// a dedicated connection, re-read the state under it, bump the epoch, apply
// each pending migration on that same connection, record events, unlock.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_RUNNER_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/engine/adopt.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/run_plan.h"
#include "coordinator/engine/schema_description.h"
#include "coordinator/engine/store.h"

namespace schemagate {

struct RunnerOptions {
  // Recorded as applied_by and as the actor of automatic runs.
  std::string coordinator_id = "schemagated";
  // Defaults for migrations without lock-timeout / statement-timeout directives.
  absl::Duration lock_timeout = absl::Seconds(5);
  absl::Duration statement_timeout = absl::ZeroDuration();
  // A lock_timeout (SqlFailure::lock_timeout) is retried this many times, backing off
  // from retry_backoff (doubling, at most 30 s) between tries.
  int lock_retries = 5;
  absl::Duration retry_backoff = absl::Seconds(1);
  // How long a run waits for another run to release the lock.
  absl::Duration max_lock_wait = absl::InfiniteDuration();
  // Refusals of the plan this coordinator's flags lift (--allow-out-of-order,
  // --allow-non-empty), for every apply and rehearsal.
  PlanPermissions permissions;
  // Called under the lock before a run that changes the schema (apply with
  // pending migrations, rollback); returns "path (bytes)" for history. An
  // error stops the run before anything changes. Unset: no backups.
  std::function<absl::StatusOr<std::string>(const std::string& run_id)> backup;
  // Describes the user schema (a fresh connection; coordinator/postgres/catalog.h).
  // Called under the lock after every run that changed the schema, and the
  // result recorded for validate's drift check; before an apply, a
  // description that differs from the recorded one is logged and recorded
  // in history as schema_drift. Unset: no schema is recorded.
  std::function<absl::StatusOr<SchemaDescription>()> describe_schema;
  // Injectable sleep (tests).
  std::function<void(absl::Duration)> sleep = [](absl::Duration d) { absl::SleepFor(d); };
};

struct RunRequest {
  // Apply up to this version; 0 means the set's head.
  int64_t target_version = 0;
  // Apply breaking migrations regardless of `breaking_gate`.
  bool allow_breaking = false;
  // Retry a migration whose last run failed although its file is unchanged
  // (an operator asked). Without it such a set stays FAILED.
  bool retry_failed = false;
  // Who asked; the coordinator id for automatic runs.
  std::string actor;
  // Automatic runs stop below a rollback's hold; an operator's apply
  // (false) clears the hold.
  bool respect_hold = false;
  // Run the pending transactional migrations in one transaction on the lock
  // session and roll it back: nothing is applied or recorded.
  bool rehearse = false;
  // For breaking migrations without allow_breaking: true lets it run now
  // (PlanRequest::breaking_gate). Called under the lock with the state read
  // under it. Unset means breaking migrations are held back.
  std::function<bool(const Migration&, const DatabaseState&)> breaking_gate;
};

// Progress of a run, reported as it happens.
struct RunEvent {
  enum class Kind {
    kLockWait,
    kLockAcquired,
    kMigrationStarted,
    kStatementStarted,
    kMigrationFinished,
    kMigrationFailed,
    kLockTimeoutRetry,
    kRunFinished,
    kBackupTaken,
    kBackupFailed,
  };
  Kind kind = Kind::kRunFinished;
  std::string run_id;
  int64_t version = 0;
  std::string name;
  int statement_index = 0;  // 1-based
  int statement_count = 0;
  absl::Duration elapsed;
  std::string message;
  std::optional<SqlFailure> failure;
  int applied = 0;
  // Migrations held back so far (a breaking one waiting for live instances).
  int held_back = 0;
};

using ProgressSink = std::function<void(const RunEvent&)>;

struct RunOutcome {
  std::string run_id;
  int applied = 0;
  // Repeatable migrations applied (new, or their file changed).
  int repeatables_applied = 0;
  // Migrations left pending because they are breaking and the gate said no.
  int held_back = 0;
  // Why they were held back (the plan's blocker message), "" if none were.
  std::string held_back_message;
};

struct RollbackRequest {
  // Roll back every applied version above this one (0: all).
  int64_t target_version = 0;
  std::string actor;
  // Roll back although live instances need a version above the target
  // (recorded in history as rollback_forced). Without it the rollback is
  // refused, naming them.
  bool force = false;
};

// An operator's repair of the bookkeeping (schemagatectl repair).
struct RepairRequest {
  enum class Action {
    // A dirty row's migration was finished by hand: mark it applied.
    kClearDirty,
    // Record a version as applied (with the file's checksum; also realigns
    // an edited file's checksum).
    kMarkApplied,
    // Forget a version (it was undone by hand, or never ran).
    kMarkNotApplied,
    // Continue a cut no-transaction migration at its first unfinished
    // statement: a cut CREATE/DROP INDEX that had completed is skipped, an
    // invalid index a cut CREATE INDEX CONCURRENTLY left is dropped first.
    kResume,
    // Forget the last run's failure so that automatic runs try again.
    kClearFailure,
  };
  Action action = Action::kClearDirty;
  int64_t version = 0;
  std::string actor;
};

// Adopting a database another tool migrated (schemagatectl adopt).
struct AdoptRequest {
  // The tool whose table to adopt; unset: the only one found.
  std::optional<ForeignTool> from;
  bool skip_missing = false;
  // Plan only: no lock taken, nothing written.
  bool dry_run = false;
  std::string actor;
};

struct AdoptReport {
  AdoptPlan plan;
  // "adopted 12 version(s) from public.goose_db_version (goose)".
  std::string message;
  std::string run_id;
};

struct RehearsalReport {
  std::vector<RehearsalResult> results;
  // Versions skipped because they are no-transaction (not rehearsable).
  std::vector<int64_t> not_rehearsable;
};

// Thread-compatible: one Apply at a time per Runner.
class Runner {
 public:
  Runner(Store* store, const MigrationSet* set, RunnerOptions options);

  // Applies pending migrations. Errors: FAILED_PRECONDITION (a migration
  // failed and was recorded, or the set is dirty/failed/in conflict),
  // ABORTED (lock or connection lost: nothing more ran), UNAVAILABLE
  // (database away, or lock timeouts exhausted: try again later),
  // INVALID_ARGUMENT (bad target), CANCELLED (stopped while waiting).
  absl::StatusOr<RunOutcome> Apply(const RunRequest& request, const ProgressSink& progress,
                                   const std::atomic<bool>* cancelled);

  // Runs the downs of every applied version above the target, newest
  // first, under the lock. Refuses, naming it, when a down is missing, or
  // naming them when live instances need a version above the target (unless
  // `force`), before running anything. Sets the hold so automatic runs do
  // not re-apply them.
  absl::StatusOr<RunOutcome> Rollback(const RollbackRequest& request,
                                      const ProgressSink& progress,
                                      const std::atomic<bool>* cancelled);

  // Rehearses the pending migrations (see RunRequest::rehearse).
  absl::StatusOr<RehearsalReport> Rehearse(const RunRequest& request,
                                           const ProgressSink& progress);

  // Returns a sentence describing what was done.
  absl::StatusOr<std::string> Repair(const RepairRequest& request, const ProgressSink& progress);

  // Adopts an existing database: marks every version up to `version`
  // applied. Refuses if any version is recorded already. Returns a sentence,
  // naming an Alembic revision if it finds one.
  absl::StatusOr<std::string> Baseline(int64_t version, const std::string& actor);

  // Adopts a database another tool migrated (runner_adopt.cc): under the
  // lock, records the versions its bookkeeping table says are applied (or
  // dirty) with the set's checksums and one history event. Errors:
  // FAILED_PRECONDITION when schemagate already records a migration or the
  // plan is refused (versions without a file: named), NOT_FOUND when no
  // foreign table is found, INVALID_ARGUMENT when several are and no
  // `from` says which, UNAVAILABLE / ABORTED as for a run.
  absl::StatusOr<AdoptReport> Adopt(const AdoptRequest& request);

 private:
  // Who a run's events name, what they are numbered by, where progress goes.
  struct RunContext {
    RunSession* session = nullptr;
    std::string run_id;
    std::string actor;
    std::function<void(RunEvent)> emit;
  };

  // The step executor: runs one step of any run (apply, rollback, resume)
  // from statement `first`: progress events, dirty marking of a
  // no-transaction step (unless `resuming` a row that is dirty already),
  // lock-timeout retry with backoff, failure recording. Errors:
  // FAILED_PRECONDITION (the step failed; recorded), UNAVAILABLE (lock
  // timeouts exhausted; the set stays pending), ABORTED (connection lost).
  absl::Status ExecuteStep(const RunContext& run, const PlanStep& step, int first, bool resuming);
  // How many steps from `first` go in one batch (0 or 1: none): consecutive
  // up steps of one statement in a transaction, none of them breaking, at
  // most kMaxBatchSteps of them and about kMaxBatchBytes of SQL.
  static size_t BatchableFrom(const std::vector<PlanStep>& steps, size_t first);
  // Runs steps [first, first + n) in one round trip
  // (RunSession::RunTransactionalBatch), with the progress, log and failure
  // report ExecuteStep gives each. `done` counts the steps applied. A step
  // that hit its lock_timeout is not reported (OK is returned): the caller
  // runs it next with ExecuteStep, which retries.
  absl::Status ExecuteBatch(const RunContext& run, const std::vector<PlanStep>& steps,
                            size_t first, size_t n, size_t* done);
  // What ExecuteStep records and reports once a step failed with `failure`.
  absl::Status ReportFailure(const RunContext& run, const PlanStep& step, bool resuming,
                             absl::Time started, const SqlFailure& failure);
  static RunEvent StepEvent(RunEvent::Kind kind, const PlanStep& step, absl::Time started);
  static StepRecord RecordOf(const RunContext& run, const PlanStep& step);
  // A new run's context; its progress messages count from `outcome`
  // (which gets the run id and must outlive the run).
  RunContext NewRun(const std::string& actor, const ProgressSink& progress,
                    RunOutcome* outcome) const;
  // The session and run context of a run that holds the lock.
  absl::StatusOr<std::unique_ptr<RunSession>> LockForRun(const std::atomic<bool>* cancelled,
                                                         const std::function<void(RunEvent)>& emit);
  // The run's closing history event and progress message; returns `result`
  // (or the recording's error when the run itself succeeded).
  absl::Status FinishRun(const RunContext& run, absl::Time run_start, absl::Status result,
                         const std::string& message);
  StepDefaults defaults() const;

  // Runs options_.backup, records it (or its failure) in history.
  absl::Status TakeBackup(RunSession* session, const std::string& run_id,
                          const std::string& actor, const std::function<void(RunEvent)>& emit);

  // Repair's work once the lock is held. Sets *changed once it starts to
  // change the schema or the bookkeeping (a refusal leaves it false).
  absl::StatusOr<std::string> RepairUnderLock(RunSession* session, const RepairRequest& request,
                                              const std::string& run_id, const std::string& actor,
                                              const std::function<void(RunEvent)>& emit,
                                              bool* changed);
  // Adopt's work once the lock is held and `state` read under it.
  absl::StatusOr<AdoptReport> AdoptUnderLock(RunSession* session, const DatabaseState& state,
                                             const AdoptRequest& request,
                                             const std::string& run_id);
  // Records the schema as this run left it (options_.describe_schema). A
  // failed description records an empty fingerprint, so that validate does
  // not compare against a stale one.
  void RecordSchema(RunSession* session, const std::string& run_id);
  // Before an apply: compares the live schema with the recorded one and,
  // when they differ, logs it and records a schema_drift event. Never fails
  // the run (the drift is the operator's to judge; validate reports it).
  absl::Status NoteDrift(RunSession* session, const std::string& run_id,
                         const std::string& actor);

  Store* const store_;
  const MigrationSet* const set_;
  const RunnerOptions options_;
};

// A short random id for a run ("r-3f9a1c2b").
std::string NewRunId();

// The error a run that cannot start returns, from its plan's blocker (OK
// for a hold or a held-back breaking migration: nothing to do yet).
absl::Status BlockerStatus(const PlanBlocker& blocker);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_RUNNER_H_
