// Flyway's SQL migrations: V<version>__<description>.sql, with
// U<version>__<description>.sql as its undo (the down). Versions are dotted
// or underscored numbers compared part by part as Flyway's MigrationVersion
// compares them (1.0 equals 1; 1.2 < 1.10), stored as 64-bit integers
// (FlywayVersionNumber). A migration whose statement cannot run in a
// transaction runs outside one, as Flyway runs it; `V…sql.conf` with
// executeInTransaction=false says so explicitly. R__<name>.sql files are
// repeatable migrations (ReadRepeatables). Refused, naming the file: Java
// migrations and ${placeholders}.
#include <algorithm>
#include <limits>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/set_format.h"

namespace schemagate {
namespace {

constexpr int kDottedParts = 6;
constexpr uint64_t kPartLimit = 1000;       // each part after the first: 0..999
constexpr uint64_t kFirstPartLimit = 9223;  // 9222 * 10^15 + 999...: below INT64_MAX

struct FlywayName {
  char prefix = 0;  // 'V' or 'U'
  std::string version, description;
};

// V1.2__add_users.sql -> {'V', "1.2", "add_users"}.
std::optional<FlywayName> ParseFlywayFileName(absl::string_view file) {
  absl::string_view rest = file;
  if (!absl::ConsumeSuffix(&rest, ".sql") || rest.size() < 2) return std::nullopt;
  if (rest[0] != 'V' && rest[0] != 'U') return std::nullopt;
  const size_t separator = rest.find("__");
  if (separator == absl::string_view::npos || separator < 2) return std::nullopt;
  FlywayName name;
  name.prefix = rest[0];
  name.version = std::string(rest.substr(1, separator - 1));
  name.description = std::string(rest.substr(separator + 2));
  return name;
}

// Flyway's ${placeholder}s are replaced by Flyway, not by schemagate.
void RefusePlaceholders(const SetFiles& files, const std::string& file,
                        const std::string& content) {
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    ++line_number;
    const size_t at = line.find("${");
    if (at == absl::string_view::npos) continue;
    const size_t end = line.find('}', at);
    files.errors->push_back(absl::StrCat(
        files.Path(file), ":", line_number, ": Flyway placeholder '",
        line.substr(at, end == absl::string_view::npos ? 2 : end - at + 1),
        "' is not supported: schemagate runs the file as written; put the value in the SQL"));
    return;
  }
}

// executeInTransaction from a V…sql.conf file; nullopt if it does not say.
std::optional<bool> ExecuteInTransaction(const SetFiles& files, const std::string& conf) {
  absl::StatusOr<std::string> content = files.read(conf);
  if (!content.ok()) {
    files.errors->push_back(std::string(content.status().message()));
    return std::nullopt;
  }
  std::optional<bool> in_transaction;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*content, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    const absl::string_view key = absl::StripAsciiWhitespace(kv.first);
    const std::string value = absl::AsciiStrToLower(absl::StripAsciiWhitespace(kv.second));
    if (key == "executeInTransaction" && (value == "true" || value == "false")) {
      in_transaction = value == "true";
    } else {
      files.errors->push_back(absl::StrCat(
          files.Path(conf), ":", line_number, ": '", line,
          "' is not supported; schemagate reads executeInTransaction=true|false only"));
    }
  }
  return in_transaction;
}

}  // namespace

absl::StatusOr<std::vector<uint64_t>> ParseFlywayVersion(absl::string_view text) {
  std::vector<uint64_t> parts;
  const std::string dotted = absl::StrReplaceAll(text, {{"_", "."}});
  for (absl::string_view part : absl::StrSplit(dotted, '.')) {
    uint64_t value = 0;
    if (part.empty() || !std::all_of(part.begin(), part.end(), absl::ascii_isdigit)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", text, "' is not a Flyway version (numbers separated by '.' or '_')"));
    }
    if (!absl::SimpleAtoi(part, &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("version ", text, ": part ", part, " does not fit 64 bits"));
    }
    parts.push_back(value);
  }
  while (parts.size() > 1 && parts.back() == 0) parts.pop_back();
  return parts;
}

absl::StatusOr<int64_t> FlywayVersionNumber(const std::vector<uint64_t>& parts, bool dotted) {
  const std::string text = absl::StrJoin(parts, ".");
  if (!dotted) {
    if (parts.size() != 1 || parts[0] == 0 ||
        parts[0] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat("version ", text, " cannot be stored: schemagate's versions are 1..2^63-1"));
    }
    return static_cast<int64_t>(parts[0]);
  }
  const bool fits =
      parts.size() <= kDottedParts && parts[0] < kFirstPartLimit &&
      std::all_of(parts.begin() + 1, parts.end(), [](uint64_t part) { return part < kPartLimit; });
  if (!fits) {
    return absl::InvalidArgumentError(
        absl::StrCat("version ", text,
                     " cannot be stored: in a set with dotted versions schemagate keeps "
                     "each version as six groups of three digits (1.2.3 is 1002003000000000), so a "
                     "version has at most 6 parts, the first below 9223 and the others below 1000 "
                     "(docs/formats.md)"));
  }
  int64_t number = 0;
  for (int i = 0; i < kDottedParts; ++i) {
    number =
        number * 1000 + static_cast<int64_t>(i < static_cast<int>(parts.size()) ? parts[i] : 0);
  }
  if (number == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("version ", text, " cannot be stored: schemagate's versions start at 1"));
  }
  return number;
}

std::vector<MigrationSource> ReadFlywaySet(const SetFiles& files) {
  struct Found {
    std::string file;
    FlywayName name;
    std::vector<uint64_t> parts;
  };
  std::vector<Found> found;
  std::set<std::string> names(files.names.begin(), files.names.end());
  for (const std::string& file : files.names) {
    const std::string path = files.Path(file);
    if (absl::StartsWith(file, "R__") && absl::EndsWith(file, ".sql")) {
      continue;  // A repeatable: ReadRepeatables.
    }
    if (absl::EndsWith(file, ".java") || absl::EndsWith(file, ".class")) {
      files.errors->push_back(
          absl::StrCat(path,
                       ":1: Flyway Java migrations are not supported; port it to SQL (a "
                       "V<version>__<description>.sql file)"));
      continue;
    }
    if (absl::EndsWith(file, ".sql.conf") &&
        names.count(std::string(absl::StripSuffix(file, ".conf"))) > 0) {
      continue;  // Read with its migration.
    }
    std::optional<FlywayName> name = ParseFlywayFileName(file);
    if (!name) {
      files.Warn(absl::StrCat(path,
                              ": ignored (not a Flyway V<version>__<description>.sql or "
                              "U<version>__<description>.sql)"));
      continue;
    }
    absl::StatusOr<std::vector<uint64_t>> parts = ParseFlywayVersion(name->version);
    if (!parts.ok()) {
      files.errors->push_back(absl::StrCat(path, ":1: ", parts.status().message()));
      continue;
    }
    found.push_back({file, *std::move(name), *std::move(parts)});
  }
  const bool dotted = std::any_of(found.begin(), found.end(), [](const Found& f) {
    return f.name.prefix == 'V' && f.parts.size() > 1;
  });

  std::map<int64_t, MigrationSource> by_version;
  std::map<int64_t, std::string> undo_files;
  for (const Found& f : found) {
    const std::string path = files.Path(f.file);
    absl::StatusOr<int64_t> version = FlywayVersionNumber(f.parts, dotted);
    if (!version.ok()) {
      files.errors->push_back(absl::StrCat(path, ":1: ", version.status().message()));
      continue;
    }
    absl::StatusOr<std::string> content = files.read(f.file);
    if (!content.ok()) {
      files.errors->push_back(std::string(content.status().message()));
      continue;
    }
    RefusePlaceholders(files, f.file, *content);
    ScriptSource script;
    script.file = f.file;
    script.content = *std::move(content);
    script.no_transaction_if_needed = true;
    if (const std::string conf = f.file + ".conf"; names.count(conf) > 0) {
      if (std::optional<bool> in_transaction = ExecuteInTransaction(files, conf)) {
        script.no_transaction = !*in_transaction;
        script.no_transaction_if_needed = false;
      }
    }
    if (f.name.prefix == 'U') {
      if (auto [it, added] = undo_files.emplace(*version, f.file); !added) {
        files.errors->push_back(absl::StrCat(path, ":1: a second undo of version ", f.name.version,
                                             ", also ", files.Path(it->second), "; keep one"));
        continue;
      }
      by_version[*version].down = std::move(script);
      continue;
    }
    MigrationSource& source = by_version[*version];
    if (!source.up.file.empty()) {
      files.errors->push_back(
          absl::StrCat(path, ":1: duplicate version ", f.name.version, " (Flyway reads ",
                       f.name.version, " as it reads the version of ", files.Path(source.up.file),
                       "); give one of them a new version"));
      continue;
    }
    source.version = *version;
    source.name = f.name.description;
    source.up = std::move(script);
  }
  for (auto it = by_version.begin(); it != by_version.end();) {
    if (it->second.up.file.empty()) {
      files.errors->push_back(absl::StrCat(files.Path(it->second.down->file),
                                           ":1: undo migration without a versioned one; add "
                                           "the V file or remove the U file"));
      it = by_version.erase(it);
    } else {
      ++it;
    }
  }
  return SourcesInOrder(std::move(by_version));
}

std::vector<RepeatableSource> ReadRepeatables(const SetFiles& files,
                                              const std::vector<std::string>& in_folder,
                                              SetFormat format) {
  const bool flyway = format == SetFormat::kFlyway;
  std::vector<RepeatableSource> found;
  auto add = [&](const std::string& file, absl::string_view name) {
    absl::StatusOr<std::string> content = files.read(file);
    if (!content.ok()) {
      files.errors->push_back(std::string(content.status().message()));
      return;
    }
    if (flyway) RefusePlaceholders(files, file, *content);
    RepeatableSource source;
    source.name = std::string(name);
    source.script.file = file;
    source.script.content = *std::move(content);
    found.push_back(std::move(source));
  };
  for (const std::string& file : files.names) {
    absl::string_view name = file;
    if (!absl::ConsumePrefix(&name, "R__") || !absl::ConsumeSuffix(&name, ".sql")) continue;
    if (flyway && !name.empty()) {
      add(file, name);
    } else if (!flyway) {
      files.errors->push_back(absl::StrCat(
          files.Path(file), ":1: an R__ file is a Flyway repeatable; in a ",
          SetFormatName(format), " set a repeatable is ", kRepeatableDir,
          "<name>.sql (docs/formats.md)"));
    } else {
      files.errors->push_back(
          absl::StrCat(files.Path(file), ":1: a repeatable needs a name: R__<name>.sql"));
    }
  }
  for (const std::string& file : in_folder) {
    absl::string_view name = file;
    absl::ConsumePrefix(&name, kRepeatableDir);
    if (flyway) {
      files.errors->push_back(absl::StrCat(
          files.Path(file), ":1: a Flyway set's repeatables are R__<name>.sql files next to "
          "the V files; move it to R__", absl::StripSuffix(name, ".sql"), ".sql"));
    } else if (!absl::ConsumeSuffix(&name, ".sql") || name.empty()) {
      files.Warn(absl::StrCat(files.Path(file), ": ignored (not a repeatable <name>.sql)"));
    } else {
      add(file, name);
    }
  }
  std::sort(found.begin(), found.end(), [](const RepeatableSource& a, const RepeatableSource& b) {
    return a.name < b.name;
  });
  return found;
}

}  // namespace schemagate
