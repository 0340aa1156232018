// The runner's operator repairs, under the run lock: clear a failure or a
// dirty row, mark a version applied or not, resume a cut no-transaction
// migration (through the same step executor as apply), and baseline.
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/base/log.h"
#include "coordinator/base/status_macros.h"
#include "coordinator/engine/runner.h"
#include "coordinator/sql/sql_split.h"

namespace schemagate {
namespace {

// Where a resume starts: a kill -9 can cut the coordinator after its
// backend completed statement `first` but before the statement was recorded
// (the backend notices the dead client only at its next check), and a cut
// CREATE INDEX CONCURRENTLY leaves an invalid index behind. So a resume
// looks first:
// - CREATE INDEX of an index that exists, valid, on the statement's table:
//   it completed; go on after it. Invalid: drop it (CONCURRENTLY) and run
//   (also with IF NOT EXISTS, which would keep the invalid index).
// - DROP INDEX of an index that no longer exists: it completed.
// - DROP INDEX IF EXISTS and REINDEX CONCURRENTLY simply run again.
// `first` is moved past a completed statement; `note` says what was found.
absl::Status PrepareResume(RunSession& session, const std::vector<SqlStatement>& statements,
                           int* first, std::string* note) {
  if (*first >= static_cast<int>(statements.size())) return absl::OkStatus();
  const IndexStatement s = DescribeIndexStatement(statements[*first].text);
  const bool create = s.kind == IndexStatement::Kind::kCreate;
  if (s.kind == IndexStatement::Kind::kOther || (!create && s.if_exists)) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(IndexLookup found, session.LookUpIndex(s.schema, s.table, s.index));
  const std::string shown = found.qualified_name.empty() ? s.index : found.qualified_name;
  if (create && found.state == IndexLookup::State::kInvalid) {
    RETURN_IF_ERROR(session.DropIndexConcurrently(found));
    *note = absl::StrCat("; dropped invalid index ", shown, " first");
  } else if ((create && found.state == IndexLookup::State::kValid) ||
             (!create && found.state == IndexLookup::State::kAbsent)) {
    *note = absl::StrCat("; statement ", *first + 1, " had completed (index ", shown,
                         create ? " exists and is valid" : " is gone", ")");
    ++*first;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> Runner::Repair(const RepairRequest& request,
                                           const ProgressSink& progress) {
  const std::string run_id = NewRunId();
  const std::string actor = request.actor.empty() ? options_.coordinator_id : request.actor;
  auto emit = [&](RunEvent event) {
    event.run_id = run_id;
    if (progress) progress(event);
  };
  ASSIGN_OR_RETURN(std::unique_ptr<RunSession> session, LockForRun(nullptr, emit));
  bool changed = false;
  absl::StatusOr<std::string> done =
      RepairUnderLock(session.get(), request, run_id, actor, emit, &changed);
  // Every action but clearing a failure changes the schema or blesses the
  // operator's own changes: the schema as it is now is the one to compare with.
  // A refused repair changed nothing and blesses nothing: drift stays drift.
  if (request.action != RepairRequest::Action::kClearFailure && changed &&
      !absl::IsAborted(done.status())) {
    RecordSchema(session.get(), run_id);
  }
  return done;
}

absl::StatusOr<std::string> Runner::RepairUnderLock(RunSession* session,
                                                    const RepairRequest& request,
                                                    const std::string& run_id,
                                                    const std::string& actor,
                                                    const std::function<void(RunEvent)>& emit,
                                                    bool* changed) {
  ASSIGN_OR_RETURN(DatabaseState state, session->ReadState());
  const Migration* m = set_->Find(request.version);
  const AppliedMigration* row = state.Find(request.version);
  EventRecord event;
  event.kind = "repair";
  event.version = request.version;
  event.name = m != nullptr ? m->name : (row != nullptr ? row->name : "");
  event.run_id = run_id;
  event.actor = actor;
  StepRecord record;
  record.version = request.version;
  record.name = event.name;
  record.checksum = m != nullptr ? m->checksum : "";
  record.run_id = run_id;
  record.actor = actor;
  using Action = RepairRequest::Action;
  switch (request.action) {
    case Action::kClearFailure: {
      if (!state.failure) return std::string("there is no recorded failure to clear");
      RETURN_IF_ERROR(session->SetFailure(std::nullopt));
      event.version = state.failure->version;
      event.message = absl::StrCat("cleared the failure of version ", state.failure->version);
      RETURN_IF_ERROR(session->RecordEvent(event));
      return event.message;
    }
    case Action::kClearDirty: {
      if (row == nullptr || !row->dirty) {
        return absl::InvalidArgumentError(
            absl::StrCat("version ", request.version, " is not dirty"));
      }
      event.message = absl::StrCat("cleared dirty version ", request.version,
                                   ": marked applied (finished by hand)");
      *changed = true;
      RETURN_IF_ERROR(session->MarkApplied(record, event));
      return event.message;
    }
    case Action::kMarkApplied: {
      if (m == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "version ", request.version, " is not in the coordinator's migration set"));
      }
      event.message =
          row == nullptr
              ? absl::StrCat("marked version ", m->Label(), " applied without running it")
              : absl::StrCat("marked version ", m->Label(), " applied with the file's checksum ",
                             m->checksum.substr(0, 12), "… (was ", row->checksum.substr(0, 12),
                             "…", row->dirty ? ", dirty" : "", ")");
      *changed = true;
      RETURN_IF_ERROR(session->MarkApplied(record, event));
      return event.message;
    }
    case Action::kMarkNotApplied: {
      if (row == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("version ", request.version, " is not recorded as applied"));
      }
      event.message = absl::StrCat("marked version ", request.version, " (", row->name,
                                   ") not applied; its SQL was not undone by schemagate");
      *changed = true;
      RETURN_IF_ERROR(session->DeleteRow(request.version, event));
      return event.message;
    }
    case Action::kResume: {
      if (row == nullptr || !row->dirty) {
        return absl::InvalidArgumentError(
            absl::StrCat("version ", request.version, " is not dirty: nothing to resume"));
      }
      // A cut rollback resumes its down file; a cut apply its up file.
      const MigrationScript* script =
          m == nullptr ? nullptr : m->script(!row->rolling_back);
      if (script == nullptr || script->transactional()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "version ", request.version, " is not a no-transaction ",
            row->rolling_back ? "rollback" : "migration",
            " of the set; use --clear-dirty or --mark-not-applied after checking the database"));
      }
      if (m->checksum != row->checksum) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the file of version ", request.version,
            " changed since it started; resume runs the same statements or none"));
      }
      *changed = true;
      RETURN_IF_ERROR(session->BumpEpoch().status());
      const int cut = row->statements_done;
      int first = cut;
      std::string dropped;
      RETURN_IF_ERROR(PrepareResume(*session, script->statements, &first, &dropped));
      RunContext run;
      run.session = session;
      run.run_id = run_id;
      run.actor = actor;
      run.emit = emit;
      PlanStep step;
      step.migration = m;
      step.up = !row->rolling_back;
      step.script = script;
      step.limits = LimitsFor(*script, defaults());
      // The one step executor, as for apply: events, lock-timeout retries,
      // the failure recorded and the row left dirty if it fails again.
      RETURN_IF_ERROR(ExecuteStep(run, step, first, /*resuming=*/true));
      const int count = static_cast<int>(script->statements.size());
      event.message = absl::StrCat("resumed ", step.up ? "" : "the rollback of ", m->Label(),
                                   " at statement ", cut + 1, " of ", count, dropped);
      RETURN_IF_ERROR(session->RecordEvent(event));
      return event.message;
    }
  }
  return absl::InvalidArgumentError("unknown repair action");
}

absl::StatusOr<std::string> Runner::Baseline(int64_t version, const std::string& actor_in) {
  const std::string actor = actor_in.empty() ? options_.coordinator_id : actor_in;
  const std::string run_id = NewRunId();
  if (set_->Find(version) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "baseline version ", version, " is not in the coordinator's migration set"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<RunSession> session,
                   LockForRun(nullptr, [](RunEvent) {}));
  ASSIGN_OR_RETURN(DatabaseState state, session->ReadState());
  if (!state.applied.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the database already records ", state.applied.size(),
        " applied migration(s); baseline only adopts a database schemagate has never run on"));
  }
  std::string alembic;
  for (const ForeignBookkeeping& f : state.foreign) {
    if (f.tool == ForeignTool::kAlembic && f.up_to) alembic = f.up_to->version;
  }
  int marked = 0;
  for (const Migration& m : set_->migrations()) {
    if (m.version > version) break;
    StepRecord record;
    record.version = m.version;
    record.name = m.name;
    record.checksum = m.checksum;
    record.run_id = run_id;
    record.actor = actor;
    EventRecord event;
    event.kind = "baseline";
    event.version = m.version;
    event.name = m.name;
    event.run_id = run_id;
    event.actor = actor;
    event.message = absl::StrCat("adopted as applied by baseline ", version);
    RETURN_IF_ERROR(session->MarkApplied(record, event));
    ++marked;
  }
  RecordSchema(session.get(), run_id);
  std::string message =
      absl::StrCat("baseline: marked ", marked, " migration(s) up to ", version, " applied");
  if (!alembic.empty()) {
    absl::StrAppend(&message, "; found an alembic_version table at revision ", alembic,
                    ": make sure version ", version, " matches that revision");
  }
  LogInfo("%s (by %s)", message, actor);
  return message;
}

}  // namespace schemagate
