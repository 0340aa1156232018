// Format detection and golang-migrate's reader (the other formats:
// format_goose.cc, format_dbmate.cc, format_flyway.cc).
#include "coordinator/engine/format_split.h"
#include "coordinator/engine/set_format.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "coordinator/engine/migration_set.h"

namespace schemagate {
namespace {

bool AllDigits(absl::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), absl::ascii_isdigit);
}

// V1.2__x.sql, U1__x.sql, R__x.sql, their Java sources and compiled classes,
// and .conf files.
bool IsFlywayFileName(absl::string_view file) {
  if (!absl::EndsWith(file, ".sql") && !absl::EndsWith(file, ".java") &&
      !absl::EndsWith(file, ".class") && !absl::EndsWith(file, ".sql.conf")) {
    return false;
  }
  if (absl::StartsWith(file, "R__")) return true;
  if (file.empty() || (file[0] != 'V' && file[0] != 'U')) return false;
  const size_t separator = file.find("__");
  return separator != absl::string_view::npos && separator > 1 &&
         absl::ascii_isdigit(static_cast<unsigned char>(file[1]));
}

// The single-file format an NNN_name.sql file's markers name, if any.
std::optional<SetFormat> MarkedFormat(absl::string_view content) {
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "--")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    if (absl::StartsWithIgnoreCase(rest, "+goose")) return SetFormat::kGoose;
    if (absl::StartsWith(rest, "migrate:up") || absl::StartsWith(rest, "migrate:down")) {
      return SetFormat::kDbmate;
    }
  }
  return std::nullopt;
}

}  // namespace

constexpr SetFormat kFormats[] = {SetFormat::kAuto, SetFormat::kGolangMigrate, SetFormat::kGoose,
                                  SetFormat::kDbmate, SetFormat::kFlyway};

std::vector<std::string> SetFormatNames() {
  std::vector<std::string> names;
  for (SetFormat format : kFormats) names.push_back(SetFormatName(format));
  return names;
}

absl::StatusOr<SetFormat> ParseSetFormat(absl::string_view text) {
  for (SetFormat format : kFormats) {
    if (text == SetFormatName(format)) return format;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--format: '", text, "' is not a format; give one of ", kSetFormatChoices));
}

const char* SetFormatName(SetFormat format) {
  switch (format) {
    case SetFormat::kAuto:
      return "auto";
    case SetFormat::kGolangMigrate:
      return "golang-migrate";
    case SetFormat::kGoose:
      return "goose";
    case SetFormat::kDbmate:
      return "dbmate";
    case SetFormat::kFlyway:
      return "flyway";
  }
  return "auto";
}

bool ParseNumberedFileName(absl::string_view file, absl::string_view ext, std::string* digits,
                           std::string* name) {
  absl::string_view rest = file;
  if (!absl::ConsumeSuffix(&rest, ext)) return false;
  const size_t underscore = rest.find('_');
  if (underscore == absl::string_view::npos || underscore + 1 >= rest.size()) return false;
  if (!AllDigits(rest.substr(0, underscore))) return false;
  *digits = std::string(rest.substr(0, underscore));
  *name = std::string(rest.substr(underscore + 1));
  return true;
}

size_t OffsetOfLine(absl::string_view content, int line) {
  size_t offset = 0;
  for (int i = 1; i < line && offset < content.size(); ++i) {
    const size_t newline = content.find('\n', offset);
    if (newline == absl::string_view::npos) return content.size();
    offset = newline + 1;
  }
  return offset;
}

MigrationSource SplitAtDownLine(const std::string& file, const std::string& content,
                                int down_line) {
  MigrationSource source;
  const size_t down_at = down_line != 0 ? OffsetOfLine(content, down_line) : content.size();
  source.up.file = file;
  source.up.content = content.substr(0, down_at);
  if (down_line != 0) {
    ScriptSource down;
    down.file = file;
    down.content = content.substr(down_at);
    down.first_line = down_line;
    down.first_byte = down_at;
    source.down = std::move(down);
  }
  return source;
}

absl::StatusOr<SetFormat> DetectSetFormat(const SetFiles& files) {
  std::map<SetFormat, std::vector<std::string>> found;
  std::vector<std::string> unmarked;  // NNN_name.sql with neither marker
  for (const std::string& file : files.names) {
    std::string digits, name;
    bool is_up = false;
    if (ParseMigrationFileName(file, &digits, &name, &is_up)) {
      found[SetFormat::kGolangMigrate].push_back(file);
    } else if (IsFlywayFileName(file)) {
      found[SetFormat::kFlyway].push_back(file);
    } else if (ParseNumberedFileName(file, ".go", &digits, &name)) {
      found[SetFormat::kGoose].push_back(file);
    } else if (ParseNumberedFileName(file, ".sql", &digits, &name)) {
      absl::StatusOr<std::string> content = files.read(file);
      std::optional<SetFormat> format =
          content.ok() ? MarkedFormat(*content) : std::optional<SetFormat>();
      if (format) {
        found[*format].push_back(file);
      } else {
        unmarked.push_back(file);
      }
    }
  }
  auto listed = [&files](const std::vector<std::string>& names) {
    std::vector<std::string> paths;
    for (size_t i = 0; i < names.size() && i < 3; ++i) paths.push_back(files.Path(names[i]));
    if (names.size() > 3) paths.push_back(absl::StrCat("and ", names.size() - 3, " more"));
    return absl::StrJoin(paths, ", ");
  };
  if (found.size() > 1) {
    std::vector<std::string> parts;
    for (const auto& [format, names] : found) {
      parts.push_back(absl::StrCat(SetFormatName(format), " (", listed(names), ")"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        files.dir, ": files of more than one format: ", absl::StrJoin(parts, "; "),
        "; schemagate reads one format per directory: convert or move out the files of "
        "the others (docs/formats.md)"));
  }
  if (found.empty()) {
    if (unmarked.empty()) return SetFormat::kGolangMigrate;
    return absl::InvalidArgumentError(absl::StrCat(
        files.dir, ": cannot tell the format of ", listed(unmarked),
        ": no '-- +goose Up' (goose) or '-- migrate:up' (dbmate) line; add the marker or "
        "pass --format"));
  }
  return found.begin()->first;
}

void AddMigrationSource(const SetFiles& files, MigrationSource source,
                        std::map<int64_t, MigrationSource>* by_version) {
  auto [it, added] = by_version->emplace(source.version, source);
  if (!added) {
    files.errors->push_back(absl::StrCat(
        files.Path(source.up.file), ":1: duplicate version ", source.version, ", also used by ",
        files.Path(it->second.up.file), "; give one of them a new version"));
  }
}

std::vector<MigrationSource> SourcesInOrder(std::map<int64_t, MigrationSource> by_version) {
  std::vector<MigrationSource> sources;
  sources.reserve(by_version.size());
  for (auto& [version, source] : by_version) sources.push_back(std::move(source));
  return sources;
}

std::vector<MigrationSource> ReadSingleFileSet(const SetFiles& files, absl::string_view tool,
                                               const SingleFileReader& read_file) {
  std::map<int64_t, MigrationSource> by_version;
  for (const std::string& file : files.names) {
    std::string digits, name;
    if (!ParseNumberedFileName(file, ".sql", &digits, &name)) {
      files.Warn(absl::StrCat(files.Path(file), ": ignored (not a ", tool, " VERSION_name.sql)"));
      continue;
    }
    absl::StatusOr<int64_t> version = ParseVersion(digits);
    if (!version.ok()) {
      files.errors->push_back(absl::StrCat(files.Path(file), ":1: ", version.status().message()));
      continue;
    }
    absl::StatusOr<std::string> content = files.read(file);
    if (!content.ok()) {
      files.errors->push_back(std::string(content.status().message()));
      continue;
    }
    std::optional<MigrationSource> source = read_file(file, *content);
    if (!source) continue;
    source->version = *version;
    source->name = name;
    AddMigrationSource(files, *std::move(source), &by_version);
  }
  return SourcesInOrder(std::move(by_version));
}

std::vector<MigrationSource> ReadGolangMigrateSet(const SetFiles& files) {
  struct Pair {
    std::vector<std::string> ups, downs;
    std::string name;
  };
  std::map<int64_t, Pair> by_version;
  for (const std::string& file : files.names) {
    std::string digits, name;
    bool is_up = false;
    if (!ParseMigrationFileName(file, &digits, &name, &is_up)) {
      files.Warn(absl::StrCat(files.Path(file),
                              ": ignored (not VERSION_name.up.sql or VERSION_name.down.sql)"));
      continue;
    }
    absl::StatusOr<int64_t> version = ParseVersion(digits);
    if (!version.ok()) {
      files.errors->push_back(absl::StrCat(files.Path(file), ":1: ", version.status().message()));
      continue;
    }
    Pair& pair = by_version[*version];
    (is_up ? pair.ups : pair.downs).push_back(file);
    if (is_up) pair.name = name;
  }
  // A golang-migrate file read as schemagate reads it, with morph's
  // `-- morph:nontransactional` among its leading comment lines.
  auto script = [&files](const std::string& file) -> std::optional<ScriptSource> {
    absl::StatusOr<std::string> content = files.read(file);
    if (!content.ok()) {
      files.errors->push_back(std::string(content.status().message()));
      return std::nullopt;
    }
    ScriptSource source;
    source.file = file;
    source.content = *std::move(content);
    for (absl::string_view line : absl::StrSplit(source.content, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (line == "-- morph:nontransactional") source.no_transaction = true;
      if (!line.empty() && !absl::StartsWith(line, "--")) break;
    }
    return source;
  };
  std::vector<MigrationSource> sources;
  for (auto& [version, pair] : by_version) {
    if (pair.ups.size() > 1 || pair.downs.size() > 1) {
      const auto& dup = pair.ups.size() > 1 ? pair.ups : pair.downs;
      files.errors->push_back(absl::StrCat(files.Path(dup[1]), ":1: duplicate version ", version,
                                           ", also used by ", files.Path(dup[0]),
                                           "; give one of them a new version (schemagatectl new)"));
      continue;
    }
    if (pair.ups.empty()) {
      files.errors->push_back(absl::StrCat(files.Path(pair.downs[0]),
                                           ":1: down migration without an up file for version ",
                                           version, "; add the .up.sql or remove the .down.sql"));
      continue;
    }
    MigrationSource source;
    source.version = version;
    source.name = pair.name;
    std::optional<ScriptSource> up = script(pair.ups[0]);
    std::optional<ScriptSource> down;
    if (!pair.downs.empty()) down = script(pair.downs[0]);
    if (!up || (!pair.downs.empty() && !down)) continue;
    source.up = *std::move(up);
    source.down = std::move(down);
    sources.push_back(std::move(source));
  }
  return sources;
}

}  // namespace schemagate
