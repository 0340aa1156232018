// What lint findings stop a migration set from loading. schemagated and
// `schemagatectl lint` both load through LoadLintedSet, so a set the CLI
// passes is a set the daemon starts with, and a set the daemon refuses is
// refused before anything is applied (never half-way through a rollout).
//
// Existing sets carry old drops and renames that were never marked breaking;
// two waivers adopt them without rewriting history:
//   --lint-from VERSION   findings in migrations at or below VERSION are
//                         reported, never refused;
//   -- schemagate:lint-ignore=RULE[,RULE] reason: WHY
//                         in a file: findings of those rules in that file
//                         are reported with the reason, never refused.
//
// Thread-safe: the functions keep no state; LoadLintedSet only reads files.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_LINT_POLICY_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_LINT_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/sql/lint.h"
#include "coordinator/engine/migration_set.h"

namespace schemagate {

enum class LintMode {
  // An error finding that is not waived refuses the set (--lint=error).
  kError,
  // Every finding is only reported (--lint=warn).
  kWarn,
};

struct LintPolicy {
  LintMode mode = LintMode::kError;
  // Findings in migrations with version <= lint_from are waived
  // (--lint-from); 0 waives none.
  int64_t lint_from = 0;
  LintOptions options;
};

// Findings for every migration of the set, in version order, none waived.
std::vector<LintFinding> LintSet(const MigrationSet& set, const LintOptions& options);

// Lints every migration of `set`, in version order, and sets each finding's
// `waived` from `policy.lint_from` and its file's lint-ignore directive.
std::vector<LintFinding> LintSetWithPolicy(const MigrationSet& set, const LintPolicy& policy);

// Whether `finding` (from LintSetWithPolicy) refuses the set under `policy`:
// an error, not waived, in kError mode.
bool Refuses(const LintFinding& finding, const LintPolicy& policy);

// Loads the set in `dir` (MigrationSet::LoadDirectory, in `format`) and lints it. Fails
// with INVALID_ARGUMENT with the loader's message, or, when any finding
// Refuses, listing every refused finding as "path:line: error: message
// [rule]" with its fix, and how to waive. Everything else that is worth
// telling (files ignored by the loader, warnings, waived and --lint=warn
// findings, lint-ignore rules that match nothing) is appended to `warnings`,
// one entry each. All findings, if `findings` is given (also on refusal).
absl::StatusOr<MigrationSet> LoadLintedSet(const std::string& dir, SetFormat format,
                                           const LintPolicy& policy,
                                           std::vector<std::string>* warnings,
                                           std::vector<LintFinding>* findings = nullptr);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_LINT_POLICY_H_
