// Reading another tool's bookkeeping rows (foreign_bookkeeping.h); each
// tool's rules are in docs/coming-from-<tool>.md.
#include "coordinator/engine/foreign_bookkeeping.h"

#include <algorithm>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace schemagate {
namespace {

// What a parser starts from: `count` rows of `tool`'s table.
ForeignBookkeeping Read(ForeignTool tool, size_t count) {
  ForeignBookkeeping found;
  found.tool = tool;
  found.row_count = static_cast<int64_t>(count);
  return found;
}

}  // namespace

const char* ForeignToolName(ForeignTool tool) {
  switch (tool) {
    case ForeignTool::kGolangMigrate:
      return "golang-migrate";
    case ForeignTool::kDbmate:
      return "dbmate";
    case ForeignTool::kGoose:
      return "goose";
    case ForeignTool::kFlyway:
      return "flyway";
    case ForeignTool::kAlembic:
      return "alembic";
  }
  return "?";
}

absl::StatusOr<ForeignTool> ParseForeignTool(absl::string_view text) {
  for (ForeignTool tool : {ForeignTool::kGolangMigrate, ForeignTool::kDbmate, ForeignTool::kGoose,
                           ForeignTool::kFlyway, ForeignTool::kAlembic}) {
    if (text == ForeignToolName(tool)) return tool;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tool '", text, "' (--from takes ", kForeignToolChoices, ")"));
}

ForeignBookkeeping ParseGolangMigrateRows(const std::vector<GolangMigrateRow>& rows) {
  ForeignBookkeeping found = Read(ForeignTool::kGolangMigrate, rows.size());
  if (rows.size() > 1) {
    // golang-migrate keeps exactly one row (it truncates before it writes).
    found.problems.push_back(absl::StrCat(
        "schema_migrations has ", rows.size(),
        " rows; golang-migrate keeps one (the current version): is it another tool's table?"));
    return found;
  }
  // No row, or version -1 (golang-migrate's "nothing applied"): nothing to adopt.
  if (rows.empty() || rows.front().version <= 0) return found;
  ForeignVersion v;
  v.version = absl::StrCat(rows.front().version);
  v.dirty = rows.front().dirty;
  v.detail = v.dirty ? "the current version, dirty" : "the current version";
  found.up_to = v;
  return found;
}

ForeignBookkeeping ParseDbmateRows(const std::vector<std::string>& versions) {
  ForeignBookkeeping found = Read(ForeignTool::kDbmate, versions.size());
  for (const std::string& version : versions) {
    ForeignVersion v;
    v.version = version;
    found.applied.push_back(v);
  }
  return found;
}

ForeignBookkeeping ParseGooseRows(const std::vector<GooseRow>& rows) {
  ForeignBookkeeping found = Read(ForeignTool::kGoose, rows.size());
  // The row with the highest id of each version decides, as goose reads it
  // (an up inserts is_applied = true, a down inserts or deletes a row).
  std::map<int64_t, const GooseRow*> latest;
  for (const GooseRow& row : rows) {
    if (row.version_id == 0) continue;  // goose's own first row
    const GooseRow*& seen = latest[row.version_id];
    if (seen == nullptr || row.id > seen->id) seen = &row;
  }
  std::vector<const GooseRow*> applied;
  for (const auto& [version, row] : latest) {
    if (row->is_applied) {
      applied.push_back(row);
    } else {
      found.notes.push_back(absl::StrCat("version ", version, " was rolled back (id ", row->id,
                                         " is_applied = false): not applied"));
    }
  }
  std::sort(applied.begin(), applied.end(),
            [](const GooseRow* a, const GooseRow* b) { return a->id < b->id; });
  for (const GooseRow* row : applied) {
    ForeignVersion v;
    v.version = absl::StrCat(row->version_id);
    v.detail = absl::StrCat("id ", row->id);
    found.applied.push_back(v);
  }
  return found;
}

ForeignBookkeeping ParseFlywayRows(const std::vector<FlywayRow>& rows) {
  ForeignBookkeeping found = Read(ForeignTool::kFlyway, rows.size());
  auto find = [&found](const std::string& version) {
    return std::find_if(found.applied.begin(), found.applied.end(),
                        [&](const ForeignVersion& v) { return v.version == version; });
  };
  for (const FlywayRow& row : rows) {
    const std::string type = absl::AsciiStrToUpper(row.type);
    const std::string rank = absl::StrCat("installed_rank ", row.installed_rank);
    if (type == "SCHEMA") continue;  // "<< Flyway Schema Creation >>"
    if (!row.version || row.version->empty()) {
      found.notes.push_back(absl::StrCat("repeatable migration ", row.script, " (", rank,
                                         ") is not adopted: it is not a versioned migration"));
      continue;
    }
    const std::string& version = *row.version;
    auto it = find(version);
    if (absl::EndsWith(type, "BASELINE")) {
      ForeignVersion v;
      v.version = version;
      v.detail = absl::StrCat(rank, ", ", row.description);
      found.up_to = v;
      found.up_to_is_baseline = true;
      continue;
    }
    if (type == "DELETE" || (absl::StartsWith(type, "UNDO") && row.success)) {
      if (it != found.applied.end()) found.applied.erase(it);
      found.notes.push_back(absl::StrCat("version ", version, " was ",
                                         type == "DELETE" ? "deleted by flyway repair" : "undone",
                                         " (", rank, "): not applied"));
      continue;
    }
    ForeignVersion v;
    v.version = version;
    // A failed undo leaves the version half undone: dirty as well.
    v.dirty = !row.success;
    v.detail = absl::StrCat(rank, !row.success ? ", success = false" : "",
                            absl::StartsWith(type, "UNDO") ? ", a failed undo" : "");
    if (it != found.applied.end()) {
      *it = v;
    } else {
      found.applied.push_back(v);
    }
  }
  return found;
}

ForeignBookkeeping ParseAlembicRows(const std::vector<std::string>& version_nums) {
  ForeignBookkeeping found = Read(ForeignTool::kAlembic, version_nums.size());
  if (version_nums.size() > 1) {
    found.problems.push_back(absl::StrCat(
        "alembic_version has ", version_nums.size(), " heads (", absl::StrJoin(version_nums, ", "),
        "): a branched history; merge the branches in Alembic (alembic merge) first"));
    return found;
  }
  if (version_nums.empty()) return found;
  ForeignVersion v;
  v.version = version_nums.front();
  v.detail = "the current revision";
  found.up_to = v;
  return found;
}

std::string DescribeForeign(const ForeignBookkeeping& found) {
  std::string text = absl::StrCat(found.table, " (", ForeignToolName(found.tool), "): ");
  if (!found.problems.empty()) return absl::StrCat(text, found.problems.front());
  std::vector<std::string> parts;
  if (found.up_to) {
    parts.push_back(absl::StrCat(found.up_to_is_baseline ? "baselined at " : "at ",
                                 found.tool == ForeignTool::kAlembic ? "revision " : "version ",
                                 found.up_to->version, found.up_to->dirty ? " (dirty)" : ""));
  }
  if (!found.applied.empty()) {
    const int64_t dirty = std::count_if(found.applied.begin(), found.applied.end(),
                                        [](const ForeignVersion& v) { return v.dirty; });
    parts.push_back(absl::StrCat(found.applied.size(), " version(s) recorded, the last ",
                                 found.applied.back().version,
                                 dirty > 0 ? absl::StrCat(", ", dirty, " failed") : ""));
  }
  if (parts.empty()) parts.push_back("nothing applied");
  return absl::StrCat(text, absl::StrJoin(parts, "; "));
}

std::string AlembicRevisionInHeader(absl::string_view content) {
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, kAlembicRevisionHeader)) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
    if (!absl::StartsWith(line, "--") && !line.empty()) break;
  }
  return "";
}

}  // namespace schemagate
