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

// Refusals of the plan that a coordinator's flags lift, for every run and
// answer of that coordinator.
struct PlanPermissions {
  // --allow-out-of-order: a pending version below the applied head runs
  // (in version order) instead of stopping the plan.
  bool allow_out_of_order = false;
  // --allow-non-empty: migrations run on a database that has tables but no
  // migration recorded (one shared with another tool's schema).
  bool allow_non_empty = false;
  // --adopt: a database another tool migrated (DatabaseState::foreign) is
  // adopted under the lock before the first run (Runner::Adopt) instead of
  // being refused as an unadopted schema.
  bool adopt = false;
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
  // migration whose file changed is always retried. Also re-applies a
  // repeatable whose file is a text applied before and since replaced (a
  // revert; automatic runs take it for an older file and leave it).
  bool retry_failed = false;
  // Breaking migrations run whatever the gate says.
  bool allow_breaking = false;
  // Down: roll back although live instances need a version above the
  // target (an operator's --force). Without it they stop the plan.
  bool force = false;
  PlanPermissions permissions;
  // Whether breaking migration `m` may run now, given `db` (its live
  // instances: InstancesBelow). Consecutive breaking migrations are asked
  // once, for the first of them. Unset: breaking migrations are held back.
  std::function<bool(const Migration& m, const DatabaseState& db)> breaking_gate;
};

// One step of a run: a migration in one direction, or a repeatable
// migration (applied, always up, in one transaction).
struct PlanStep {
  // Exactly one of `migration` and `repeatable` is set.
  const Migration* migration = nullptr;
  const Repeatable* repeatable = nullptr;
  bool up = true;
  // The script the step runs (up or down).
  const MigrationScript* script = nullptr;
  StatementLimits limits;
  // A repeatable's checksum as last applied; "" when it never was (new).
  std::string applied_checksum;

  bool transactional() const { return script->transactional(); }
  bool breaking() const { return migration != nullptr && migration->breaking(); }
  // The migration's version; 0 for a repeatable.
  int64_t version() const { return migration != nullptr ? migration->version : 0; }
  const std::string& name() const {
    return migration != nullptr ? migration->name : repeatable->name;
  }
  const std::string& checksum() const {
    return migration != nullptr ? migration->checksum : repeatable->checksum;
  }
  std::string Label() const {
    return migration != nullptr ? migration->Label() : repeatable->Label();
  }
  // A repeatable's reason to run: "new" or "changed".
  const char* reason() const { return applied_checksum.empty() ? "new" : "changed"; }
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
  // A pending version is below the applied head: it was added after newer
  // ones ran (PlanPermissions::allow_out_of_order lifts it).
  kOutOfOrder,
  // No migration is recorded but the database has tables: another tool's
  // schema, to adopt with `schemagatectl baseline` (or allow_non_empty).
  kUnmanagedSchema,
  // Rollback: live instances need a version above the target (`force`
  // lifts it).
  kStrandsInstances,
};

struct PlanBlocker {
  BlockerKind kind = BlockerKind::kNone;
  // The migration concerned (0 if none).
  int64_t version = 0;
  // One sentence: what is wrong and what to do.
  std::string message;
  // kBreakingHeld, kStrandsInstances: the live instances in the way.
  std::vector<InstanceRecord> instances;
  // kOutOfOrder: every pending version below the applied head.
  std::vector<int64_t> versions;
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
  // Up, when the steps take the database to the set's head and nothing
  // blocks: the repeatables to apply after them, in name order (never
  // applied, or their file changed since).
  std::vector<PlanStep> repeatables;
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

// Live instances of `db` whose R is above `version` (a rollback to it
// leaves them a schema older than they need).
std::vector<InstanceRecord> InstancesRequiringAbove(const DatabaseState& db, int64_t version);

// What DescribeInstances says of each instance besides app, version and id.
enum class InstanceDetail { kKnown, kRequired };

// "api 1.4.0 (id web-1, knows up to 3), …": at most `limit` named, then
// "and N more"; with kRequired "(id web-1, needs 3)".
std::string DescribeInstances(const std::vector<InstanceRecord>& instances, size_t limit = 5,
                              InstanceDetail detail = InstanceDetail::kKnown);

// The repeatables of `set` to apply (run_plan_repeatable.cc): those never
// applied and those whose checksum differs from the one applied, in name
// order; one whose file is a text applied earlier and since replaced
// (DatabaseState::repeatable_texts) only `with_older` texts.
std::vector<PlanStep> PendingRepeatables(const MigrationSet& set, const DatabaseState& db,
                                         const StepDefaults& defaults, bool with_older);

// Repeatables of `set` whose file is an older text (applied, then
// replaced by another coordinator's): one sentence each, saying to
// redeploy this coordinator (or 'schemagatectl apply' for a revert).
std::vector<std::string> FindOlderRepeatables(const MigrationSet& set, const DatabaseState& db);

// "repeatable views failed [42P01] at statement 2 (repeatable/views.sql:7):
// …" of a failure of a repeatable (SqlFailure::of_repeatable); the file as
// `set` names it ("line 7" when the set has no such repeatable).
std::string DescribeRepeatableFailure(const SqlFailure& f, const MigrationSet& set);

// Lists where the set and the database disagree: an applied checksum that
// differs from the file's, an applied version with no file in the set. A
// file whose text failed before (DatabaseState::failed_texts) is not an
// edit but an older file: FindOlderFiles lists it instead.
std::vector<std::string> FindConflicts(const MigrationSet& set, const DatabaseState& db);

// Applied versions for which this set has an older text that failed,
// while another coordinator's fixed file was applied (a rolling redeploy
// after a fix): one sentence each, saying to redeploy this coordinator.
std::vector<std::string> FindOlderFiles(const MigrationSet& set, const DatabaseState& db);

// Pending versions of `set` up to `target` (0: the head) below the applied
// head, in order.
std::vector<int64_t> OutOfOrderVersions(const MigrationSet& set, const DatabaseState& db,
                                        int64_t target = 0);

// PlanRun's refusals that a coordinator's flags lift (PlanPermissions), on
// their own for `validate`: kOutOfOrder naming the versions, or
// kUnmanagedSchema naming tables and `baseline`; kind kNone when there is
// nothing to refuse.
PlanBlocker RefuseOutOfOrder(const MigrationSet& set, const DatabaseState& db,
                             int64_t target = 0);
// With `adopting` (--adopt), a foreign table the runner can adopt is no
// refusal; one it cannot is, saying why.
PlanBlocker RefuseUnmanagedSchema(const MigrationSet& set, const DatabaseState& db,
                                  bool adopting = false);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_RUN_PLAN_H_
