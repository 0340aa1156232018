// goose's SQL migrations: NNN_name.sql, one file with `-- +goose Up` and an
// optional `-- +goose Down` section. Annotations are read as goose 3 reads
// them: a line starting with `--`, `+goose` and the annotation in any case;
// an unknown or indented annotation is refused rather than read as a
// comment. Go migrations (NNN_name.go) are refused naming the file.
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

enum class Annotation { kUp, kDown, kBegin, kEnd, kNoTransaction, kEnvsubOn, kEnvsubOff };

constexpr char kKnownAnnotations[] =
    "Up, Down, StatementBegin, StatementEnd, NO TRANSACTION (ENVSUB is not supported)";

// The annotation on `line` (CR already dropped); nullopt for any other line.
// Sets `error` for a `+goose` line that is not one goose knows.
std::optional<Annotation> ParseAnnotation(absl::string_view line, std::string* error) {
  absl::string_view body = absl::StripLeadingAsciiWhitespace(line);
  const bool indented = body.size() != line.size();
  if (!absl::ConsumePrefix(&body, "--")) return std::nullopt;
  body = absl::StripAsciiWhitespace(body);
  if (!absl::StartsWithIgnoreCase(body, "+goose")) return std::nullopt;
  const std::string word = absl::AsciiStrToLower(absl::StripAsciiWhitespace(body.substr(6)));
  if (indented) {
    *error = absl::StrCat("'", absl::StripAsciiWhitespace(line),
                          "' is indented: goose reads an annotation only at the start of the "
                          "line; remove the leading blanks");
    return std::nullopt;
  }
  if (word == "up") return Annotation::kUp;
  if (word == "down") return Annotation::kDown;
  if (word == "statementbegin") return Annotation::kBegin;
  if (word == "statementend") return Annotation::kEnd;
  if (word == "no transaction") return Annotation::kNoTransaction;
  if (word == "envsub on") return Annotation::kEnvsubOn;
  if (word == "envsub off") return Annotation::kEnvsubOff;
  *error = absl::StrCat("unknown goose annotation '", absl::StripAsciiWhitespace(line),
                        "'; goose knows ", kKnownAnnotations);
  return std::nullopt;
}

// Splits one goose file into its sources; problems go to files.errors.
std::optional<MigrationSource> ReadGooseFile(const SetFiles& files, const std::string& file,
                                             const std::string& content) {
  const std::string path = files.Path(file);
  bool ok = true;
  auto error = [&](int line, absl::string_view what) {
    files.errors->push_back(absl::StrCat(path, ":", line, ": ", what));
    ok = false;
  };
  int up_line = 0, down_line = 0, begin_line = 0, line_number = 0;
  bool no_transaction = false, sql_before_up = false;
  std::vector<std::pair<int, int>> up_blocks, down_blocks;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    ++line_number;
    absl::ConsumeSuffix(&line, "\r");
    std::string problem;
    std::optional<Annotation> annotation = ParseAnnotation(line, &problem);
    if (!problem.empty()) {
      error(line_number, problem);
      continue;
    }
    if (!annotation) {
      const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
      if (up_line == 0 && !sql_before_up && !trimmed.empty() && !absl::StartsWith(trimmed, "--")) {
        error(line_number,
              "SQL before '-- +goose Up'; goose refuses it: move it below the "
              "annotation");
        sql_before_up = true;  // Said once.
      }
      continue;
    }
    switch (*annotation) {
      case Annotation::kUp:
        if (up_line != 0) {
          error(line_number, "a second '-- +goose Up'; a goose file has one Up section");
        } else {
          up_line = line_number;
        }
        break;
      case Annotation::kDown:
        if (up_line == 0) {
          error(line_number,
                "'-- +goose Down' before '-- +goose Up'; the Up section comes "
                "first");
        } else if (down_line != 0) {
          error(line_number, "a second '-- +goose Down'; a goose file has one Down section");
        } else if (begin_line != 0) {
          error(begin_line,
                "'-- +goose StatementBegin' has no StatementEnd before "
                "'-- +goose Down'; add it");
          begin_line = 0;
        }
        if (down_line == 0) down_line = line_number;
        break;
      case Annotation::kBegin:
        if (up_line == 0) {
          error(line_number, "'-- +goose StatementBegin' before '-- +goose Up'");
        } else if (begin_line != 0) {
          error(line_number, absl::StrCat("'-- +goose StatementBegin' inside the block opened on "
                                          "line ",
                                          begin_line, "; close it first"));
        } else {
          begin_line = line_number;
        }
        break;
      case Annotation::kEnd:
        if (begin_line == 0) {
          error(line_number, "'-- +goose StatementEnd' without a StatementBegin");
        } else {
          (down_line != 0 ? down_blocks : up_blocks).emplace_back(begin_line, line_number);
          begin_line = 0;
        }
        break;
      case Annotation::kNoTransaction:
        no_transaction = true;
        break;
      case Annotation::kEnvsubOn:
        error(line_number,
              "'-- +goose ENVSUB ON' is not supported: schemagate runs the file "
              "as written; put the values in the SQL");
        break;
      case Annotation::kEnvsubOff:
        break;
    }
  }
  if (begin_line != 0) {
    error(begin_line, "'-- +goose StatementBegin' has no '-- +goose StatementEnd'; add it");
  }
  if (up_line == 0) {
    error(1,
          "no '-- +goose Up' annotation; a goose migration starts with the line "
          "'-- +goose Up'");
  }
  if (!ok) return std::nullopt;
  MigrationSource source = SplitAtDownLine(file, content, down_line);
  source.up.no_transaction = no_transaction;
  source.up.blocks = std::move(up_blocks);
  if (source.down) {
    source.down->no_transaction = no_transaction;
    source.down->blocks = std::move(down_blocks);
  }
  return source;
}

}  // namespace

std::vector<MigrationSource> ReadGooseSet(const SetFiles& files) {
  std::vector<std::string> sql_names;
  for (const std::string& file : files.names) {
    std::string digits, name;
    if (ParseNumberedFileName(file, ".go", &digits, &name)) {
      files.errors->push_back(
          absl::StrCat(files.Path(file),
                       ":1: goose Go migrations are not supported; port it to SQL (a "
                       "VERSION_name.sql file with '-- +goose Up')"));
    } else {
      sql_names.push_back(file);
    }
  }
  const SetFiles sql_files{files.dir, sql_names, files.read, files.errors, files.warnings};
  return ReadSingleFileSet(sql_files, "goose",
                           [&files](const std::string& file, const std::string& content) {
                             return ReadGooseFile(files, file, content);
                           });
}

}  // namespace schemagate
