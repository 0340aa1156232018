#include "agent/fallback_check.h"

#include "absl/strings/str_cat.h"
#include "coordinator/postgres/pg_store.h"

namespace schemagate {

ReadinessAnswer FallbackReadiness(const AppTarget& raw, const DatabaseState& state) {
  AppTarget target = raw;
  if (target.required_version == 0) target.required_version = target.known_version;
  ReadinessAnswer answer;
  answer.known_version = target.known_version;
  answer.required_version = target.required_version;
  answer.applied_version = state.AppliedHead();
  const int64_t r = target.required_version;
  for (const AppliedMigration& row : state.applied) {
    if (row.dirty && (r == 0 || row.version <= r) && state.run_in_progress) {
      // Running is not failing: the run holding the lock is executing it.
      answer.state = ReadinessState::kMigrating;
      answer.blocking_version = row.version;
      answer.message = absl::StrCat("no-transaction migration ", row.version,
                                    " is running (read from the database directly: no "
                                    "coordinator answered)");
      return answer;
    }
    if (row.dirty && (r == 0 || row.version <= r)) {
      answer.state = ReadinessState::kFailed;
      answer.blocking_version = row.version;
      answer.message = absl::StrCat("migration ", row.version,
                                    " is dirty; an operator must run 'schemagatectl repair'");
      return answer;
    }
  }
  for (const auto& [version, checksum] : target.checksums) {
    const AppliedMigration* row = state.Find(version);
    // A file that failed before is an older text, never applied (readiness.cc).
    if (row != nullptr && row->checksum != checksum && !state.TextFailed(version, checksum)) {
      answer.state = ReadinessState::kMismatch;
      answer.blocking_version = version;
      answer.message = absl::StrCat("the app's file for version ", version,
                                    " differs from what was applied");
      return answer;
    }
  }
  if (state.failure && state.failure->of_repeatable()) {
    // A repeatable's failure concerns the apps with that very text.
    const SqlFailure& f = *state.failure;
    auto mine = target.repeatable_checksums.find(f.name);
    if (mine != target.repeatable_checksums.end() && mine->second == f.checksum) {
      answer.state = ReadinessState::kFailed;
      answer.message = absl::StrCat("repeatable ", f.name, " failed [", f.sqlstate, "]: ",
                                    f.message);
      return answer;
    }
  } else if (state.failure && state.failure->version <= r &&
             state.Find(state.failure->version) == nullptr) {
    answer.state = ReadinessState::kFailed;
    answer.blocking_version = state.failure->version;
    answer.message = absl::StrCat("migration ", state.failure->version, " failed [",
                                  state.failure->sqlstate, "]: ", state.failure->message);
    return answer;
  }
  int64_t missing = 0;
  if (!target.checksums.empty()) {
    for (const auto& [version, checksum] : target.checksums) {
      if (version <= r && state.Find(version) == nullptr) {
        missing = version;
        break;
      }
    }
  } else if (r == 0 || answer.applied_version < r) {
    missing = r;
  }
  for (const auto& [name, checksum] : target.repeatable_checksums) {
    const AppliedRepeatable* row = state.FindRepeatable(name);
    if (missing == 0 && state.initialized && (row == nullptr || row->checksum != checksum)) {
      answer.state = ReadinessState::kPending;
      answer.message = absl::StrCat("repeatable ", name,
                                    " is not applied with the app's text yet (read from the "
                                    "database directly: no coordinator answered)");
      return answer;
    }
  }
  if (missing != 0 || !state.initialized) {
    answer.state = ReadinessState::kPending;
    answer.blocking_version = missing;
    answer.message = absl::StrCat("version ", missing,
                                  " is not applied yet (read from the database directly: no "
                                  "coordinator answered)");
    return answer;
  }
  answer.state = ReadinessState::kReady;
  answer.message = absl::StrCat("schema is at version ", answer.applied_version, "; the app needs ",
                                r, " (read from the database directly: no coordinator answered)");
  return answer;
}

absl::StatusOr<ReadinessAnswer> CheckDatabaseDirectly(const std::string& database_url,
                                                      const std::string& schema,
                                                      const AppTarget& target) {
  PgStoreOptions options;
  options.conninfo = database_url;
  options.schema = schema;
  PgStore store(options);
  absl::StatusOr<DatabaseState> state = store.ReadState();
  if (!state.ok()) return state.status();
  return FallbackReadiness(target, *state);
}

}  // namespace schemagate
