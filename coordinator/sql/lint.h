// The migration linter: finds statements in a migration's up script that are
// unsafe to run against a live database with applications attached, and says
// how to write them safely. It reads only the migration set (each statement
// re-parsed by libpg_query into its typed tree); it never connects to
// PostgreSQL, so it runs offline (`schemagatectl lint`) and in CI.
//
// Errors are changes that break running application instances (a drop or a
// rename) in a migration not marked `-- schemagate:breaking`: schemagate would
// apply it while old instances still use the old schema. Warnings are
// statements that lock or rewrite a table the application is using.
//
// The linter only knows what the file says: a relation created earlier in
// the same migration is new (empty, unused by any application), anything
// else is assumed to exist and to hold data.
//
// Thread-safe: the functions keep no state between calls.
#ifndef SCHEMAGATE_COORDINATOR_SQL_LINT_H_
#define SCHEMAGATE_COORDINATOR_SQL_LINT_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "coordinator/sql/script.h"

namespace schemagate {

enum class LintSeverity { kWarning, kError };

// "warning" or "error".
const char* LintSeverityName(LintSeverity severity);

struct LintFinding {
  // The migration file.
  std::string path;
  // 1-based line of the statement in the file.
  int line = 0;
  LintSeverity severity = LintSeverity::kWarning;
  // Short stable id of the rule, e.g. "drop-column-not-breaking".
  std::string rule;
  // What is wrong and why it hurts in production.
  std::string message;
  // The safe rewrite, concretely.
  std::string fix;
  // Why this finding is not held against the set (lint_policy.h): "at or
  // below --lint-from 12", "lint-ignore: <the file's reason>"; empty if it
  // counts.
  std::string waived;
};

struct LintOptions {
  // The lock_timeout schemagated applies when a migration sets none (its
  // --lock-timeout); zero means none.
  absl::Duration default_lock_timeout = absl::Seconds(5);
};

// Findings for one migration's up script, in file order (LintSet in
// coordinator/engine/lint_policy.h lints a whole set).
std::vector<LintFinding> LintMigration(const MigrationScript& up, const LintOptions& options);

// True if any finding is an error.
bool HasErrors(const std::vector<LintFinding>& findings);

// One finding as compilers print theirs, without a trailing newline:
//   path:line: error: message [rule]
//       fix: ...
// A waived one says so after its severity: "error (waived: at or below
// --lint-from 12): ...".
std::string FormatFinding(const LintFinding& finding);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SQL_LINT_H_
