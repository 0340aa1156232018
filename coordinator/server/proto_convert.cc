#include "coordinator/server/proto_convert.h"

#include <algorithm>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/sql/lint.h"

namespace schemagate {

void ToProto(const SqlFailure& failure, v1::Failure* out) {
  out->set_version(failure.version);
  out->set_name(failure.name);
  out->set_sqlstate(failure.sqlstate);
  out->set_message(failure.message);
  out->set_statement_index(failure.statement_index);
  out->set_line(failure.line);
  SetTime(failure.at, out->mutable_at());
  out->set_coordinator_id(failure.coordinator_id);
  out->set_repeatable(failure.of_repeatable());
}

void ToProto(const EventRecord& event, v1::Event* out) {
  out->set_id(event.id);
  SetTime(event.at, out->mutable_at());
  out->set_kind(event.kind);
  out->set_version(event.version);
  out->set_name(event.name);
  out->set_run_id(event.run_id);
  out->set_actor(event.actor);
  if (event.duration) SetDuration(*event.duration, out->mutable_duration());
  out->set_sqlstate(event.sqlstate);
  out->set_message(event.message);
  out->set_statement_index(event.statement_index);
  out->set_line(event.line);
}

void ToProto(const InstanceRecord& i, v1::Instance* out) {
  out->set_instance_id(i.instance_id);
  out->set_app(i.app);
  out->set_app_version(i.app_version);
  out->set_known_version(i.known_version);
  out->set_required_version(i.required_version);
  out->set_coordinator_id(i.coordinator_id);
  SetTime(i.first_seen, out->mutable_first_seen());
  SetTime(i.last_seen, out->mutable_last_seen());
}

// With the readiness the instance's own targets have against the view.
void ToProto(const InstanceRecord& i, const SchemaView& view, v1::Instance* out) {
  ToProto(i, out);
  AppTarget target;
  target.known_version = i.known_version;
  target.required_version = i.required_version;
  out->set_state(ToProto(EvaluateReadiness(target, view).state));
}

void ToProto(const RunEvent& event, v1::RunProgress* out) {
  out->set_held_back(event.held_back);
  switch (event.kind) {
    case RunEvent::Kind::kLockWait: out->set_kind(v1::LOCK_WAIT); break;
    case RunEvent::Kind::kLockAcquired: out->set_kind(v1::LOCK_ACQUIRED); break;
    case RunEvent::Kind::kMigrationStarted: out->set_kind(v1::MIGRATION_STARTED); break;
    case RunEvent::Kind::kStatementStarted: out->set_kind(v1::STATEMENT_STARTED); break;
    case RunEvent::Kind::kMigrationFinished: out->set_kind(v1::MIGRATION_FINISHED); break;
    case RunEvent::Kind::kMigrationFailed: out->set_kind(v1::MIGRATION_FAILED); break;
    case RunEvent::Kind::kLockTimeoutRetry: out->set_kind(v1::LOCK_TIMEOUT_RETRY); break;
    case RunEvent::Kind::kRunFinished: out->set_kind(v1::RUN_FINISHED); break;
    case RunEvent::Kind::kBackupTaken: out->set_kind(v1::BACKUP_TAKEN); break;
    case RunEvent::Kind::kBackupFailed: out->set_kind(v1::BACKUP_FAILED); break;
  }
  out->set_run_id(event.run_id);
  out->set_version(event.version);
  out->set_name(event.name);
  out->set_statement_index(event.statement_index);
  out->set_statement_count(event.statement_count);
  SetDuration(event.elapsed, out->mutable_elapsed());
  out->set_message(event.message);
  if (event.failure) ToProto(*event.failure, out->mutable_failure());
  out->set_applied(event.applied);
}

void BuildStatus(const Snapshot& snapshot, const CoordinatorOptions& options,
                 const std::string& schema, const std::string& database, v1::Status* out) {
  const SchemaView& view = snapshot.view;
  const MigrationSet& set = *view.set;
  const DatabaseState& db = view.db;
  out->set_applied_version(db.AppliedHead());
  out->set_head_version(set.Head());
  int applied = 0, pending = 0;
  for (const Migration& m : set.migrations()) {
    const AppliedMigration* row = db.Find(m.version);
    if (row != nullptr && !row->dirty) {
      ++applied;
    } else if (row == nullptr) {
      ++pending;
    }
  }
  out->set_applied_count(applied);
  out->set_pending_count(pending);
  for (const AppliedMigration& row : db.applied) {
    if (row.dirty) out->add_dirty_versions(row.version);
  }
  for (const std::string& conflict : view.conflicts) out->add_conflicts(conflict);
  for (const std::string& note : FindOlderFiles(set, db)) out->add_notes(note);
  const int pending_repeatables = AddRepeatables(view, out);
  if (db.failure) ToProto(*db.failure, out->mutable_failure());
  out->set_apply_mode(options.manual ? v1::MANUAL : v1::AUTO);
  out->set_coordinator_id(options.coordinator_id);
  out->set_schema(schema);
  out->set_database(database);
  SetTime(snapshot.refreshed_at, out->mutable_refreshed_at());
  out->set_run_epoch(db.run_epoch);
  out->set_set_error(view.set_error);

  if (!view.database_available) {
    out->set_state(v1::DATABASE_UNAVAILABLE);
    out->set_message(RedactSecrets(absl::StrCat("cannot reach the database: ", view.database_error)));
    return;
  }
  // What an automatic run would do (DESIGN.md "One run plan"), without the
  // grace period: live instances that predate a breaking migration block it.
  PlanRequest request = AutomaticRequest();
  request.permissions = view.permissions;
  request.breaking_gate = [](const Migration& m, const DatabaseState& state) {
    return InstancesBelow(state, m.version).empty();
  };
  const RunPlan plan = PlanRun(set, db, request, StepDefaults());
  const PlanBlocker& blocker = plan.blocker;
  const bool failed = db.failure && db.Find(db.failure->version) == nullptr &&
                      (blocker.kind == BlockerKind::kFailed || options.manual);
  // Running is not failing: a dirty row or a failure is what the run in
  // progress is working on; "not current" (exit 1), never FAILED.
  if (view.run_in_progress && (blocker.kind == BlockerKind::kDirty || failed)) {
    out->set_state(v1::RUNNING);
    const AppliedMigration* row = db.Find(blocker.version);
    out->set_message(
        blocker.kind == BlockerKind::kDirty && row != nullptr
            ? absl::StrCat("a run is under way: no-transaction migration ", row->version, " (",
                           row->name, ") at statement ", row->statements_done + 1, "; ",
                           pending, " pending")
            : absl::StrCat("a run is under way, retrying ", FailedSubject(*db.failure), "; ",
                           pending, " pending"));
  } else if (blocker.kind == BlockerKind::kDirty) {
    out->set_state(v1::DIRTY);
    out->set_message(blocker.message);
  } else if (blocker.kind == BlockerKind::kConflict) {
    out->set_state(v1::CONFLICT);
    out->set_message(absl::StrCat("the migration set disagrees with the database: ",
                                  absl::StrJoin(view.conflicts, "; ")));
  } else if (blocker.kind == BlockerKind::kOutOfOrder ||
             blocker.kind == BlockerKind::kUnmanagedSchema) {
    // Refused until an operator acts (exit 5), not waiting for anything.
    out->set_state(v1::SET_REFUSED);
    out->set_message(blocker.message);
    out->set_blocked_version(blocker.version);
  } else if (failed) {
    out->set_state(v1::SET_FAILED);
    out->set_message(absl::StrCat(
        db.failure->of_repeatable()
            ? DescribeRepeatableFailure(*db.failure, set)
            : absl::StrCat("migration ", db.failure->version, " failed [", db.failure->sqlstate,
                           "]: ", db.failure->message),
        options.manual ? "; fix it, then 'schemagatectl apply'" : ""));
  } else if (view.run_in_progress && (pending > 0 || pending_repeatables > 0)) {
    out->set_state(v1::RUNNING);
    out->set_message(absl::StrCat("a run is under way; ", pending, " pending",
                                  RepeatablesPending(pending_repeatables)));
  } else if (plan.steps.empty() && blocker.kind == BlockerKind::kBreakingHeld &&
             !blocker.instances.empty()) {
    out->set_state(v1::SET_BLOCKED);
    out->set_message(blocker.message);
    out->set_blocked_version(blocker.version);
    for (const InstanceRecord& i : blocker.instances) {
      ToProto(i, view, out->add_blocking_instances());
    }
  } else if (pending > 0 || pending_repeatables > 0) {
    out->set_state(v1::BEHIND);
    out->set_message(absl::StrCat(
        pending, " migration(s) pending", RepeatablesPending(pending_repeatables),
        plan.steps.empty() && plan.blocked() ? absl::StrCat(": ", blocker.message)
        : options.manual                     ? " (--apply=manual: run 'schemagatectl apply')"
                                             : ""));
  } else {
    out->set_state(v1::CURRENT);
    out->set_message(absl::StrCat("every migration is applied; schema at version ",
                                  db.AppliedHead()));
  }
}

void BuildMigrations(const Snapshot& snapshot, v1::ListMigrationsResponse* out) {
  const SchemaView& view = snapshot.view;
  const DatabaseState& db = view.db;
  std::vector<int64_t> versions;
  for (const Migration& m : view.set->migrations()) versions.push_back(m.version);
  for (const AppliedMigration& row : db.applied) versions.push_back(row.version);
  std::sort(versions.begin(), versions.end());
  versions.erase(std::unique(versions.begin(), versions.end()), versions.end());
  for (int64_t version : versions) {
    const Migration* m = view.set->Find(version);
    const AppliedMigration* row = db.Find(version);
    v1::Migration* out_m = out->add_migrations();
    out_m->set_version(version);
    out_m->set_name(m != nullptr ? m->name : row->name);
    if (m != nullptr) {
      out_m->set_checksum(m->checksum);
      out_m->set_transactional(m->transactional());
      out_m->set_breaking(m->breaking());
      out_m->set_has_down(m->down.has_value());
      out_m->set_statement_count(static_cast<int32_t>(m->up.statements.size()));
    }
    if (row != nullptr) {
      out_m->set_applied_checksum(row->checksum);
      SetTime(row->applied_at, out_m->mutable_applied_at());
      SetDuration(row->duration, out_m->mutable_duration());
      out_m->set_applied_by(row->applied_by);
    }
    if (row == nullptr) {
      const bool failed = db.failure && db.failure->version == version;
      out_m->set_state(failed ? v1::MIGRATION_LAST_RUN_FAILED : v1::MIGRATION_PENDING);
    } else if (row->dirty) {
      out_m->set_state(v1::MIGRATION_DIRTY);
      out_m->set_statements_done(row->statements_done);
    } else if (m == nullptr) {
      out_m->set_state(v1::MIGRATION_MISSING_FROM_SET);
    } else if (m->checksum != row->checksum && !db.TextFailed(version, m->checksum)) {
      // (A file that failed before is an older text of the applied one: status notes it.)
      out_m->set_state(v1::MIGRATION_CHECKSUM_MISMATCH);
    } else {
      out_m->set_state(v1::MIGRATION_APPLIED);
    }
  }
}

RunPlan OperatorApplyPlan(const Snapshot& snapshot, const RunnerOptions& runner,
                          int64_t target_version) {
  // No grace period for an operator, but live instances that predate a
  // breaking migration hold it back (unless --allow-breaking).
  PlanRequest request;
  request.target_version = target_version;
  request.retry_failed = true;
  request.permissions = snapshot.view.permissions;
  request.breaking_gate = [](const Migration& m, const DatabaseState& state) {
    return InstancesBelow(state, m.version).empty();
  };
  StepDefaults defaults;
  defaults.lock_timeout = runner.lock_timeout;
  defaults.statement_timeout = runner.statement_timeout;
  return PlanRun(*snapshot.view.set, snapshot.view.db, request, defaults);
}

absl::Status BuildPlan(const Snapshot& snapshot, const RunnerOptions& runner,
                       const v1::PlanRequest& request, v1::PlanResponse* out) {
  const SchemaView& view = snapshot.view;
  const MigrationSet& set = *view.set;
  if (request.rollback()) {
    return absl::UnimplementedError("rollback plans arrive with 'schemagatectl rollback'");
  }
  if (request.target_version() < 0 ||
      (request.target_version() != 0 && set.Find(request.target_version()) == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat("target version ", request.target_version(),
                                                   " is not in the migration set (head ",
                                                   set.Head(), ")"));
  }
  StepDefaults defaults;
  defaults.lock_timeout = runner.lock_timeout;
  defaults.statement_timeout = runner.statement_timeout;
  const RunPlan plan = OperatorApplyPlan(snapshot, runner, request.target_version());
  LintOptions lint;
  lint.default_lock_timeout = runner.lock_timeout;
  for (const Migration* m : plan.pending) {
    const bool runs = out->steps_size() < static_cast<int>(plan.steps.size());
    v1::PlanStep* step = out->add_steps();
    step->set_version(m->version);
    step->set_name(m->name);
    step->set_direction("up");
    step->set_transactional(m->transactional());
    step->set_breaking(m->breaking());
    const StatementLimits limits = LimitsFor(m->up, defaults);
    SetDuration(limits.lock_timeout, step->mutable_lock_timeout());
    SetDuration(limits.statement_timeout, step->mutable_statement_timeout());
    for (const SqlStatement& s : m->up.statements) step->add_statements(s.text);
    AddLintFindings(m->up, lint, step);
    if (!runs && plan.blocked()) {
      step->set_held_back(true);
      step->set_held_back_reason(m->version == plan.blocker.version
                                     ? plan.blocker.message
                                     : absl::StrCat("waits for ", plan.blocker.version));
    }
  }
  AddRepeatableSteps(plan, lint, out);
  if (!view.database_available) {
    out->set_note(RedactSecrets(absl::StrCat("the database is unreachable (", view.database_error,
                                             "); the plan assumes the last state seen")));
  } else if (plan.stopped() && plan.blocker.kind != BlockerKind::kBreakingHeld) {
    out->set_note(absl::StrCat("nothing will run: ", plan.blocker.message));
  } else if (plan.blocker.kind == BlockerKind::kBreakingHeld) {
    out->set_note(absl::StrCat(plan.steps.size(), " migration(s) would apply; ",
                               plan.pending.size() - plan.steps.size(), " held back: ",
                               plan.blocker.message));
  } else if (plan.clears_failure) {
    out->set_note(absl::StrCat("the last run failed on ", FailedSubject(*view.db.failure),
                               "; 'schemagatectl apply' retries it"));
  } else if (out->steps_size() == 0) {
    out->set_note(absl::StrCat("nothing to apply: the database is at ", view.db.AppliedHead()));
  }
  return absl::OkStatus();
}

void BuildInstances(const Snapshot& snapshot, v1::ListInstancesResponse* out) {
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const InstanceRecord& i : snapshot.view.db.live_instances) {
    ToProto(i, snapshot.view, out->add_instances());
    ++counts[{i.app, i.app_version}];
  }
  for (const auto& [key, n] : counts) {
    v1::VersionCount* count = out->add_counts();
    count->set_app(key.first);
    count->set_app_version(key.second);
    count->set_instances(n);
  }
}

}  // namespace schemagate
