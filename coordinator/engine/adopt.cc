// Planning an adoption (adopt.h).
#include "coordinator/engine/adopt.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace schemagate {
namespace {

// Whether a Flyway set stores its versions dotted (FlywayVersionNumber):
// some V file's version has more than one part, as the reader decided it.
bool FlywaySetIsDotted(const MigrationSet& set) {
  for (const Migration& m : set.migrations()) {
    absl::string_view file = m.up.path;
    if (size_t slash = file.rfind('/'); slash != absl::string_view::npos) {
      file.remove_prefix(slash + 1);
    }
    if (!absl::ConsumePrefix(&file, "V")) continue;
    const size_t end = file.find("__");
    if (end == absl::string_view::npos) continue;
    absl::StatusOr<std::vector<uint64_t>> parts = ParseFlywayVersion(file.substr(0, end));
    if (parts.ok() && parts->size() > 1) return true;
  }
  return false;
}

// Flyway's version text as the set stores it; nullopt if it does not fit.
std::optional<int64_t> FlywayNumber(const MigrationSet& set, const std::string& version) {
  absl::StatusOr<std::vector<uint64_t>> parts = ParseFlywayVersion(version);
  if (!parts.ok()) return std::nullopt;
  absl::StatusOr<int64_t> number = FlywayVersionNumber(*parts, FlywaySetIsDotted(set));
  if (!number.ok()) return std::nullopt;
  return *number;
}

}  // namespace

int AdoptPlan::dirty_count() const {
  return static_cast<int>(
      std::count_if(steps.begin(), steps.end(), [](const AdoptStep& s) { return s.dirty; }));
}

std::string AdoptPlan::Summary() const {
  const int dirty = dirty_count();
  return absl::StrCat(steps.size(), " version(s) from ", source.table, " (",
                      ForeignToolName(source.tool), ")",
                      dirty > 0 ? absl::StrCat(", ", dirty, " of them dirty") : "",
                      missing.empty() ? "" : absl::StrCat(", ", missing.size(), " left out"),
                      pending.empty() ? "" : absl::StrCat("; ", pending.size(), " pending"));
}

std::vector<std::string> AdoptPlan::Lines() const {
  std::vector<std::string> lines;
  for (const AdoptStep& s : steps) {
    lines.push_back(absl::StrCat(s.dirty ? "dirty    " : "applied  ", s.migration->Label(), "  (",
                                 ForeignToolName(source.tool), " ", s.foreign_version,
                                 s.detail.empty() ? "" : absl::StrCat(", ", s.detail), ")"));
  }
  for (const std::string& v : missing) {
    lines.push_back(absl::StrCat("missing  ", v, "  (recorded by ", ForeignToolName(source.tool),
                                 ", no file in the set)"));
  }
  for (int64_t v : pending) lines.push_back(absl::StrCat("pending  ", v, "  (runs afterwards)"));
  for (const std::string& note : source.notes) lines.push_back(absl::StrCat("note     ", note));
  return lines;
}

std::optional<int64_t> SetVersionOf(const MigrationSet& set, ForeignTool tool,
                                    const std::string& version, const AdoptOptions& options) {
  std::optional<int64_t> number;
  if (tool == ForeignTool::kAlembic) {
    if (!options.alembic_revision) return std::nullopt;
    for (const Migration& m : set.migrations()) {
      if (options.alembic_revision(m) == version) return m.version;
    }
    return std::nullopt;
  }
  if (tool == ForeignTool::kFlyway) {
    number = FlywayNumber(set, version);
  } else if (absl::StatusOr<int64_t> parsed = ParseVersion(version); parsed.ok()) {
    number = *parsed;
  }
  if (!number || set.Find(*number) == nullptr) return std::nullopt;
  return number;
}

AdoptPlan PlanAdoption(const MigrationSet& set, const ForeignBookkeeping& found,
                       const AdoptOptions& options) {
  AdoptPlan plan;
  plan.source = found;
  plan.problems = found.problems;
  if (!plan.ok()) return plan;
  // Version of the set -> step; a later record of the same version wins.
  std::map<int64_t, AdoptStep> steps;
  if (found.up_to) {
    const ForeignVersion& up_to = *found.up_to;
    std::optional<int64_t> head = SetVersionOf(set, found.tool, up_to.version, options);
    if (found.up_to_is_baseline && found.tool == ForeignTool::kFlyway) {
      // A baseline needs no file: every version at or below it counts.
      head = FlywayNumber(set, up_to.version);
    }
    if (!head) {
      plan.missing.push_back(up_to.version);
    } else {
      for (const Migration& m : set.migrations()) {
        if (m.version > *head) break;
        AdoptStep& step = steps[m.version];
        step.migration = &m;
        step.dirty = m.version == *head && up_to.dirty;
        step.foreign_version = m.version == *head ? up_to.version : "below it";
        step.detail = m.version == *head ? up_to.detail : "";
      }
    }
  }
  for (const ForeignVersion& v : found.applied) {
    std::optional<int64_t> version = SetVersionOf(set, found.tool, v.version, options);
    if (!version) {
      plan.missing.push_back(v.version);
      continue;
    }
    AdoptStep& step = steps[*version];
    step.migration = set.Find(*version);
    step.dirty = v.dirty;
    step.foreign_version = v.version;
    step.detail = v.detail;
  }
  for (auto& [version, step] : steps) plan.steps.push_back(step);
  for (const Migration& m : set.migrations()) {
    if (steps.count(m.version) == 0) plan.pending.push_back(m.version);
  }
  if (!plan.missing.empty() && !options.skip_missing) {
    plan.problems.push_back(absl::StrCat(
        found.table, " records ", plan.missing.size(),
        " version(s) the migration set has no file for: ", absl::StrJoin(plan.missing, ", "),
        found.tool == ForeignTool::kAlembic
            ? " (is the directory the output of 'schemagatectl import-alembic' of this project?)"
            : " (a deleted file, another directory, another --format?)",
        "; restore the files, or pass --skip-missing to adopt the rest and leave those out"));
  }
  return plan;
}

absl::StatusOr<ForeignBookkeeping> ChooseForeign(const std::vector<ForeignBookkeeping>& found,
                                                 std::optional<ForeignTool> from) {
  std::vector<std::string> names;
  for (const ForeignBookkeeping& f : found) {
    if (from && f.tool == *from) return f;
    names.push_back(absl::StrCat(f.table, " (", ForeignToolName(f.tool), ")"));
  }
  if (from || found.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "no ", from ? absl::StrCat(ForeignToolName(*from), " ") : "",
        "bookkeeping table found in the schemas of the search_path",
        names.empty() ? "" : absl::StrCat(" (found ", absl::StrJoin(names, ", "), ")"),
        "; adopt looks for schema_migrations (golang-migrate, dbmate), goose_db_version, "
        "flyway_schema_history and alembic_version (docs/coming-from-*.md)"));
  }
  if (found.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("found the bookkeeping of more than one tool: ", absl::StrJoin(names, ", "),
                     "; say which one to adopt with --from"));
  }
  return found.front();
}

std::string DescribeAdoption(const MigrationSet& set, const std::vector<ForeignBookkeeping>& found,
                             const AdoptOptions& options) {
  if (found.empty()) return "";
  std::vector<std::string> tables;
  for (const ForeignBookkeeping& f : found) tables.push_back(DescribeForeign(f));
  std::string text = absl::StrCat("found ", absl::StrJoin(tables, "; "));
  if (found.size() > 1) {
    return absl::StrCat(text, ". Adopt one with 'schemagatectl adopt --from TOOL'");
  }
  const ForeignBookkeeping& f = found.front();
  if (f.tool == ForeignTool::kAlembic && !options.alembic_revision) {
    return absl::StrCat(text,
                        ". 'schemagatectl adopt --from alembic' maps the revision onto the "
                        "migration 'schemagatectl import-alembic' wrote for it");
  }
  const AdoptPlan plan = PlanAdoption(set, f, options);
  if (!plan.ok()) return absl::StrCat(text, ". Adoption would be refused: ", plan.problems.front());
  return absl::StrCat(text, ". 'schemagatectl adopt' (or schemagated --adopt) would record ",
                      plan.Summary());
}

}  // namespace schemagate
