// Runner::Rehearse (runner.h): the pending migrations in one transaction on
// the lock session, rolled back.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/base/status_macros.h"
#include "coordinator/engine/runner.h"

namespace schemagate {

absl::StatusOr<RehearsalReport> Runner::Rehearse(const RunRequest& request,
                                                 const ProgressSink& progress) {
  const std::string run_id = NewRunId();
  auto emit = [&](RunEvent event) {
    event.run_id = run_id;
    if (progress) progress(event);
  };
  ASSIGN_OR_RETURN(std::unique_ptr<RunSession> session, LockForRun(nullptr, emit));
  ASSIGN_OR_RETURN(DatabaseState state, session->ReadState());
  // Everything an operator's apply would run, breaking migrations included.
  PlanRequest plan_request;
  plan_request.target_version = request.target_version;
  plan_request.retry_failed = true;
  plan_request.allow_breaking = true;
  plan_request.permissions = options_.permissions;
  const RunPlan plan = PlanRun(*set_, state, plan_request, defaults());
  if (plan.stopped()) RETURN_IF_ERROR(BlockerStatus(plan.blocker));
  RehearsalReport report;
  std::vector<RehearsalStep> steps;
  for (const PlanStep& planned : plan.steps) {
    const Migration& m = *planned.migration;
    if (!planned.transactional()) {
      report.not_rehearsable.push_back(m.version);
      continue;
    }
    RehearsalStep step;
    step.version = m.version;
    step.name = m.name;
    step.statements = &m.up.statements;
    step.limits = planned.limits;
    steps.push_back(step);
  }
  RETURN_IF_ERROR(session->Rehearse(steps, &report.results));
  for (const RehearsalResult& r : report.results) {
    const Migration* m = set_->Find(r.version);
    RunEvent event;
    event.kind = r.ok ? RunEvent::Kind::kMigrationFinished : RunEvent::Kind::kMigrationFailed;
    event.version = r.version;
    event.name = m->name;
    event.elapsed = r.duration;
    event.statement_count = static_cast<int>(m->up.statements.size());
    if (r.ok) {
      event.message = "rehearsed: it would apply";
    } else {
      event.failure = r.failure;
      event.message =
          absl::StrCat("rehearsal of ", m->Label(), " failed at ", m->up.path, ":", r.failure.line,
                       ": ", r.failure.message, " [SQLSTATE ", r.failure.sqlstate, "]");
    }
    emit(event);
  }
  RunEvent end;
  end.kind = RunEvent::Kind::kRunFinished;
  const bool all_ok = report.results.size() == steps.size() &&
                      std::all_of(report.results.begin(), report.results.end(),
                                  [](const RehearsalResult& r) { return r.ok; });
  end.message =
      absl::StrCat("rehearsal rolled back: ", report.results.size(), " of ", steps.size(),
                   " migration(s) tried, ", all_ok ? "all would apply" : "one would fail",
                   report.not_rehearsable.empty() ? "" : "; not rehearsable (no-transaction): ",
                   absl::StrJoin(report.not_rehearsable, ", "));
  emit(end);
  if (!all_ok) return absl::FailedPreconditionError(end.message);
  return report;
}

}  // namespace schemagate
