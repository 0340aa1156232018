// The repeatable migrations in status and plan answers (proto_convert.h).
#include "absl/strings/str_cat.h"
#include "coordinator/server/proto_convert.h"

namespace schemagate {
void AddLintFindings(const MigrationScript& script, const LintOptions& lint, v1::PlanStep* step) {
  for (const LintFinding& f : LintMigration(script, lint)) {
    step->add_findings(absl::StrCat(f.path, ":", f.line, ": ", LintSeverityName(f.severity), ": ",
                                    f.message, " [", f.rule, "] fix: ", f.fix));
  }
}

namespace {

v1::RepeatableState StateOf(const Repeatable* r, const AppliedRepeatable* row,
                            const DatabaseState& db) {
  const std::optional<SqlFailure>& f = db.failure;
  if (r == nullptr) return v1::REPEATABLE_MISSING_FROM_SET;
  if (f && f->of_repeatable() && f->name == r->name && f->checksum == r->checksum) {
    return v1::REPEATABLE_LAST_RUN_FAILED;
  }
  if (row == nullptr) return v1::REPEATABLE_NEW;
  if (row->checksum == r->checksum) return v1::REPEATABLE_APPLIED;
  if (db.RepeatableTextApplied(r->name, r->checksum)) return v1::REPEATABLE_OLDER_FILE;
  return v1::REPEATABLE_CHANGED;
}

}  // namespace

std::string RepeatablesPending(int n) {
  return n == 0 ? std::string() : absl::StrCat(", ", n, " repeatable(s) to apply");
}

std::string FailedSubject(const SqlFailure& failure) {
  return failure.of_repeatable() ? absl::StrCat("repeatable ", failure.name)
                                 : absl::StrCat("migration ", failure.version);
}

int AddRepeatables(const SchemaView& view, v1::Status* out) {
  const MigrationSet& set = *view.set;
  const DatabaseState& db = view.db;
  std::map<std::string, std::pair<const Repeatable*, const AppliedRepeatable*>> by_name;
  for (const Repeatable& r : set.repeatables()) by_name[r.name].first = &r;
  for (const AppliedRepeatable& row : db.repeatables) by_name[row.name].second = &row;
  for (const auto& [name, pair] : by_name) {
    const auto [r, row] = pair;
    v1::Repeatable* out_r = out->add_repeatables();
    out_r->set_name(name);
    out_r->set_state(StateOf(r, row, db));
    if (r != nullptr) {
      out_r->set_checksum(r->checksum);
      out_r->set_path(r->script.path);
    }
    if (row != nullptr) {
      out_r->set_applied_checksum(row->checksum);
      SetTime(row->applied_at, out_r->mutable_applied_at());
      SetDuration(row->duration, out_r->mutable_duration());
      out_r->set_applied_by(row->applied_by);
    }
  }
  for (const std::string& note : FindOlderRepeatables(set, db)) out->add_notes(note);
  // To apply: new or changed, but not an unchanged text that failed.
  int pending = 0;
  for (const PlanStep& step : PendingRepeatables(set, db, StepDefaults(), /*with_older=*/false)) {
    pending += StateOf(step.repeatable, db.FindRepeatable(step.name()), db) !=
               v1::REPEATABLE_LAST_RUN_FAILED;
  }
  out->set_pending_repeatables(pending);
  return pending;
}

void AddRepeatableSteps(const RunPlan& plan, const LintOptions& lint, v1::PlanResponse* out) {
  for (const PlanStep& planned : plan.repeatables) {
    v1::PlanStep* step = out->add_steps();
    step->set_repeatable(planned.name());
    step->set_name(planned.name());
    step->set_reason(planned.reason());
    step->set_direction("up");
    step->set_transactional(true);
    SetDuration(planned.limits.lock_timeout, step->mutable_lock_timeout());
    SetDuration(planned.limits.statement_timeout, step->mutable_statement_timeout());
    for (const SqlStatement& s : planned.script->statements) step->add_statements(s.text);
    AddLintFindings(*planned.script, lint, step);
  }
}

}  // namespace schemagate
