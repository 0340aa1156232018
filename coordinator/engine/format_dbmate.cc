// dbmate's migrations: VERSION_name.sql, one file with a `-- migrate:up`
// section and a `-- migrate:down` one (dbmate requires both; the down may be
// empty). Options follow the marker on its line: `transaction:false` runs
// that section outside a transaction. Read as dbmate 2 reads them, except
// that an option dbmate would silently drop (`transaction: false`, a
// misspelling) is refused.
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/format_split.h"
#include "coordinator/engine/set_format.h"

namespace schemagate {
namespace {

// `line` is `-- migrate:WHICH` with options after blanks (dbmate's
// `^--\s*migrate:WHICH(\s*$|\s+\S+)`): sets `options` to the rest.
bool IsMarker(absl::string_view line, absl::string_view which, absl::string_view* options) {
  absl::string_view rest = line;
  if (!absl::ConsumePrefix(&rest, "--")) return false;
  rest = absl::StripLeadingAsciiWhitespace(rest);
  if (!absl::ConsumePrefix(&rest, "migrate:") || !absl::ConsumePrefix(&rest, which)) {
    return false;
  }
  if (!rest.empty() && !absl::ascii_isspace(static_cast<unsigned char>(rest[0]))) return false;
  *options = absl::StripAsciiWhitespace(rest);
  return true;
}

// The options of a marker line: whether it says transaction:false.
bool ParseOptions(absl::string_view options, const std::string& where,
                  std::vector<std::string>* errors) {
  bool no_transaction = false;
  for (absl::string_view option : absl::StrSplit(options, ' ', absl::SkipWhitespace())) {
    option = absl::StripAsciiWhitespace(option);
    if (option == "transaction:false") {
      no_transaction = true;
    } else if (option != "transaction:true") {
      errors->push_back(absl::StrCat(
          where, ": unknown dbmate option '", option,
          "' (dbmate would ignore it); the one option is transaction:false, written without "
          "blanks, e.g. '-- migrate:up transaction:false'"));
    }
  }
  return no_transaction;
}

std::optional<MigrationSource> ReadDbmateFile(const SetFiles& files, const std::string& file,
                                              const std::string& content) {
  const std::string path = files.Path(file);
  const size_t before = files.errors->size();
  int up_line = 0, down_line = 0, sql_line = 0, line_number = 0;
  bool up_no_transaction = false, down_no_transaction = false;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    ++line_number;
    absl::ConsumeSuffix(&line, "\r");
    absl::string_view options;
    const std::string where = absl::StrCat(path, ":", line_number);
    if (up_line == 0 && IsMarker(line, "up", &options)) {
      up_line = line_number;
      up_no_transaction = ParseOptions(options, where, files.errors);
    } else if (down_line == 0 && IsMarker(line, "down", &options)) {
      down_line = line_number;
      down_no_transaction = ParseOptions(options, where, files.errors);
    } else if (up_line == 0 && sql_line == 0) {
      const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
      if (!trimmed.empty() && !absl::StartsWith(trimmed, "--")) sql_line = line_number;
    }
  }
  auto error = [&](int line, absl::string_view what) {
    files.errors->push_back(absl::StrCat(path, ":", line, ": ", what));
  };
  if (up_line == 0) {
    error(1, "no '-- migrate:up' line; dbmate requires each migration to define an up block");
  } else if (sql_line != 0) {
    error(sql_line,
          "SQL before '-- migrate:up'; dbmate does not run statements preceding it: "
          "move them below the marker");
  }
  if (down_line == 0) {
    error(1,
          "no '-- migrate:down' line; dbmate requires each migration to define a down "
          "block (it may be empty)");
  } else if (up_line > down_line) {
    error(down_line, absl::StrCat("'-- migrate:down' comes before '-- migrate:up' (line ", up_line,
                                  "); dbmate requires the up block first"));
  }
  if (files.errors->size() != before) return std::nullopt;
  MigrationSource source = SplitAtDownLine(file, content, down_line);
  source.up.no_transaction = up_no_transaction;
  source.down->no_transaction = down_no_transaction;
  return source;
}

}  // namespace

std::vector<MigrationSource> ReadDbmateSet(const SetFiles& files) {
  return ReadSingleFileSet(files, "dbmate",
                           [&files](const std::string& file, const std::string& content) {
                             return ReadDbmateFile(files, file, content);
                           });
}

}  // namespace schemagate
