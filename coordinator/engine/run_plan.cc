#include "coordinator/engine/run_plan.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/engine/adopt.h"

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
  b.message = absl::StrCat("migration ", row.version, " (", row.name, ") is dirty: ",
                           row.rolling_back ? "the rollback of a no-transaction migration"
                                            : "a no-transaction migration",
                           " stopped after statement ", row.statements_done,
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
    } else if (m->checksum != it->checksum && db.TextFailed(m->version, m->checksum)) {
      b.message = absl::StrCat("this coordinator's file for version ", m->Label(),
                               " is an older text that failed; the applied one came from a "
                               "coordinator with a fixed file, whose down may differ: roll back "
                               "from a coordinator with the applied file");
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
  if (plan->steps.empty() || request.force) return;
  // Instances that need a version above the target would run against a
  // schema older than they were built for.
  std::vector<InstanceRecord> stranded = InstancesRequiringAbove(db, request.target_version);
  if (stranded.empty()) return;
  PlanBlocker& b = plan->blocker;
  b.kind = BlockerKind::kStrandsInstances;
  b.version = request.target_version;
  b.message = absl::StrCat(
      "rolling back to ", request.target_version, " strands ", stranded.size(),
      " live instance(s) that need a version above it: ",
      DescribeInstances(stranded, 5, InstanceDetail::kRequired),
      "; stop them (or roll them back to a release that needs ", request.target_version,
      " or less) first, or pass --force to roll back anyway");
  b.instances = std::move(stranded);
  plan->steps.clear();
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

std::vector<InstanceRecord> InstancesRequiringAbove(const DatabaseState& db, int64_t version) {
  std::vector<InstanceRecord> needing;
  for (const InstanceRecord& i : db.live_instances) {
    if (i.required_version > version) needing.push_back(i);
  }
  return needing;
}

std::string DescribeInstances(const std::vector<InstanceRecord>& instances, size_t limit,
                              InstanceDetail detail) {
  std::vector<std::string> named;
  for (size_t i = 0; i < instances.size() && i < limit; ++i) {
    const InstanceRecord& r = instances[i];
    named.push_back(absl::StrCat(
        r.app.empty() ? "app" : r.app, " ", r.app_version.empty() ? "?" : r.app_version,
        " (id ", r.instance_id,
        detail == InstanceDetail::kKnown ? absl::StrCat(", knows up to ", r.known_version)
                                         : absl::StrCat(", needs ", r.required_version),
        ")"));
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
    } else if (m->checksum != applied.checksum && !db.TextFailed(m->version, m->checksum)) {
      conflicts.push_back(absl::StrCat("version ", applied.version, " (", m->up.path,
                                       ") was edited after it was applied: checksum ",
                                       m->checksum.substr(0, 12), "… differs from applied ",
                                       applied.checksum.substr(0, 12), "…"));
    }
  }
  return conflicts;
}

std::vector<std::string> FindOlderFiles(const MigrationSet& set, const DatabaseState& db) {
  std::vector<std::string> older;
  for (const AppliedMigration& applied : db.applied) {
    const Migration* m = set.Find(applied.version);
    if (m == nullptr || m->checksum == applied.checksum ||
        !db.TextFailed(m->version, m->checksum)) {
      continue;
    }
    older.push_back(absl::StrCat(
        "this coordinator's file for version ", applied.version, " (", m->up.path,
        ", checksum ", m->checksum.substr(0, 12), "…) is an older text that failed; ",
        applied.applied_by.empty() ? "another coordinator" : applied.applied_by,
        " applied a fixed one (", applied.checksum.substr(0, 12),
        "…): redeploy this coordinator with the fixed file (never 'repair --mark-applied' "
        "the old one)"));
  }
  return older;
}

std::vector<int64_t> OutOfOrderVersions(const MigrationSet& set, const DatabaseState& db,
                                        int64_t target) {
  const int64_t head = db.AppliedHead();
  std::vector<int64_t> versions;
  for (const Migration& m : set.migrations()) {
    if (m.version >= head || (target != 0 && m.version > target)) break;
    if (db.Find(m.version) == nullptr) versions.push_back(m.version);
  }
  return versions;
}

PlanBlocker RefuseOutOfOrder(const MigrationSet& set, const DatabaseState& db, int64_t target) {
  PlanBlocker b;
  std::vector<int64_t> below = OutOfOrderVersions(set, db, target);
  if (below.empty()) return b;
  b.kind = BlockerKind::kOutOfOrder;
  b.version = below.front();
  b.message = absl::StrCat(
      "refusing out-of-order migration(s) ", absl::StrJoin(below, ", "),
      ": pending but older than the applied head ", db.AppliedHead(),
      " (added after newer ones ran); give them versions above ", db.AppliedHead(),
      ", or start schemagated with --allow-out-of-order to apply them in version order");
  b.versions = std::move(below);
  return b;
}

PlanBlocker RefuseUnmanagedSchema(const MigrationSet& set, const DatabaseState& db,
                                  bool adopting) {
  PlanBlocker b;
  if (!db.applied.empty() || db.unrecorded_table_count == 0 || set.migrations().empty()) {
    return b;
  }
  b.kind = BlockerKind::kUnmanagedSchema;
  b.version = set.migrations().front().version;
  if (!db.foreign.empty()) {
    // Another tool's bookkeeping: adopt it rather than baseline by hand.
    absl::StatusOr<ForeignBookkeeping> one = ChooseForeign(db.foreign, std::nullopt);
    AdoptPlan adoption;
    if (one.ok() && one->tool != ForeignTool::kAlembic) adoption = PlanAdoption(set, *one, {});
    if (adopting && one.ok() && adoption.ok()) return PlanBlocker();
    b.message = absl::StrCat(
        "schemagate has recorded no migration on this database, and another tool has: ",
        DescribeAdoption(set, db.foreign),
        adopting ? ". schemagated --adopt cannot adopt it by itself: run "
                   "'schemagatectl adopt' (docs/coming-from-*.md)"
                 : ". Nothing runs until then (running the set again would redo that tool's "
                   "work); see docs/coming-from-*.md");
    return b;
  }
  const bool more = db.unrecorded_table_count > static_cast<int64_t>(db.unrecorded_tables.size());
  b.message = absl::StrCat(
      "the database already has ", db.unrecorded_table_count, " table(s) (",
      absl::StrJoin(db.unrecorded_tables, ", "), more ? ", …" : "",
      ") but schemagate has recorded no migration: the schema was made by another tool or by "
      "hand. Adopt it with 'schemagatectl baseline --version V' (V: the last migration it "
      "already has); nothing runs until then. If the set's first migration is meant to run "
      "on these tables, or they belong to another app, start schemagated with "
      "--allow-non-empty");
  return b;
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

  if (!request.permissions.allow_non_empty) {
    blocker = RefuseUnmanagedSchema(set, db, request.permissions.adopt);
    if (plan.blocked()) return plan;
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

  if (db.failure && db.failure->of_repeatable()) {
    // As a migration's: blocks until its file changes or an operator retries.
    const SqlFailure& f = *db.failure;
    const Repeatable* failed = set.FindRepeatable(f.name);
    if (failed != nullptr && failed->checksum == f.checksum && !request.retry_failed) {
      blocker.kind = BlockerKind::kFailed;
      blocker.failure = f;
      blocker.message = absl::StrCat("the last run failed: ", DescribeRepeatableFailure(f, set),
                                     "; fix the file and redeploy the coordinator, or retry "
                                     "with 'schemagatectl apply'");
      return plan;
    }
    plan.clears_failure = true;
  } else if (db.failure) {
    const SqlFailure& f = *db.failure;
    const Migration* failed = set.Find(f.version);
    const bool unchanged = failed != nullptr && failed->checksum == f.checksum;
    // The last failure is of another text, but this file failed before: an
    // older file (a coordinator not yet redeployed with the fix). Retrying
    // it would fail again, and two coordinators would take turns.
    const bool older =
        failed != nullptr && !unchanged && db.TextFailed(f.version, failed->checksum);
    const bool still_pending = db.Find(f.version) == nullptr;
    if ((unchanged || older) && still_pending && !request.retry_failed) {
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
          older ? absl::StrCat(
                      "; that run had another file (checksum ", f.checksum.substr(0, 12), "…",
                      f.coordinator_id.empty() ? "" : absl::StrCat(", ", f.coordinator_id),
                      "), and this coordinator's file (", failed->checksum.substr(0, 12),
                      "…) is an older text that failed before: it is not retried; fix the "
                      "file and redeploy the coordinators")
                : "; fix the file and redeploy the coordinator, or retry with 'schemagatectl "
                  "apply'");
      return plan;
    }
    plan.clears_failure = true;
  }

  if (!request.permissions.allow_out_of_order) {
    blocker = RefuseOutOfOrder(set, db, target);
    if (plan.blocked()) return plan;
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
  // Repeatables run after the versioned migrations, once the run reaches the head.
  if (!plan.blocked() && plan.steps.size() == plan.pending.size() && target == set.Head()) {
    plan.repeatables = PendingRepeatables(set, db, defaults, request.retry_failed);
  }
  return plan;
}

}  // namespace schemagate
