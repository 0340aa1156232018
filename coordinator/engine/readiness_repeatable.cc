// The fleet rules for repeatable migrations (readiness.h RepeatablesWait):
// an app is READY only once every repeatable text of its set is the one
// applied.
#include "absl/strings/str_cat.h"
#include "coordinator/engine/readiness.h"

namespace schemagate {
namespace {

std::string Short(const std::string& checksum) { return absl::StrCat(checksum.substr(0, 12), "…"); }

// What the run plan does about a repeatable text the coordinator has: the
// blocker that stops it, if any (the plan's own words).
bool PlanStopsRepeatables(const SchemaView& view, ReadinessAnswer* answer) {
  PlanRequest request = AutomaticRequest();
  request.permissions = view.permissions;
  request.breaking_gate = [](const Migration& m, const DatabaseState& state) {
    return InstancesBelow(state, m.version).empty();
  };
  const RunPlan plan = PlanRun(*view.set, view.db, request, StepDefaults());
  const PlanBlocker& blocker = plan.blocker;
  switch (blocker.kind) {
    case BlockerKind::kNone:
      return false;
    case BlockerKind::kHold:
      answer->state = ReadinessState::kPending;
      break;
    case BlockerKind::kBreakingHeld:
      answer->state =
          blocker.instances.empty() ? ReadinessState::kPending : ReadinessState::kBlocked;
      break;
    default:
      // Nothing runs until an operator acts (dirty, conflict, failed, refused).
      answer->state = ReadinessState::kFailed;
      break;
  }
  answer->blocking_version = blocker.version;
  answer->message = absl::StrCat("the repeatables wait for the run plan: ", blocker.message);
  return true;
}

}  // namespace

bool RepeatablesWait(const AppTarget& target, const SchemaView& view, ReadinessAnswer* answer) {
  const DatabaseState& db = view.db;
  for (const auto& [name, checksum] : target.repeatable_checksums) {
    const AppliedRepeatable* applied = db.FindRepeatable(name);
    if (applied != nullptr && applied->checksum == checksum) continue;
    answer->blocking_version = 0;
    const std::string label = absl::StrCat("repeatable ", name);
    const std::optional<SqlFailure>& f = db.failure;
    if (f && f->of_repeatable() && f->name == name && f->checksum == checksum) {
      if (view.run_in_progress) {
        answer->state = ReadinessState::kMigrating;
        answer->message = absl::StrCat("a run is retrying ", label, ", which failed before");
      } else {
        answer->state = ReadinessState::kFailed;
        answer->message = absl::StrCat(DescribeRepeatableFailure(*f, *view.set),
                                       "; fix the file and redeploy the coordinator and the "
                                       "app, or retry with 'schemagatectl apply'");
      }
      return true;
    }
    const Repeatable* mine = view.set->FindRepeatable(name);
    const bool older = applied != nullptr && db.RepeatableTextApplied(name, checksum);
    if (older) {
      // Keep waiting: a deploy of the current file (or an operator's apply) ends it.
      answer->state = ReadinessState::kUnknownVersion;
      answer->message =
          absl::StrCat("the app's file of ", label, " (checksum ", Short(checksum),
                       ") is a text applied before and since replaced (", Short(applied->checksum),
                       " is applied): deploy the app with the current file",
                       mine != nullptr && mine->checksum == checksum
                           ? ", or run 'schemagatectl apply' to re-apply it (a revert)"
                           : "");
      return true;
    }
    if (mine == nullptr || mine->checksum != checksum) {
      answer->state = ReadinessState::kUnknownVersion;
      answer->message = absl::StrCat(
          "the app's file of ", label, " (checksum ", Short(checksum), ") is ",
          mine == nullptr
              ? "not in the coordinator's set"
              : absl::StrCat("not the coordinator's text (", Short(mine->checksum), ")"),
          "; deploy the coordinator with the app's migrations first");
      return true;
    }
    if (view.run_in_progress) {
      answer->state = ReadinessState::kMigrating;
      answer->message = absl::StrCat("a run is under way; it applies ", label,
                                     " after the "
                                     "versioned migrations");
      return true;
    }
    if (PlanStopsRepeatables(view, answer)) return true;
    answer->state = ReadinessState::kPending;
    answer->message = absl::StrCat(
        label, applied == nullptr ? " (new)" : " (changed)", " is not applied yet",
        view.manual ? "; the coordinator runs with --apply=manual: an operator must run "
                      "'schemagatectl apply'"
                    : "; a run will apply it shortly");
    return true;
  }
  return false;
}

}  // namespace schemagate
