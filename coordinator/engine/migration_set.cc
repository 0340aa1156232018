#include "coordinator/engine/migration_set.h"

#include "coordinator/base/text.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "coordinator/base/sha256.h"
#include "coordinator/sql/lint_rules.h"

namespace schemagate {
namespace {

constexpr absl::string_view kDirectivePrefix = "-- schemagate:";

// Calls `f` with the name and stat of each regular file of `dir` and of its
// repeatable/ folder (named "repeatable/x.sql"). stat follows symlinks: a
// Kubernetes ConfigMap swaps its files behind them.
void ForEachSetFile(const std::string& dir,
                    const std::function<void(const std::string&, const struct stat&)>& f) {
  for (const std::string prefix : {std::string(), std::string(kRepeatableDir)}) {
    DIR* handle = opendir(absl::StrCat(dir, "/", prefix).c_str());
    if (handle == nullptr) continue;
    while (struct dirent* entry = readdir(handle)) {
      const std::string name = prefix + entry->d_name;
      struct stat st;
      if (std::string(entry->d_name) == "." || std::string(entry->d_name) == ".." ||
          stat(absl::StrCat(dir, "/", name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        continue;
      }
      f(name, st);
    }
    closedir(handle);
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": cannot read: ", std::strerror(errno), " (check the file's permissions)"));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": read error: ", std::strerror(errno)));
  }
  return buffer.str();
}

std::string FoldCrlf(absl::string_view content) {
  std::string out;
  out.reserve(content.size());
  for (size_t i = 0; i < content.size(); ++i) {
    if (content[i] == '\r' && i + 1 < content.size() && content[i + 1] == '\n') continue;
    out += content[i];
  }
  return out;
}

// Joins the statements that lie between a goose StatementBegin/End pair
// into one, run as goose runs the block: whole.
std::vector<SqlStatement> JoinBlocks(std::vector<SqlStatement> statements,
                                     const std::vector<std::pair<int, int>>& blocks) {
  std::vector<SqlStatement> joined;
  for (SqlStatement& statement : statements) {
    bool same_block = false;
    if (!joined.empty()) {
      for (const auto& [begin, end] : blocks) {
        same_block |= joined.back().line > begin && statement.line < end && statement.line > begin;
      }
    }
    if (!same_block) {
      joined.push_back(std::move(statement));
      continue;
    }
    SqlStatement& block = joined.back();
    absl::StrAppend(&block.text, ";\n", statement.text);
    if (block.needs_no_transaction.empty()) block.needs_no_transaction = statement.needs_no_transaction;
    block.is_transaction_control |= statement.is_transaction_control;
  }
  return joined;
}

// Loads one script (up or down) of `dir`, appending problems to `errors`.
std::optional<MigrationScript> LoadScript(const std::string& dir, const ScriptSource& source,
                                          std::string* checksum, const SqlSplitter& split,
                                          std::vector<std::string>* errors) {
  const std::string path = absl::StrCat(dir, "/", source.file);
  // Blank lines in front of a section keep every line number the file's.
  const std::string padding(source.first_line - 1, '\n');
  const std::string content = padding + source.content;
  auto byte_of = [&](size_t offset) { return offset - padding.size() + source.first_byte; };
  if (size_t bad = FindInvalidUtf8(content); bad != absl::string_view::npos) {
    errors->push_back(absl::StrCat(path, ":", LineOfOffset(content, bad),
                                   ": not valid UTF-8 (byte ", byte_of(bad),
                                   "); save the file as UTF-8"));
    return std::nullopt;
  }
  if (size_t nul = content.find('\0'); nul != std::string::npos) {
    // The SQL parser reads C strings: the file would silently end there.
    errors->push_back(absl::StrCat(path, ":", LineOfOffset(content, nul),
                                   ": NUL byte (byte ", byte_of(nul),
                                   "); a migration file is text, remove it"));
    return std::nullopt;
  }
  if (checksum != nullptr) *checksum = MigrationChecksum(source.content);
  const std::string sql = FoldCrlf(content);
  MigrationScript script;
  script.path = path;
  absl::StatusOr<Directives> directives = ParseDirectives(path, sql);
  if (!directives.ok()) {
    errors->push_back(std::string(directives.status().message()));
    return std::nullopt;
  }
  script.directives = *directives;
  script.directives.no_transaction |= source.no_transaction;
  if (split == nullptr) return script;  // Headers only: no statements.
  absl::StatusOr<std::vector<SqlStatement>> statements = split(sql);
  if (!statements.ok()) {
    errors->push_back(absl::StrCat(
        path, ":", absl::StripPrefix(statements.status().message(), "line "),
        " (PostgreSQL 15 cannot parse this SQL; fix the statement)"));
    return std::nullopt;
  }
  if (source.no_transaction_if_needed) {
    for (const SqlStatement& statement : *statements) {
      script.directives.no_transaction |= !statement.needs_no_transaction.empty();
    }
  }
  bool ok = true;
  for (const SqlStatement& statement : *statements) {
    if (statement.is_transaction_control) {
      errors->push_back(absl::StrCat(
          path, ":", statement.line,
          ": transaction control statement (BEGIN/COMMIT/ROLLBACK/SAVEPOINT); remove it: "
          "schemagate runs each migration in its own transaction, or statement by "
          "statement with -- schemagate:no-transaction"));
      ok = false;
    } else if (script.transactional() && !statement.needs_no_transaction.empty()) {
      errors->push_back(absl::StrCat(
          path, ":", statement.line, ": ", statement.needs_no_transaction,
          " cannot run inside a transaction; add '-- schemagate:no-transaction' as the "
          "first line of the file (and keep that migration to such statements)"));
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  script.statements = JoinBlocks(*std::move(statements), source.blocks);
  return script;
}

constexpr absl::string_view kDirectiveNames[] = {"no-transaction", "breaking", "lock-timeout",
                                                 "statement-timeout", "lint-ignore"};
constexpr char kKnownDirectives[] =
    "no-transaction, breaking, lock-timeout=DURATION, statement-timeout=DURATION, "
    "lint-ignore=RULE[,RULE] reason: WHY";
constexpr char kLintIgnoreExample[] =
    "-- schemagate:lint-ignore=rename-column-not-breaking reason: applied before schemagate";

// The candidate `word` was most likely meant to be: the same but for case,
// one it begins (or that begins with it), or one at most two edits away;
// "" if none is close.
template <size_t N>
std::string Closest(absl::string_view word, const absl::string_view (&candidates)[N]) {
  const std::string lower = absl::AsciiStrToLower(word);
  if (lower.empty()) return "";
  std::string best;
  size_t best_distance = 3;
  for (absl::string_view candidate : candidates) {
    if (candidate == lower) return std::string(candidate);
    if (absl::StartsWith(candidate, lower) || absl::StartsWith(lower, candidate)) {
      return std::string(candidate);
    }
    if (const size_t d = EditDistance(lower, candidate); d < best_distance) {
      best_distance = d;
      best = std::string(candidate);
    }
  }
  return best;
}

// A comment line that means to be a directive but is not written as one:
// another comment form (`/* schemagate:breaking */`, `--schemagate:...`),
// upper case, or a space after the colon. Returns the directive as it should
// be written, or nullopt for any other line. Text with spaces after the
// colon and before any '=' is prose ("-- schemagate: see the runbook"), not
// a directive.
std::optional<std::string> NearMissDirective(absl::string_view trimmed) {
  absl::string_view body;
  if (absl::StartsWith(trimmed, "/*")) {
    body = trimmed.substr(2);
    body = absl::StripAsciiWhitespace(body);
    absl::ConsumeSuffix(&body, "*/");
  } else if (absl::StartsWith(trimmed, "--")) {
    body = trimmed;
    while (absl::ConsumePrefix(&body, "-")) {
    }
  } else {
    return std::nullopt;
  }
  body = absl::StripAsciiWhitespace(body);
  constexpr absl::string_view kName = "schemagate";
  if (body.size() < kName.size() || absl::AsciiStrToLower(body.substr(0, kName.size())) != kName) {
    return std::nullopt;
  }
  body.remove_prefix(kName.size());
  body = absl::StripLeadingAsciiWhitespace(body);
  if (!absl::ConsumePrefix(&body, ":")) return std::nullopt;
  const size_t equals = body.find('=');
  const std::string key =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(body.substr(0, equals)));
  if (key.empty() || std::any_of(key.begin(), key.end(), absl::ascii_isspace)) return std::nullopt;
  std::string meant = absl::StrCat(kDirectivePrefix, key);
  if (equals != absl::string_view::npos) {
    absl::StrAppend(&meant, "=", absl::StripAsciiWhitespace(body.substr(equals + 1)));
  }
  return meant;
}

// `-- schemagate:lint-ignore=RULE[,RULE] reason: WHY` (the part after '=' is
// `value`): adds the rules to `directives`, or reports what is wrong.
template <typename ErrorFn>
void ParseLintIgnore(bool has_value, absl::string_view value, int line_number,
                     std::map<std::string, int>* ignore_lines, Directives* directives,
                     const ErrorFn& error) {
  const size_t at = value.find("reason:");
  const absl::string_view rules =
      absl::StripAsciiWhitespace(at == absl::string_view::npos ? value : value.substr(0, at));
  const absl::string_view reason = at == absl::string_view::npos
                                       ? absl::string_view()
                                       : absl::StripAsciiWhitespace(value.substr(at + 7));
  if (!has_value || rules.empty()) {
    error(absl::StrCat("directive 'lint-ignore' names no lint rule; write e.g. '",
                       kLintIgnoreExample, "' (the rule ids are the bracketed names "
                       "schemagatectl lint prints)"));
    return;
  }
  if (reason.empty()) {
    error(absl::StrCat("directive 'lint-ignore' needs a reason (why these findings are safe "
                       "to apply, e.g. the migration predates schemagate); write e.g. '",
                       kLintIgnoreExample, "'"));
    return;
  }
  std::vector<std::string> known;
  for (absl::string_view rule : kLintRules) known.emplace_back(rule);
  for (absl::string_view part : absl::StrSplit(rules, ',')) {
    const std::string rule(absl::StripAsciiWhitespace(part));
    if (!IsLintRule(rule)) {
      const std::string closest = Closest(rule, kLintRules);
      error(absl::StrCat("directive 'lint-ignore': unknown lint rule '", rule, "'",
                         closest.empty() ? "" : absl::StrCat(" (did you mean '", closest, "'?)"),
                         "; known: ", absl::StrJoin(known, ", ")));
      continue;
    }
    if (auto [it, added] = ignore_lines->emplace(rule, line_number); !added) {
      error(absl::StrCat("directive 'lint-ignore': rule '", rule, "' is already ignored on line ",
                         it->second, "; name each rule once"));
      continue;
    }
    directives->lint_ignore[rule] = std::string(reason);
  }
}

absl::StatusOr<absl::Duration> ParseDirectiveDuration(absl::string_view value) {
  absl::Duration d;
  if (!absl::ParseDuration(value, &d) || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", value, "' is not a duration; write it like 500ms, 5s, 10m or 1h30m"));
  }
  return d;
}

}  // namespace

std::string Migration::Label() const { return absl::StrCat(version, "_", name); }

std::string MigrationChecksum(absl::string_view content) {
  const std::string folded = FoldCrlf(content);
  return Sha256Hex(folded);
}

absl::StatusOr<int64_t> ParseVersion(absl::string_view digits) {
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(),
                                     [](char c) { return c >= '0' && c <= '9'; })) {
    return absl::InvalidArgumentError(absl::StrCat("'", digits, "' is not a version (digits only)"));
  }
  int64_t version = 0;
  if (!absl::SimpleAtoi(digits, &version)) {
    return absl::InvalidArgumentError(
        absl::StrCat("version ", digits, " does not fit a 64-bit integer"));
  }
  if (version <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("version ", digits, " must be positive"));
  }
  return version;
}

bool ParseMigrationFileName(absl::string_view file_name, std::string* version_digits,
                            std::string* name, bool* is_up) {
  absl::string_view rest = file_name;
  if (absl::ConsumeSuffix(&rest, ".up.sql")) {
    *is_up = true;
  } else if (absl::ConsumeSuffix(&rest, ".down.sql")) {
    *is_up = false;
  } else {
    return false;
  }
  size_t underscore = rest.find('_');
  if (underscore == absl::string_view::npos || underscore == 0 ||
      underscore + 1 >= rest.size()) {
    return false;
  }
  absl::string_view digits = rest.substr(0, underscore);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  *version_digits = std::string(digits);
  *name = std::string(rest.substr(underscore + 1));
  return true;
}

absl::StatusOr<Directives> ParseDirectives(absl::string_view path, absl::string_view content) {
  Directives directives;
  std::vector<std::string> errors;
  // Where each ignored rule was named, for a rule named twice.
  std::map<std::string, int> ignore_lines;
  bool in_header = true;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    ++line_number;
    absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    auto error = [&](absl::string_view what) {
      errors.push_back(absl::StrCat(path, ":", line_number, ": ", what));
    };
    // "-- schemagate: breaking" (a space after the colon) is a near miss.
    const bool is_directive = absl::StartsWith(trimmed, kDirectivePrefix) &&
                              (trimmed.size() == kDirectivePrefix.size() ||
                               !absl::ascii_isspace(trimmed[kDirectivePrefix.size()]));
    if (!is_directive) {
      if (std::optional<std::string> meant = NearMissDirective(trimmed)) {
        // Read as a plain comment it would silently do nothing: a
        // "breaking" that is not would let schemagate apply a contract
        // change while old instances still run.
        error(absl::StrCat(
            "'", trimmed, "' is not a directive as written, so schemagate would read it as a "
            "plain comment; directives are spelled exactly '-- schemagate:NAME' (a line "
            "comment, lower case, no space after the colon): write '", *meant, "'",
            in_header ? "" : " among the leading comment lines of the file"));
        continue;
      }
      if (!trimmed.empty() && !absl::StartsWith(trimmed, "--")) in_header = false;
      continue;
    }
    if (!in_header) {
      error(absl::StrCat("directive '", trimmed,
                         "' after SQL has no effect; move it to the leading comment lines of "
                         "the file"));
      continue;
    }
    absl::string_view body = trimmed.substr(kDirectivePrefix.size());
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(body, absl::MaxSplits('=', 1));
    absl::string_view key = absl::StripAsciiWhitespace(kv.first);
    absl::string_view value = absl::StripAsciiWhitespace(kv.second);
    const bool has_value = body.find('=') != absl::string_view::npos;
    // "-- schemagate:breaking because ..." names a directive, then text it
    // does not take.
    bool extra_text = false;
    if (const size_t space = std::find_if(key.begin(), key.end(), absl::ascii_isspace) - key.begin();
        space < key.size() && !has_value) {
      key = key.substr(0, space);
      extra_text = true;
    }
    if (key == "no-transaction" || key == "breaking") {
      if (has_value || extra_text) {
        error(absl::StrCat("directive '", key, "' takes no value; write '-- schemagate:", key,
                           "'"));
        continue;
      }
      (key == "breaking" ? directives.breaking : directives.no_transaction) = true;
    } else if (key == "lock-timeout" || key == "statement-timeout") {
      absl::StatusOr<absl::Duration> d = ParseDirectiveDuration(value);
      if (!has_value || !d.ok()) {
        error(absl::StrCat("directive '", key, "': ",
                           has_value ? d.status().message() : "needs a value",
                           " (e.g. -- schemagate:", key, "=5s)"));
        continue;
      }
      (key == "lock-timeout" ? directives.lock_timeout : directives.statement_timeout) = *d;
    } else if (key == "lint-ignore") {
      ParseLintIgnore(has_value, value, line_number, &ignore_lines, &directives, error);
    } else {
      const std::string closest = Closest(key, kDirectiveNames);
      error(absl::StrCat("unknown directive '", key, "'",
                         closest.empty() ? "" : absl::StrCat(" (did you mean '", closest, "'?)"),
                         "; known: ", kKnownDirectives));
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return directives;
}

const Migration* MigrationSet::Find(int64_t version) const {
  auto it = std::lower_bound(
      migrations_.begin(), migrations_.end(), version,
      [](const Migration& m, int64_t v) { return m.version < v; });
  if (it == migrations_.end() || it->version != version) return nullptr;
  return &*it;
}

const Repeatable* MigrationSet::FindRepeatable(absl::string_view name) const {
  for (const Repeatable& repeatable : repeatables_) {
    if (repeatable.name == name) return &repeatable;
  }
  return nullptr;
}

int64_t MigrationSet::Head() const {
  return migrations_.empty() ? 0 : migrations_.back().version;
}

int64_t MigrationSet::HighestNonBreaking() const {
  for (auto it = migrations_.rbegin(); it != migrations_.rend(); ++it) {
    if (!it->breaking()) return it->version;
  }
  return 0;
}

absl::StatusOr<MigrationSet> MigrationSet::LoadDirectoryWith(const std::string& dir,
                                                             const SqlSplitter& split,
                                                             std::vector<std::string>* warnings,
                                                             SetFormat format) {
  DIR* handle = opendir(dir.c_str());
  if (handle == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": cannot open the migrations directory: ", std::strerror(errno),
        " (pass --migrations-dir DIR)"));
  }
  closedir(handle);
  std::vector<std::string> names;
  ForEachSetFile(dir, [&names](const std::string& name, const struct stat&) {
    names.push_back(name);
  });
  std::sort(names.begin(), names.end());
  return Load(
      dir, names, [&dir](const std::string& name) { return ReadFile(absl::StrCat(dir, "/", name)); },
      split, warnings, format);
}

absl::StatusOr<std::string> DirectoryFingerprint(const std::string& dir) {
  DIR* handle = opendir(dir.c_str());
  if (handle == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": cannot open the migrations directory: ", std::strerror(errno)));
  }
  closedir(handle);
  std::vector<std::string> entries;
  ForEachSetFile(dir, [&entries](const std::string& name, const struct stat& st) {
    entries.push_back(absl::StrCat(name, "\t", st.st_size, "\t", st.st_mtim.tv_sec, ".",
                                   st.st_mtim.tv_nsec, "\t", st.st_ino));
  });
  std::sort(entries.begin(), entries.end());
  return absl::StrJoin(entries, "\n");
}

absl::StatusOr<MigrationSet> MigrationSet::LoadFilesWith(
    const std::string& dir, const std::map<std::string, std::string>& files,
    const SqlSplitter& split, std::vector<std::string>* warnings, SetFormat format) {
  std::vector<std::string> names;
  names.reserve(files.size());
  for (const auto& [name, content] : files) names.push_back(name);  // Sorted: a std::map.
  return Load(
      dir, names,
      [&files](const std::string& name) -> absl::StatusOr<std::string> { return files.at(name); },
      split, warnings, format);
}

absl::StatusOr<MigrationSet> MigrationSet::Load(const std::string& dir,
                                                const std::vector<std::string>& names,
                                                const SetFileReader& read,
                                                const SqlSplitter& split,
                                                std::vector<std::string>* warnings,
                                                SetFormat format) {
  std::vector<std::string> errors;
  std::vector<std::string> versioned, in_folder;
  for (const std::string& name : names) {
    (absl::StartsWith(name, kRepeatableDir) ? in_folder : versioned).push_back(name);
  }
  const SetFiles files{dir, versioned, read, &errors, warnings};
  MigrationSet set;
  set.directory_ = dir;
  if (format == SetFormat::kAuto) {
    absl::StatusOr<SetFormat> detected = DetectSetFormat(files);
    if (!detected.ok()) {
      errors.push_back(std::string(detected.status().message()));
    } else {
      format = *detected;
    }
  }
  set.format_ = format;
  std::vector<MigrationSource> sources;
  switch (format) {
    case SetFormat::kAuto:
      break;  // Not detected: the error says why.
    case SetFormat::kGolangMigrate:
      sources = ReadGolangMigrateSet(files);
      break;
    case SetFormat::kGoose:
      sources = ReadGooseSet(files);
      break;
    case SetFormat::kDbmate:
      sources = ReadDbmateSet(files);
      break;
    case SetFormat::kFlyway:
      sources = ReadFlywaySet(files);
      break;
  }
  for (MigrationSource& source : sources) {
    Migration migration;
    migration.version = source.version;
    migration.name = source.name;
    std::optional<MigrationScript> up =
        LoadScript(dir, source.up, &migration.checksum, split, &errors);
    std::optional<MigrationScript> down;
    if (source.down) down = LoadScript(dir, *source.down, nullptr, split, &errors);
    if (!up || (source.down && !down)) continue;
    migration.up = std::move(*up);
    migration.down = std::move(down);
    set.migrations_.push_back(std::move(migration));
  }
  if (format != SetFormat::kAuto) {
    for (RepeatableSource& source : ReadRepeatables(files, in_folder, format)) {
      Repeatable repeatable;
      repeatable.name = source.name;
      std::optional<MigrationScript> script =
          LoadScript(dir, source.script, &repeatable.checksum, split, &errors);
      if (!script) continue;
      if (!script->transactional()) {
        errors.push_back(absl::StrCat(
            script->path, ":1: a repeatable migration runs in one transaction with its "
            "bookkeeping row, so that it is re-applied whole or not at all; remove the "
            "no-transaction marker (a statement that needs no transaction belongs in a "
            "versioned migration)"));
        continue;
      }
      repeatable.script = *std::move(script);
      set.repeatables_.push_back(std::move(repeatable));
    }
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "migration set ", dir, " has ", errors.size(), " problem", errors.size() == 1 ? "" : "s",
        ":\n", absl::StrJoin(errors, "\n")));
  }
  return set;
}

}  // namespace schemagate
