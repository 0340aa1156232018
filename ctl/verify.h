// `schemagatectl verify`: checks a migration set on a scratch database.
//
// For each migration in version order: describe the schema, apply the up,
// describe again; if the migration has a down, apply it and compare the
// schema with the one before the up (a down must undo its up exactly), then
// apply the up again and check it gives the same schema as the first time.
// Statements run exactly as a coordinator runs them: a transactional
// migration in one transaction, statement by statement; a no-transaction
// one statement by statement in autocommit. Unlike a coordinator run there
// is no bookkeeping, no lock, no lock or statement timeout: the scratch
// database has no other sessions. At the end the scratch database holds the
// whole set applied (up to the first migration whose up failed).
//
// Every bad down is reported, not only the first: when a down leaves the
// database where its up cannot run again (the up fails after the down, or a
// failed no-transaction down stopped half-way), verify rebuilds the scratch
// database (drops every user schema and every extension a migration
// installed, creates the schemas it started with again, applies the ups so
// far) and goes on. A database that held more than empty schemas before the
// first migration, or one passed with allow_non_empty, is never rebuilt:
// the run then stops there, as it does after an up that fails.
//
// Never writes to the bookkeeping schema; refuses a database that holds
// user tables or schemagate bookkeeping unless told otherwise, because it
// changes the schema freely.
#ifndef SCHEMAGATE_CTL_VERIFY_H_
#define SCHEMAGATE_CTL_VERIFY_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/postgres/catalog.h"

namespace schemagate {

struct VerifyOptions {
  // Run even if the scratch database already holds user tables or
  // schemagate bookkeeping (e.g. a restored copy of production to verify
  // pending migrations on). Off: such a database is refused.
  bool allow_non_empty = false;
  // Left out of every description and never written.
  std::string bookkeeping_schema = "schemagate";
  // Change lines shown per rendered diff.
  size_t max_diff_lines = 20;
};

// What applying a down showed.
enum class DownCheck {
  kNotRun,   // the up failed (or an earlier migration stopped the run)
  kUndoes,   // the schema after the down equals the schema before the up
  kDiffers,  // it does not: see `down_diff`
  kNoDown,   // no down file: a warning, not a failure
  kError,    // the down failed with an SQL error: see `error`
};

// "undoes", "differs", "no down", "error", "not run".
const char* DownCheckName(DownCheck check);

// An SQL error of one statement of a migration file.
struct StatementError {
  // Which step: "up", "down", or "up again" (the up re-applied after the down).
  std::string step;
  std::string path;
  // 1-based line of the file on which the failing statement starts, and its
  // index; both 0 when the error came at COMMIT (a deferred constraint).
  int line = 0;
  int statement_index = 0;
  std::string sqlstate;
  std::string message;

  // "path:line: message (SQLSTATE 42703) [up]".
  std::string ToString() const;
};

struct MigrationVerdict {
  int64_t version = 0;
  std::string name;
  // "0003_add_lookup_indexes".
  std::string label;
  bool transactional = true;
  // False for the migrations after one whose up failed.
  bool ran = false;
  bool up_ok = false;
  // The up changed the description (false for a pure data migration).
  bool up_changes_schema = false;
  DownCheck down = DownCheck::kNotRun;
  // The first SQL error of this migration (up, down, or up again).
  std::optional<StatementError> error;
  // kDiffers: the lines the down failed to restore (`removed`) or left
  // behind (`added`), relative to the schema before the up, and their
  // rendering.
  SchemaDiff down_diff;
  std::string down_diff_text;
  // The up, re-applied after the down, gave another schema than the first
  // time (e.g. a down that left an object an IF NOT EXISTS then skipped).
  bool reapply_differs = false;
  std::string reapply_diff_text;
  // The down left the database where the up could not run again, so the
  // scratch database was rebuilt (schemas dropped, every up so far applied
  // again) to verify the migrations after this one.
  bool rebuilt = false;
  // Wall time of the up and of the down (zero if not run).
  absl::Duration up_duration;
  absl::Duration down_duration;

  // A failure (not a warning): an SQL error, a down that does not undo its
  // up, or an up that does not give the same schema again after the down.
  bool failed() const {
    return error.has_value() || down == DownCheck::kDiffers || reapply_differs;
  }
};

struct VerifyReport {
  // Every migration of the set, in version order.
  std::vector<MigrationVerdict> migrations;
  // The first failing migration; 0 if none failed (every failing one has
  // failed() in `migrations`).
  int64_t first_failure = 0;
  // Why the run stopped before the end ("" if it did not): an up failed, or
  // a bad down left the database in a state the next steps cannot use and
  // it could not be rebuilt (see above).
  std::string stopped;
  // The scratch database's schema at the end.
  SchemaDescription final_schema;

  bool ok() const { return first_failure == 0; }
  // Migrations without a down file.
  int NoDownCount() const;
};

// Called with one line of progress per step ("0002_tags: up ok (14ms)").
using VerifyProgress = std::function<void(const std::string&)>;

// Verifies `set` on the scratch database at `scratch_url`. Failures of
// migrations are in the report (report.ok() is false); the status is an
// error only when verification could not be done: FAILED_PRECONDITION for a
// database that is not empty (see VerifyOptions::allow_non_empty),
// UNAVAILABLE when the database cannot be reached or the connection drops.
absl::StatusOr<VerifyReport> VerifyMigrations(const MigrationSet& set,
                                              const std::string& scratch_url,
                                              const VerifyOptions& options,
                                              const VerifyProgress& progress);
absl::StatusOr<VerifyReport> VerifyMigrations(const MigrationSet& set,
                                              const std::string& scratch_url,
                                              const VerifyProgress& progress);

// The report for people: a table (version, name, up, down, time), then the
// errors and diffs of the failing migrations and a one-line summary.
std::string FormatVerifyReport(const VerifyReport& report);

}  // namespace schemagate

#endif  // SCHEMAGATE_CTL_VERIFY_H_
