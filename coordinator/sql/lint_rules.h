// The ids of the linter's rules, as findings print them in brackets
// (`[rename-column-not-breaking]`). The loader checks the rule names of a
// `-- schemagate:lint-ignore=RULE[,RULE] reason: WHY` directive against this
// list without linking the linter (the agent loads sets but never lints),
// and the linter aborts on a finding whose rule is missing here.
#ifndef SCHEMAGATE_COORDINATOR_SQL_LINT_RULES_H_
#define SCHEMAGATE_COORDINATOR_SQL_LINT_RULES_H_

#include "absl/strings/string_view.h"

namespace schemagate {

// Errors: changes that break instances built before them.
// Warnings: statements that lock or rewrite a table the application uses.
inline constexpr absl::string_view kLintRules[] = {
    "drop-table-not-breaking",
    "drop-column-not-breaking",
    "rename-table-not-breaking",
    "rename-column-not-breaking",
    "rename-table-marked-breaking",
    "rename-column-marked-breaking",
    "index-not-concurrent",
    "add-column-not-null-without-default",
    "alter-column-type",
    "set-not-null",
    "foreign-key-without-not-valid",
    "check-without-not-valid",
    "constraint-builds-index",
    "access-exclusive-without-lock-timeout",
    "update-without-where",
    "delete-without-where",
    "empty-migration",
    "unparsable-statement",
};

inline bool IsLintRule(absl::string_view rule) {
  for (absl::string_view known : kLintRules) {
    if (known == rule) return true;
  }
  return false;
}

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SQL_LINT_RULES_H_
