// The fleet rules: whether the schema fits an app (DESIGN.md "Fleet rules").
// Pure functions of the coordinator's view; no I/O, so every rule is unit
// tested on its own.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_READINESS_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_READINESS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/readiness_answer.h"
#include "coordinator/engine/run_plan.h"
#include "coordinator/engine/store.h"

namespace schemagate {

// What the coordinator knows when it answers.
struct SchemaView {
  const MigrationSet* set = nullptr;
  bool database_available = false;
  std::string database_error;
  DatabaseState db;
  // A run (by this or another coordinator) is under way.
  bool run_in_progress = false;
  // --apply=manual: nothing runs until an operator asks.
  bool manual = false;
  // What this coordinator's flags let the run plan do (--allow-out-of-order,
  // --allow-non-empty).
  PlanPermissions permissions;
  // Disagreements between the set and the database (FindConflicts).
  std::vector<std::string> conflicts;
  // Why the coordinator's last re-read of its migration set failed (it
  // keeps the set it had); "" when the set on disk loaded.
  std::string set_error;
};

// Fills in K and R from `set` when the target gives neither (K = the set's
// head, R = its highest non-breaking version), or one from the other.
AppTarget ResolveTarget(const AppTarget& target, const MigrationSet& set);

// Applies the fleet rules. REQUIRES: view.set != nullptr.
ReadinessAnswer EvaluateReadiness(const AppTarget& target, const SchemaView& view);

// The repeatables' part of the rules (readiness_repeatable.cc), once every
// version the app needs is applied: whether one of `target`'s repeatable
// texts is not the one applied, and then *answer says what the app waits
// for (PENDING or MIGRATING: the coordinator has that text and a run
// applies it; UNKNOWN_VERSION: it has another; FAILED: that text failed,
// or the plan is refused until an operator acts). False: they all are.
bool RepeatablesWait(const AppTarget& target, const SchemaView& view, ReadinessAnswer* answer);


// Everything `schemagatectl validate` reports: the conflicts above, older
// files of applied versions (FindOlderFiles), dirty rows, a recorded
// failure, pending versions older than the applied head (out of order,
// unless `permissions` allow them), tables no migration recorded (unless
// allowed), a rollback hold.
std::vector<std::string> ValidateState(const MigrationSet& set, const DatabaseState& db,
                                       const PlanPermissions& permissions = PlanPermissions());

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_READINESS_H_
