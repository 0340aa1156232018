// The run plan (DESIGN.md "One run plan"): whether a run may go ahead, which
// steps it has, and why not. One pure function of (migration set, database
// state, request) that the runner, the automatic-run decision, readiness,
// `status`, `plan` and the dry runs all call, so none of them re-derives it.
//
// Pure and thread-compatible: no I/O, no clock. The breaking gate, which
// needs a clock (the grace period), is a callback of the request.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_RUN_PLAN_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_RUN_PLAN_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/store.h"

namespace schemagate {

// Defaults for migrations without lock-timeout / statement-timeout directives.
struct StepDefaults {
  absl::Duration lock_timeout = absl::Seconds(5);
  absl::Duration statement_timeout = absl::ZeroDuration();
};

struct PlanRequest {
  enum class Direction { kUp, kDown };
  Direction direction = Direction::kUp;
  // Up: apply up to this version (0: the set's head). Down: roll back every
  // applied version above it (0: all).
  int64_t target_version = 0;
  // Stop below a rollback's hold (automatic runs); false lifts the hold (an
  // operator's apply).
  bool respect_hold = false;
  // Retry a migration whose last run failed although its file is unchanged
  // (an operator asked). Without it that failure blocks the plan; a failed
  // migration whose file changed is always retried.
  bool retry_failed = false;
  // Breaking migrations run whatever the gate says.
  bool allow_breaking = false;
  // Whether breaking migration `m` may run now, given `db` (its live
  // instances: InstancesBelow). Consecutive breaking migrations are asked
  // once, for the first of them. Unset: breaking migrations are held back.
  std::function<bool(const Migration& m, const DatabaseState& db)> breaking_gate;
};

// One step of a run: a migration in one direction.
struct PlanStep {
  const Migration* migration = nullptr;
  bool up = true;
  // The script the step runs (up or down).
  const MigrationScript* script = nullptr;
  StatementLimits limits;
  bool transactional() const { return script->transactional(); }
  bool breaking() const { return migration->breaking(); }
};

// Why a plan stops (or does not start).
enum class BlockerKind {
  kNone,
  // The target is not a version of the set.
  kUnknownVersion,
  // A no-transaction migration's row is dirty: cut part-way, or still
  // running (the caller knows which: a run holds the lock).
  kDirty,
  // The set disagrees with the database (edited or missing applied files).
  kConflict,
  // The last run failed on a migration whose file is unchanged.
  kFailed,
  // A rollback's hold keeps automatic runs below a version.
  kHold,
  // A breaking migration waits for live instances that predate it (or for
  // its grace period).
  kBreakingHeld,
  // Rollback: an applied version has no down, no file, or an edited file.
  kNoDown,
};

struct PlanBlocker {
  BlockerKind kind = BlockerKind::kNone;
  // The migration concerned (0 if none).
  int64_t version = 0;
  // One sentence: what is wrong and what to do.
  std::string message;
  // kBreakingHeld: the live instances in the way.
  std::vector<InstanceRecord> instances;
  // kFailed: the recorded failure.
  std::optional<SqlFailure> failure;
};

struct RunPlan {
  // What would run now, in order. A plan may have steps and a blocker: the
  // steps before a held-back breaking migration run, the rest wait.
  std::vector<PlanStep> steps;
  PlanBlocker blocker;
  // Up: every pending migration up to the target, held or not.
  std::vector<const Migration*> pending;
  // Up: the run clears the recorded failure / lifts the hold.
  bool clears_failure = false;
  bool lifts_hold = false;

  bool blocked() const { return blocker.kind != BlockerKind::kNone; }
  // Blocked before any step.
  bool stopped() const { return blocked() && steps.empty(); }
};

// A request for what an automatic run would do.
PlanRequest AutomaticRequest();

// Plans a run of `set` against `db`. REQUIRES: db.applied ordered by version.
RunPlan PlanRun(const MigrationSet& set, const DatabaseState& db, const PlanRequest& request,
                const StepDefaults& defaults);

// The lock and statement timeouts of `script`.
StatementLimits LimitsFor(const MigrationScript& script, const StepDefaults& defaults);

// Live instances of `db` whose K is below `version` (they predate it).
std::vector<InstanceRecord> InstancesBelow(const DatabaseState& db, int64_t version);

// "api 1.4.0 (id web-1), api 1.4.0 (id web-2)": at most `limit` named, then "and N more".
std::string DescribeInstances(const std::vector<InstanceRecord>& instances, size_t limit = 5);

// Lists where the set and the database disagree: an applied checksum that
// differs from the file's, an applied version with no file in the set.
std::vector<std::string> FindConflicts(const MigrationSet& set, const DatabaseState& db);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_RUN_PLAN_H_
