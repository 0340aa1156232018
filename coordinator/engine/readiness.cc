#include "coordinator/engine/readiness.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/engine/run_plan.h"

namespace schemagate {

AppTarget ResolveTarget(const AppTarget& target, const MigrationSet& set) {
  AppTarget out = target;
  if (out.known_version == 0 && out.required_version == 0) {
    out.known_version = set.Head();
    out.required_version = set.HighestNonBreaking();
    if (out.repeatable_checksums.empty()) {
      for (const Repeatable& r : set.repeatables()) out.repeatable_checksums[r.name] = r.checksum;
    }
  } else if (out.required_version == 0) {
    out.required_version = out.known_version;
  } else if (out.known_version == 0) {
    out.known_version = out.required_version;
  }
  return out;
}

std::vector<std::string> ValidateState(const MigrationSet& set, const DatabaseState& db,
                                       const PlanPermissions& permissions) {
  std::vector<std::string> problems = FindConflicts(set, db);
  for (std::string& older : FindOlderFiles(set, db)) problems.push_back(std::move(older));
  for (const AppliedMigration& row : db.applied) {
    if (row.dirty) {
      problems.push_back(absl::StrCat("version ", row.version, " (", row.name,
                                      ") is dirty: cut after statement ", row.statements_done,
                                      "; 'schemagatectl repair --resume ", row.version, "'"));
    }
  }
  if (db.failure && db.failure->of_repeatable()) {
    problems.push_back(absl::StrCat("the last run failed: ", DescribeRepeatableFailure(*db.failure, set)));
  } else if (db.failure && db.Find(db.failure->version) == nullptr) {
    problems.push_back(absl::StrCat("the last run failed on version ", db.failure->version, " [",
                                    db.failure->sqlstate, "]: ", db.failure->message));
  }
  for (std::string& older : FindOlderRepeatables(set, db)) problems.push_back(std::move(older));
  // The run plan's own refusals, in its words (DESIGN.md "One run plan").
  if (!permissions.allow_out_of_order) {
    const PlanBlocker out_of_order = RefuseOutOfOrder(set, db);
    if (out_of_order.kind != BlockerKind::kNone) problems.push_back(out_of_order.message);
  }
  if (!permissions.allow_non_empty) {
    const PlanBlocker unmanaged = RefuseUnmanagedSchema(set, db, permissions.adopt);
    if (unmanaged.kind != BlockerKind::kNone) problems.push_back(unmanaged.message);
  }
  if (db.hold_above) {
    problems.push_back(absl::StrCat("automatic runs are held at version ", *db.hold_above,
                                    " by a rollback; 'schemagatectl apply' lifts the hold"));
  }
  return problems;
}

namespace {

// Every version up to `r` that is not applied cleanly (absent or dirty).
std::vector<const Migration*> NeededVersions(const MigrationSet& set, const DatabaseState& db,
                                             int64_t r) {
  std::vector<const Migration*> needed;
  for (const Migration& m : set.migrations()) {
    if (m.version > r) break;
    const AppliedMigration* applied = db.Find(m.version);
    if (applied == nullptr || applied->dirty) needed.push_back(&m);
  }
  return needed;
}

}  // namespace

ReadinessAnswer EvaluateReadiness(const AppTarget& raw_target, const SchemaView& view) {
  const MigrationSet& set = *view.set;
  const AppTarget target = ResolveTarget(raw_target, set);
  ReadinessAnswer answer;
  answer.known_version = target.known_version;
  answer.required_version = target.required_version;
  const int64_t k = target.known_version;
  const int64_t r = target.required_version;

  if (!view.database_available) {
    answer.state = ReadinessState::kUnavailable;
    answer.message = absl::StrCat("the coordinator cannot reach the database",
                                  view.database_error.empty() ? "" : ": ",
                                  view.database_error, "; waiting for it to come back");
    return answer;
  }
  const DatabaseState& db = view.db;
  answer.applied_version = db.AppliedHead();

  for (const auto& [version, checksum] : target.checksums) {
    const AppliedMigration* applied = db.Find(version);
    // An app file that failed before is an older text of a fixed
    // migration, never applied: not an edit of what was.
    if (applied != nullptr && applied->checksum != checksum &&
        !db.TextFailed(version, checksum)) {
      answer.state = ReadinessState::kMismatch;
      answer.blocking_version = version;
      answer.message = absl::StrCat(
          "the app's file for version ", version, " differs from what was applied (checksum ",
          checksum.substr(0, 12), "… vs applied ", applied->checksum.substr(0, 12),
          "…); an applied migration must never be edited: restore the file or add a new "
          "migration");
      return answer;
    }
  }

  for (const AppliedMigration& row : db.applied) {
    if (row.version <= k || row.dirty) continue;
    const Migration* m = set.Find(row.version);
    if (m != nullptr && m->breaking()) {
      answer.state = ReadinessState::kIncompatible;
      answer.blocking_version = row.version;
      answer.message = absl::StrCat(
          "breaking migration ", row.version, " (", m->name,
          ") is already applied and this app only knows versions up to ", k,
          "; deploy a newer build of the app");
      return answer;
    }
  }

  const bool r_known = r == 0 || set.Find(r) != nullptr || db.Find(r) != nullptr;
  if (!r_known) {
    answer.state = ReadinessState::kUnknownVersion;
    answer.blocking_version = r;
    answer.message = absl::StrCat(
        "the app needs version ", r, " but the coordinator's migration set ends at ",
        set.Head(), "; deploy the coordinator with the new migrations first");
    return answer;
  }
  const std::vector<const Migration*> needed = NeededVersions(set, db, r);
  if (needed.empty() && RepeatablesWait(target, view, &answer)) return answer;
  if (needed.empty()) {
    answer.state = ReadinessState::kReady;
    answer.message = absl::StrCat("schema is at version ", answer.applied_version,
                                  "; the app needs ", r);
    return answer;
  }
  answer.blocking_version = needed.front()->version;

  // What an automatic run would do next (DESIGN.md "One run plan"). Readiness
  // does not wait out the grace period: old live instances make BLOCKED.
  PlanRequest request = AutomaticRequest();
  request.permissions = view.permissions;
  request.target_version = set.Find(r) != nullptr ? r : 0;
  request.breaking_gate = [](const Migration& m, const DatabaseState& state) {
    return InstancesBelow(state, m.version).empty();
  };
  const RunPlan plan = PlanRun(set, db, request, StepDefaults());
  const PlanBlocker& blocker = plan.blocker;
  // Running is not failing: while a run holds the lock, a dirty row is the
  // no-transaction migration it is executing, and a recorded failure is
  // what that run is retrying.
  auto migrating = [&](const std::string& what) {
    answer.state = ReadinessState::kMigrating;
    answer.message = what;
    return answer;
  };
  switch (blocker.kind) {
    case BlockerKind::kDirty: {
      answer.blocking_version = blocker.version;
      const AppliedMigration* row = db.Find(blocker.version);
      const Migration* m = set.Find(blocker.version);
      const MigrationScript* script =
          m == nullptr ? nullptr : m->script(!row->rolling_back);
      if (view.run_in_progress) {
        return migrating(absl::StrCat(
            row->rolling_back ? "rolling back no-transaction migration "
                              : "applying no-transaction migration ",
            m != nullptr ? m->Label() : row->name, ": statement ", row->statements_done + 1,
            script != nullptr ? absl::StrCat(" of ", script->statements.size()) : "", " (",
            needed.size(), " pending up to ", r, ")"));
      }
      answer.state = ReadinessState::kFailed;
      answer.message = absl::StrCat(
          "migration ", row->version, " (", row->name, ") is dirty: ",
          row->rolling_back ? "the rollback of a no-transaction migration"
                            : "a no-transaction migration",
          " stopped part-way (statement ", row->statements_done + 1,
          "); an operator must check the database and run 'schemagatectl repair'");
      return answer;
    }
    case BlockerKind::kConflict:
      answer.state = ReadinessState::kFailed;
      answer.message = absl::StrCat(
          "the coordinator's migration set disagrees with the database (",
          absl::StrJoin(FindConflicts(set, db), "; "),
          "); nothing runs until an operator resolves it ('schemagatectl validate')");
      return answer;
    case BlockerKind::kOutOfOrder:
    case BlockerKind::kUnmanagedSchema:
      answer.blocking_version = blocker.version;
      // Another coordinator, whose flags allow it, may be running it.
      if (view.run_in_progress) {
        return migrating(absl::StrCat("a run is under way; this coordinator would refuse it: ",
                                      blocker.message));
      }
      // Nothing runs until an operator acts: as final as a failure.
      answer.state = ReadinessState::kFailed;
      answer.message = blocker.message;
      return answer;
    case BlockerKind::kFailed:
      answer.blocking_version = blocker.version;
      if (view.run_in_progress) {
        return migrating(absl::StrCat(
            "an operator's run is retrying ",
            blocker.version != 0 ? absl::StrCat("migration ", blocker.version)
                                 : absl::StrCat("repeatable ", blocker.failure->name),
            ", which failed before"));
      }
      answer.state = ReadinessState::kFailed;
      answer.message = blocker.message;
      return answer;
    default:
      break;
  }
  // Under --apply=manual nothing retries a failed migration until an operator does.
  if (view.manual && db.failure && !db.failure->of_repeatable() &&
      db.Find(db.failure->version) == nullptr &&
      db.failure->version <= r) {
    const SqlFailure& f = *db.failure;
    answer.blocking_version = f.version;
    if (view.run_in_progress) {
      return migrating(absl::StrCat("an operator's run is retrying migration ", f.version,
                                    ", which failed before"));
    }
    answer.state = ReadinessState::kFailed;
    answer.message = absl::StrCat(
        "migration ", f.version, " (", f.name, ") failed", f.sqlstate.empty() ? "" : " [",
        f.sqlstate, f.sqlstate.empty() ? "" : "]", ": ", f.message,
        "; the coordinator runs with --apply=manual: fix the file and run 'schemagatectl apply'");
    return answer;
  }
  if (plan.steps.empty() && blocker.kind == BlockerKind::kBreakingHeld &&
      !blocker.instances.empty()) {
    answer.state = ReadinessState::kBlocked;
    answer.blocking_version = blocker.version;
    answer.message = blocker.message;
    return answer;
  }
  const Migration* next = needed.front();
  if (view.run_in_progress) {
    return migrating(absl::StrCat("applying migrations; next needed: ", next->Label(), " (",
                                  needed.size(), " pending up to ", r, ")"));
  }
  answer.state = ReadinessState::kPending;
  if (plan.steps.empty() && blocker.kind == BlockerKind::kHold) {
    answer.message = blocker.message;
    return answer;
  }
  const char* failed_note =
      db.failure && !db.failure->of_repeatable() && db.Find(db.failure->version) == nullptr
          ? " (the file of the migration that failed has changed: it is retried)"
          : "";
  answer.message = view.manual
                       ? absl::StrCat(needed.size(), " migration(s) pending up to ", r, ", next ",
                                      next->Label(),
                                      "; the coordinator runs with --apply=manual: an operator "
                                      "must run 'schemagatectl apply'")
                       : absl::StrCat(needed.size(), " migration(s) pending up to ", r, ", next ",
                                      next->Label(), "; a run will start shortly", failed_note);
  return answer;
}

}  // namespace schemagate
