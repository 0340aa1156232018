#include "coordinator/engine/run_plan.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace schemagate {
namespace {

PlanStep MakeStep(const Migration& m, bool up, const StepDefaults& defaults) {
  PlanStep step;
  step.migration = &m;
  step.up = up;
  step.script = up ? &m.up : &*m.down;
  step.limits = LimitsFor(*step.script, defaults);
  return step;
}

// The first dirty row, or nullptr.
const AppliedMigration* FirstDirty(const DatabaseState& db) {
  for (const AppliedMigration& row : db.applied) {
    if (row.dirty) return &row;
  }
  return nullptr;
}

PlanBlocker DirtyBlocker(const AppliedMigration& row) {
  PlanBlocker b;
  b.kind = BlockerKind::kDirty;
  b.version = row.version;
  b.message = absl::StrCat("migration ", row.version, " (", row.name,
                           ") is dirty: a no-transaction migration stopped after statement ",
                           row.statements_done,
                           "; check the database, then 'schemagatectl repair --resume ",
                           row.version, "' (or --clear-dirty / --mark-not-applied)");
  return b;
}

void PlanDown(const MigrationSet& set, const DatabaseState& db, const PlanRequest& request,
              const StepDefaults& defaults, RunPlan* plan) {
  // Newest first; every down must exist before anything runs.
  for (auto it = db.applied.rbegin(); it != db.applied.rend(); ++it) {
    if (it->version <= request.target_version) break;
    const Migration* m = set.Find(it->version);
    PlanBlocker& b = plan->blocker;
    if (m == nullptr) {
      b.message = absl::StrCat("version ", it->version, " (", it->name,
                               ") is applied but not in the coordinator's migration set: its "
                               "down is unknown; roll back to ",
                               it->version, " or above");
    } else if (!m->down) {
      b.message = absl::StrCat("version ", m->Label(), " has no down migration (", m->version,
                               "_", m->name, ".down.sql); write it, or roll back to ",
                               m->version, " or above");
    } else if (m->checksum != it->checksum) {
      b.message = absl::StrCat("version ", m->Label(),
                               " was edited after it was applied; its down may not match what "
                               "ran. Resolve the checksum first ('schemagatectl validate')");
    } else {
      plan->steps.push_back(MakeStep(*m, /*up=*/false, defaults));
      continue;
    }
    b.kind = BlockerKind::kNoDown;
    b.version = it->version;
    plan->steps.clear();
    return;
  }
}

}  // namespace

StatementLimits LimitsFor(const MigrationScript& script, const StepDefaults& defaults) {
  StatementLimits limits;
  limits.lock_timeout = script.directives.lock_timeout.value_or(defaults.lock_timeout);
  limits.statement_timeout =
      script.directives.statement_timeout.value_or(defaults.statement_timeout);
  return limits;
}

std::vector<InstanceRecord> InstancesBelow(const DatabaseState& db, int64_t version) {
  std::vector<InstanceRecord> older;
  for (const InstanceRecord& i : db.live_instances) {
    if (i.known_version < version) older.push_back(i);
  }
  return older;
}

std::string DescribeInstances(const std::vector<InstanceRecord>& instances, size_t limit) {
  std::vector<std::string> named;
  for (size_t i = 0; i < instances.size() && i < limit; ++i) {
    const InstanceRecord& r = instances[i];
    named.push_back(absl::StrCat(r.app.empty() ? "app" : r.app, " ",
                                 r.app_version.empty() ? "?" : r.app_version, " (id ",
                                 r.instance_id, ", knows up to ", r.known_version, ")"));
  }
  std::string text = absl::StrJoin(named, ", ");
  if (instances.size() > limit) absl::StrAppend(&text, " and ", instances.size() - limit, " more");
  return text;
}

std::vector<std::string> FindConflicts(const MigrationSet& set, const DatabaseState& db) {
  std::vector<std::string> conflicts;
  for (const AppliedMigration& applied : db.applied) {
    const Migration* m = set.Find(applied.version);
    if (m == nullptr) {
      conflicts.push_back(absl::StrCat("version ", applied.version, " (", applied.name,
                                       ") is applied but has no file in the migration set"));
    } else if (m->checksum != applied.checksum) {
      conflicts.push_back(absl::StrCat("version ", applied.version, " (", m->up.path,
                                       ") was edited after it was applied: checksum ",
                                       m->checksum.substr(0, 12), "… differs from applied ",
                                       applied.checksum.substr(0, 12), "…"));
    }
  }
  return conflicts;
}

PlanRequest AutomaticRequest() {
  PlanRequest request;
  request.respect_hold = true;
  return request;
}

RunPlan PlanRun(const MigrationSet& set, const DatabaseState& db, const PlanRequest& request,
                const StepDefaults& defaults) {
  RunPlan plan;
  PlanBlocker& blocker = plan.blocker;
  if (const AppliedMigration* dirty = FirstDirty(db)) {
    blocker = DirtyBlocker(*dirty);
    return plan;
  }
  if (request.direction == PlanRequest::Direction::kDown) {
    PlanDown(set, db, request, defaults, &plan);
    return plan;
  }

  if (request.target_version != 0 && set.Find(request.target_version) == nullptr) {
    blocker.kind = BlockerKind::kUnknownVersion;
    blocker.version = request.target_version;
    blocker.message = absl::StrCat("version ", request.target_version,
                                   " is not in the coordinator's migration set (head ",
                                   set.Head(), ")");
    return plan;
  }
  const int64_t target = request.target_version == 0 ? set.Head() : request.target_version;
  for (const Migration& m : set.migrations()) {
    if (m.version > target) break;
    if (db.Find(m.version) == nullptr) plan.pending.push_back(&m);
  }

  std::vector<std::string> conflicts = FindConflicts(set, db);
  if (!conflicts.empty()) {
    blocker.kind = BlockerKind::kConflict;
    blocker.message = absl::StrCat("the migration set disagrees with the database: ",
                                   absl::StrJoin(conflicts, "; "),
                                   "; nothing runs until an operator resolves it "
                                   "('schemagatectl validate')");
    return plan;
  }

  if (db.failure) {
    const SqlFailure& f = *db.failure;
    const Migration* failed = set.Find(f.version);
    const bool unchanged = failed != nullptr && failed->checksum == f.checksum;
    const bool still_pending = db.Find(f.version) == nullptr;
    if (unchanged && still_pending && !request.retry_failed) {
      blocker.kind = BlockerKind::kFailed;
      blocker.version = f.version;
      blocker.failure = f;
      blocker.message = absl::StrCat(
          "the last run failed on migration ", f.version, " (", f.name, ")",
          f.sqlstate.empty() ? "" : " [",
          f.sqlstate, f.sqlstate.empty() ? "" : "]",
          f.statement_index > 0
              ? absl::StrCat(" at statement ", f.statement_index, " (line ", f.line, ")")
              : "",
          ": ", f.message,
          "; fix the file and redeploy the coordinator, or retry with 'schemagatectl apply'");
      return plan;
    }
    plan.clears_failure = true;
  }

  const std::optional<int64_t> hold = db.hold_above;
  if (hold && !request.respect_hold) plan.lifts_hold = true;
  bool previous_breaking_allowed = false;
  for (const Migration* m : plan.pending) {
    if (request.respect_hold && hold && m->version > *hold) {
      if (plan.steps.empty()) {
        blocker.kind = BlockerKind::kHold;
        blocker.version = m->version;
        blocker.message = absl::StrCat(
            "version ", m->Label(), " is held: the schema was rolled back to ", *hold,
            "; an operator resumes with 'schemagatectl apply'");
      }
      break;
    }
    if (m->breaking() && !request.allow_breaking) {
      std::vector<InstanceRecord> older = InstancesBelow(db, m->version);
      // A run of consecutive breaking migrations shares one gate decision
      // (one grace period); each still needs no live instance below it.
      const bool allowed = previous_breaking_allowed
                               ? older.empty()
                               : request.breaking_gate && request.breaking_gate(*m, db);
      if (!allowed) {
        blocker.kind = BlockerKind::kBreakingHeld;
        blocker.version = m->version;
        blocker.message =
            older.empty()
                ? absl::StrCat("breaking migration ", m->Label(),
                               " held back: no live instance needs the schema before it; it "
                               "is applied once the grace period has passed")
                : absl::StrCat("breaking migration ", m->Label(), " held back: ", older.size(),
                               " live instance(s) still need the schema before it: ",
                               DescribeInstances(older),
                               "; it is applied once they are gone (or force it with "
                               "'schemagatectl apply --allow-breaking')");
        blocker.instances = std::move(older);
        break;
      }
      previous_breaking_allowed = true;
    } else {
      previous_breaking_allowed = false;
    }
    plan.steps.push_back(MakeStep(*m, /*up=*/true, defaults));
  }
  return plan;
}

}  // namespace schemagate
