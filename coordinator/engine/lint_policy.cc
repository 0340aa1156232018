#include "coordinator/engine/lint_policy.h"

#include <iterator>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace schemagate {

std::vector<LintFinding> LintSet(const MigrationSet& set, const LintOptions& options) {
  std::vector<LintFinding> findings;
  for (const Migration& migration : set.migrations()) {
    std::vector<LintFinding> more = LintMigration(migration.up, options);
    findings.insert(findings.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
  }
  return findings;
}

std::vector<LintFinding> LintSetWithPolicy(const MigrationSet& set, const LintPolicy& policy) {
  std::vector<LintFinding> findings;
  for (const Migration& migration : set.migrations()) {
    const std::map<std::string, std::string>& ignore = migration.up.directives.lint_ignore;
    for (LintFinding& finding : LintMigration(migration.up, policy.options)) {
      if (migration.version <= policy.lint_from) {
        finding.waived = absl::StrCat("at or below --lint-from ", policy.lint_from);
      } else if (auto it = ignore.find(finding.rule); it != ignore.end()) {
        finding.waived = absl::StrCat("lint-ignore: ", it->second);
      }
      findings.push_back(std::move(finding));
    }
  }
  // Repeatables: linted as the versioned ones; --lint-from has no version to
  // compare, lint-ignore waives.
  for (const Repeatable& repeatable : set.repeatables()) {
    const std::map<std::string, std::string>& ignore = repeatable.script.directives.lint_ignore;
    for (LintFinding& finding : LintMigration(repeatable.script, policy.options)) {
      if (auto it = ignore.find(finding.rule); it != ignore.end()) {
        finding.waived = absl::StrCat("lint-ignore: ", it->second);
      }
      findings.push_back(std::move(finding));
    }
  }
  return findings;
}

bool Refuses(const LintFinding& finding, const LintPolicy& policy) {
  return policy.mode == LintMode::kError && finding.severity == LintSeverity::kError &&
         finding.waived.empty();
}

absl::StatusOr<MigrationSet> LoadLintedSet(const std::string& dir, SetFormat format,
                                           const LintPolicy& policy,
                                           std::vector<std::string>* warnings,
                                           std::vector<LintFinding>* findings) {
  std::vector<std::string> ignored;
  if (warnings == nullptr) warnings = &ignored;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(dir, warnings, format);
  if (!set.ok()) return set.status();
  std::vector<LintFinding> all = LintSetWithPolicy(*set, policy);

  if (policy.lint_from > set->Head()) {
    warnings->push_back(absl::StrCat(
        "--lint-from ", policy.lint_from, " is above the set's head ", set->Head(),
        ": migrations added later up to version ", policy.lint_from,
        " will not be refused either; give the version of the last migration written before "
        "schemagate"));
  }
  // A lint-ignore that waives nothing: stale, or a rule the file never breaks.
  for (const Migration& migration : set->migrations()) {
    if (migration.version <= policy.lint_from) continue;
    for (const auto& [rule, reason] : migration.up.directives.lint_ignore) {
      bool used = false;
      for (const LintFinding& f : all) {
        used |= f.path == migration.up.path && f.rule == rule;
      }
      if (!used) {
        warnings->push_back(absl::StrCat(migration.up.path, ": lint-ignore=", rule,
                                         " matches no finding of this file; remove it from the "
                                         "directive"));
      }
    }
  }

  std::vector<std::string> refused;
  for (const LintFinding& f : all) {
    if (Refuses(f, policy)) {
      refused.push_back(FormatFinding(f));
    } else {
      warnings->push_back(FormatFinding(f));
    }
  }
  if (findings != nullptr) *findings = std::move(all);
  if (!refused.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "migration set ", dir, " has ", refused.size(), " lint error",
        refused.size() == 1 ? "" : "s", " (--lint=error):\n", absl::StrJoin(refused, "\n"),
        "\nMark a contract change `-- schemagate:breaking` (it then waits for old instances to "
        "go). For migrations written before schemagate: --lint-from VERSION reports the "
        "findings of every migration up to VERSION without refusing them, or add "
        "`-- schemagate:lint-ignore=RULE reason: WHY` to the file (rule ids are in brackets; "
        "the directive changes the file's checksum, so use --lint-from for files a database "
        "has applied). --lint=warn only reports."));
  }
  return std::move(*set);
}

}  // namespace schemagate
