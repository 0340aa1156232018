// Fuzzes the migration set loader (MigrationSet::LoadFiles, the code behind
// LoadDirectory, in every format it detects) and the linter on whatever set
// loads.
//
// Input framing: a line "== NAME" starts the file NAME; the lines after it,
// up to the next such line, are its content. Text before the first such line
// is the file "1_fuzz.up.sql". So a seed is a readable migration set:
//   == 0001_users.up.sql
//   CREATE TABLE users (id bigint);
//   == 0001_users.down.sql
//   DROP TABLE users;
// Names a directory cannot hold (empty, with '/' or NUL, "." and "..") are
// dropped; a repeated name keeps its first content.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "coordinator/sql/lint.h"
#include "coordinator/engine/lint_policy.h"
#include "coordinator/sql/lint_rules.h"
#include "coordinator/engine/migration_set.h"
#include "tests/fuzz/fuzz_check.h"

namespace schemagate {
namespace {

constexpr absl::string_view kDir = "fuzz";
constexpr absl::string_view kFileMarker = "== ";

std::map<std::string, std::string> SplitIntoFiles(absl::string_view input) {
  std::map<std::string, std::string> files;
  std::string name = "1_fuzz.up.sql";
  std::string content;
  bool named = false;  // The current file began with a marker line.
  auto flush = [&] {
    if (!named && content.empty()) return;
    if (name.empty() || name == "." || name == ".." ||
        name.find_first_of(std::string("/\0", 2)) != std::string::npos) {
      return;
    }
    files.emplace(name, content);
  };
  size_t pos = 0;
  while (pos < input.size()) {
    size_t end = input.find('\n', pos);
    const size_t next = end == absl::string_view::npos ? input.size() : end + 1;
    absl::string_view line = input.substr(pos, next - pos);
    if (absl::StartsWith(line, kFileMarker)) {
      flush();
      absl::string_view n = line.substr(kFileMarker.size());
      if (absl::EndsWith(n, "\n")) n.remove_suffix(1);
      if (absl::EndsWith(n, "\r")) n.remove_suffix(1);
      name = std::string(n);
      content.clear();
      named = true;
    } else {
      content.append(line.data(), line.size());
    }
    pos = next;
  }
  flush();
  return files;
}

bool IsLowerHex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

int LineCount(const std::string& content) { return LineOfOffset(content, content.size()); }

void CheckScript(const MigrationScript& script, const std::string& content) {
  int previous_line = 0;
  for (const SqlStatement& statement : script.statements) {
    FUZZ_CHECK(statement.line >= 1 && statement.line <= LineCount(content));
    FUZZ_CHECK(statement.line >= previous_line);
    previous_line = statement.line;
    // The loader refuses both; a loaded script never carries them.
    FUZZ_CHECK(!statement.is_transaction_control);
    FUZZ_CHECK(!script.transactional() || statement.needs_no_transaction.empty());
  }
  if (script.directives.lock_timeout) {
    FUZZ_CHECK(*script.directives.lock_timeout >= absl::ZeroDuration());
  }
  if (script.directives.statement_timeout) {
    FUZZ_CHECK(*script.directives.statement_timeout >= absl::ZeroDuration());
  }
}

void FuzzMigrationSet(absl::string_view input) {
  const std::map<std::string, std::string> files = SplitIntoFiles(input);
  const std::string dir(kDir);
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadFiles(dir, files, &warnings);
  for (const std::string& warning : warnings) FUZZ_CHECK(absl::StartsWith(warning, "fuzz/"));
  if (!set.ok()) {
    FUZZ_CHECK(set.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(absl::StartsWith(set.status().message(), "migration set fuzz has "));
    return;
  }
  FUZZ_CHECK(set->directory() == dir);
  int64_t previous = 0;
  for (const Migration& m : set->migrations()) {
    FUZZ_CHECK(m.version > previous);  // Positive, ordered, no duplicates.
    previous = m.version;
    FUZZ_CHECK(set->Find(m.version) == &m);
    FUZZ_CHECK(IsLowerHex64(m.checksum));
    FUZZ_CHECK(absl::StartsWith(m.up.path, "fuzz/"));
    const auto up = files.find(m.up.path.substr(dir.size() + 1));
    FUZZ_CHECK(up != files.end());
    // Of the whole up file, or (goose, dbmate) of the file up to a line:
    // where its down section starts.
    bool checksummed = m.checksum == MigrationChecksum(up->second);
    const bool single_file = set->format() == SetFormat::kGoose ||
                             set->format() == SetFormat::kDbmate;
    for (size_t at = 0; single_file && !checksummed && at < up->second.size(); ++at) {
      if (at == 0 || up->second[at - 1] == '\n') {
        checksummed = m.checksum == MigrationChecksum(up->second.substr(0, at));
      }
    }
    FUZZ_CHECK(checksummed);
    CheckScript(m.up, up->second);
    if (m.down) {
      const auto down = files.find(m.down->path.substr(dir.size() + 1));
      FUZZ_CHECK(down != files.end());
      CheckScript(*m.down, down->second);
    }
    FUZZ_CHECK(!m.Label().empty());
  }
  FUZZ_CHECK(set->Head() == previous);
  FUZZ_CHECK(set->HighestNonBreaking() <= set->Head());
  if (previous < INT64_MAX) FUZZ_CHECK(set->Find(previous + 1) == nullptr);

  LintPolicy policy;
  policy.lint_from = set->Head() / 2;
  for (const LintFinding& finding : LintSetWithPolicy(*set, policy)) {
    FUZZ_CHECK(finding.line >= 1);
    FUZZ_CHECK(!finding.rule.empty() && !finding.message.empty());
    FUZZ_CHECK(IsLintRule(finding.rule));
    FUZZ_CHECK(!FormatFinding(finding).empty());
    // A waived finding is never refused; an error that is not waived is.
    FUZZ_CHECK(Refuses(finding, policy) ==
               (finding.severity == LintSeverity::kError && finding.waived.empty()));
  }
}

}  // namespace
}  // namespace schemagate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  schemagate::FuzzMigrationSet(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
