// Fuzzes what reads one migration file's text: the directive parser, the SQL
// splitter (libpg_query) and the linter, plus the file name and version
// parsers on the input's first line. The input is the file's content.
//
// Beyond "no crash, no sanitizer finding" it checks that every statement the
// splitter returns parses again on its own as exactly one statement of the
// same kind: a no-transaction migration sends each statement's text to
// PostgreSQL by itself, so a split that cuts a statement wrongly would run
// something other than what the file says.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "coordinator/sql/lint.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/sql/sql_split.h"
#include "tests/fuzz/fuzz_check.h"

namespace schemagate {
namespace {

constexpr absl::string_view kPath = "fuzz/1_fuzz.up.sql";

void CheckFileName(absl::string_view line) {
  std::string digits, name;
  bool is_up = false;
  if (!ParseMigrationFileName(line, &digits, &name, &is_up)) return;
  FUZZ_CHECK(!digits.empty() && !name.empty());
  absl::StatusOr<int64_t> version = ParseVersion(digits);
  if (!version.ok()) return;
  FUZZ_CHECK(*version > 0);
  // The digits are the version, leading zeros allowed.
  absl::string_view significant = digits;
  while (significant.size() > 1 && significant.front() == '0') significant.remove_prefix(1);
  FUZZ_CHECK(absl::StrCat(*version) == significant);
}

void CheckStatements(absl::string_view text, const std::vector<SqlStatement>& statements) {
  const int last_line = LineOfOffset(text, text.size());
  int previous_line = 0;
  for (const SqlStatement& statement : statements) {
    FUZZ_CHECK(statement.line >= 1 && statement.line <= last_line);
    FUZZ_CHECK(statement.line >= previous_line);
    previous_line = statement.line;
    absl::StatusOr<std::vector<SqlStatement>> alone = SplitSql(statement.text);
    FUZZ_CHECK(alone.ok());
    FUZZ_CHECK(alone->size() == 1);
    FUZZ_CHECK((*alone)[0].text == statement.text);
    FUZZ_CHECK((*alone)[0].needs_no_transaction == statement.needs_no_transaction);
    FUZZ_CHECK((*alone)[0].is_transaction_control == statement.is_transaction_control);
  }
}

void FuzzSqlText(absl::string_view text) {
  CheckFileName(text.substr(0, text.find('\n')));
  absl::StatusOr<int64_t> version = ParseVersion(text);
  if (version.ok()) FUZZ_CHECK(*version > 0);

  const std::string checksum = MigrationChecksum(text);
  FUZZ_CHECK(checksum.size() == 64);
  if (text.find('\r') == absl::string_view::npos) {
    // CRLF line ends do not change the checksum.
    std::string crlf;
    for (char c : text) {
      if (c == '\n') crlf += '\r';
      crlf += c;
    }
    FUZZ_CHECK(MigrationChecksum(crlf) == checksum);
  }

  absl::StatusOr<Directives> directives = ParseDirectives(kPath, text);
  if (!directives.ok()) {
    FUZZ_CHECK(directives.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(absl::StartsWith(directives.status().message(), kPath));
  }

  absl::StatusOr<std::vector<SqlStatement>> statements = SplitSql(text);
  if (!statements.ok()) {
    FUZZ_CHECK(statements.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(absl::StartsWith(statements.status().message(), "line "));
    return;
  }
  CheckStatements(text, *statements);

  Migration migration;
  migration.version = 1;
  migration.name = "fuzz";
  migration.checksum = checksum;
  migration.up.path = std::string(kPath);
  if (directives.ok()) migration.up.directives = *directives;
  migration.up.statements = std::move(*statements);
  for (const LintFinding& finding : LintMigration(migration.up, LintOptions())) {
    FUZZ_CHECK(finding.path == kPath);
    FUZZ_CHECK(finding.line >= 1);
    FUZZ_CHECK(!finding.rule.empty() && !finding.message.empty());
    FUZZ_CHECK(!FormatFinding(finding).empty());
  }
}

}  // namespace
}  // namespace schemagate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  schemagate::FuzzSqlText(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
