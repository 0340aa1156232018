// The fleet rules: whether the schema fits an app (DESIGN.md "Fleet rules").
// Pure functions of the coordinator's view; no I/O, so every rule is unit
// tested on its own.
#ifndef SCHEMAGATE_COORDINATOR_READINESS_H_
#define SCHEMAGATE_COORDINATOR_READINESS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "coordinator/migration_set.h"
#include "coordinator/run_plan.h"
#include "coordinator/store.h"

namespace schemagate {

enum class ReadinessState {
  kReady,
  kPending,
  kMigrating,
  kBlocked,
  kUnknownVersion,
  kIncompatible,
  kMismatch,
  kFailed,
  kUnavailable,
};

// "READY", "PENDING", …
const char* ReadinessStateName(ReadinessState state);

// FAILED, INCOMPATIBLE and MISMATCH end an agent's wait at once.
bool IsFinal(ReadinessState state);

// What an app needs, as its agent reported it.
struct AppTarget {
  std::string app;
  std::string app_version;
  // K and R; 0 when not given.
  int64_t known_version = 0;
  int64_t required_version = 0;
  // Checksums of the app's own up files, by version.
  std::map<int64_t, std::string> checksums;
};

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
  // Disagreements between the set and the database (FindConflicts).
  std::vector<std::string> conflicts;
  // Why the coordinator's last re-read of its migration set failed (it
  // keeps the set it had); "" when the set on disk loaded.
  std::string set_error;
};

struct ReadinessAnswer {
  ReadinessState state = ReadinessState::kUnavailable;
  std::string message;
  int64_t applied_version = 0;
  int64_t required_version = 0;
  int64_t known_version = 0;
  // The version that keeps the app from READY, 0 if none.
  int64_t blocking_version = 0;

  bool operator==(const ReadinessAnswer& other) const {
    return state == other.state && message == other.message &&
           applied_version == other.applied_version &&
           required_version == other.required_version &&
           known_version == other.known_version && blocking_version == other.blocking_version;
  }
  bool operator!=(const ReadinessAnswer& other) const { return !(*this == other); }
};

// Fills in K and R from `set` when the target gives neither (K = the set's
// head, R = its highest non-breaking version), or one from the other.
AppTarget ResolveTarget(const AppTarget& target, const MigrationSet& set);

// Applies the fleet rules. REQUIRES: view.set != nullptr.
ReadinessAnswer EvaluateReadiness(const AppTarget& target, const SchemaView& view);


// Everything `schemagatectl validate` reports: the conflicts above, dirty
// rows, a recorded failure, pending versions older than the applied head
// (out of order), a rollback hold.
std::vector<std::string> ValidateState(const MigrationSet& set, const DatabaseState& db);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_READINESS_H_
