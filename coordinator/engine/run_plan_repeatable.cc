// The run plan's repeatable migrations (run_plan.h): which to apply, which
// files are older texts, how a failure of one reads.
#include "absl/strings/str_cat.h"
#include "coordinator/engine/run_plan.h"

namespace schemagate {

std::vector<PlanStep> PendingRepeatables(const MigrationSet& set, const DatabaseState& db,
                                         const StepDefaults& defaults, bool with_older) {
  std::vector<PlanStep> steps;
  for (const Repeatable& r : set.repeatables()) {
    const AppliedRepeatable* applied = db.FindRepeatable(r.name);
    if (applied != nullptr && applied->checksum == r.checksum) continue;
    if (applied != nullptr && !with_older && db.RepeatableTextApplied(r.name, r.checksum)) {
      continue;
    }
    PlanStep step;
    step.repeatable = &r;
    step.script = &r.script;
    step.limits = LimitsFor(r.script, defaults);
    if (applied != nullptr) step.applied_checksum = applied->checksum;
    steps.push_back(std::move(step));
  }
  return steps;
}

std::vector<std::string> FindOlderRepeatables(const MigrationSet& set, const DatabaseState& db) {
  std::vector<std::string> older;
  for (const Repeatable& r : set.repeatables()) {
    const AppliedRepeatable* applied = db.FindRepeatable(r.name);
    if (applied == nullptr || applied->checksum == r.checksum ||
        !db.RepeatableTextApplied(r.name, r.checksum)) {
      continue;
    }
    older.push_back(absl::StrCat(
        "this coordinator's file of ", r.Label(), " (", r.script.path, ", checksum ",
        r.checksum.substr(0, 12), "…) is a text applied before and since replaced by ",
        applied->applied_by.empty() ? "another coordinator" : applied->applied_by, " (",
        applied->checksum.substr(0, 12),
        "…): it is not re-applied automatically; redeploy this coordinator with the current "
        "file, or run 'schemagatectl apply' if the file was reverted on purpose"));
  }
  return older;
}

std::string DescribeRepeatableFailure(const SqlFailure& f, const MigrationSet& set) {
  const Repeatable* r = set.FindRepeatable(f.name);
  return absl::StrCat("repeatable ", f.name, " failed", f.sqlstate.empty() ? "" : " [", f.sqlstate,
                      f.sqlstate.empty() ? "" : "]",
                      f.statement_index > 0
                          ? absl::StrCat(" at statement ", f.statement_index, " (",
                                         r != nullptr ? r->script.path + ":" : "line ", f.line, ")")
                          : "",
                      ": ", f.message);
}

}  // namespace schemagate
