// The runner's adoption of a database another tool migrated (adopt.h,
// docs/coming-from-*.md): under the run lock, on a database schemagate has
// recorded nothing on, the other tool's applied versions become schemagate's
// rows in one transaction with one history event; nothing is run.
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/base/log.h"
#include "coordinator/base/status_macros.h"
#include "coordinator/engine/runner.h"

namespace schemagate {
namespace {

// The Alembic revision the header of `m`'s up file names (import-alembic
// writes it); "" when there is none or the file cannot be read.
std::string AlembicRevisionOfFile(const Migration& m) {
  std::ifstream in(m.up.path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return AlembicRevisionInHeader(content.str());
}

}  // namespace

absl::StatusOr<AdoptReport> Runner::Adopt(const AdoptRequest& request) {
  const std::string run_id = NewRunId();
  if (request.dry_run) {
    // Read without the lock and without creating the bookkeeping.
    ASSIGN_OR_RETURN(DatabaseState state, store_->ReadState());
    return AdoptUnderLock(nullptr, state, request, run_id);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<RunSession> session, LockForRun(nullptr, [](RunEvent) {}));
  ASSIGN_OR_RETURN(DatabaseState state, session->ReadState());
  return AdoptUnderLock(session.get(), state, request, run_id);
}

absl::StatusOr<AdoptReport> Runner::AdoptUnderLock(RunSession* session, const DatabaseState& state,
                                                   const AdoptRequest& request,
                                                   const std::string& run_id) {
  const std::string actor = request.actor.empty() ? options_.coordinator_id : request.actor;
  if (!state.applied.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("schemagate already records ", state.applied.size(),
                     " migration(s) on this database (the head is ", state.AppliedHead(),
                     "): adopt only takes over a database schemagate has never run on; see "
                     "'schemagatectl status' and 'schemagatectl validate'"));
  }
  ASSIGN_OR_RETURN(ForeignBookkeeping found, ChooseForeign(state.foreign, request.from));
  AdoptOptions options;
  options.skip_missing = request.skip_missing;
  options.alembic_revision = AlembicRevisionOfFile;
  AdoptReport report;
  report.run_id = run_id;
  report.plan = PlanAdoption(*set_, found, options);
  const AdoptPlan& plan = report.plan;
  if (!plan.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("refusing to adopt ", found.table, ": ", absl::StrJoin(plan.problems, "; ")));
  }
  report.message = absl::StrCat(request.dry_run ? "would adopt " : "adopted ", plan.Summary());
  if (session == nullptr) return report;

  std::vector<AdoptedRow> rows;
  for (const AdoptStep& step : plan.steps) {
    AdoptedRow row;
    row.record.version = step.migration->version;
    row.record.name = step.migration->name;
    row.record.checksum = step.migration->checksum;
    row.record.run_id = run_id;
    row.record.actor = actor;
    row.dirty = step.dirty;
    rows.push_back(row);
  }
  EventRecord event;
  event.kind = "adopt";
  event.run_id = run_id;
  event.actor = actor;
  event.version = plan.steps.empty() ? 0 : plan.steps.back().migration->version;
  event.message = report.message;
  if (!plan.missing.empty()) {
    absl::StrAppend(&event.message, " (left out, no file: ", absl::StrJoin(plan.missing, ", "),
                    ")");
  }
  if (plan.dirty_count() > 0) {
    std::vector<std::string> dirty;
    for (const AdoptStep& s : plan.steps) {
      if (s.dirty) dirty.push_back(s.migration->Label());
    }
    absl::StrAppend(&event.message, "; dirty as ", ForeignToolName(found.tool),
                    " left them: ", absl::StrJoin(dirty, ", "), " (schemagatectl repair)");
  }
  RETURN_IF_ERROR(session->RecordAdoption(rows, event));
  report.message = event.message;
  RecordSchema(session, run_id);
  LogInfo("%s (by %s)", report.message, actor);
  return report;
}

}  // namespace schemagate
