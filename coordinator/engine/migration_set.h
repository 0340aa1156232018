// A migration set: the up/down SQL files of one directory, parsed, checked
// and checksummed. Knows nothing of PostgreSQL connections.
//
// File layout: golang-migrate's {VERSION}_{name}.up.sql and an optional
// {VERSION}_{name}.down.sql, or goose's, dbmate's or Flyway's
// (set_format.h, docs/formats.md); repeatables in repeatable/{name}.sql
// (Flyway: R__{name}.sql). Directives are leading comment lines:
//   -- schemagate:no-transaction
//   -- schemagate:breaking
//   -- schemagate:lock-timeout=5s
//   -- schemagate:statement-timeout=10m
//   -- schemagate:lint-ignore=RULE[,RULE] reason: WHY
// Comment lines that look like a directive but are spelled otherwise
// (`/* schemagate:breaking */`, `-- SCHEMAGATE:BREAKING`, `--schemagate:...`,
// `-- schemagate: breaking`) are refused with the right spelling.
//
// A MigrationSet is immutable once loaded and safe to share between threads.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_MIGRATION_SET_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_MIGRATION_SET_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "coordinator/engine/set_format.h"
#include "coordinator/sql/script.h"

namespace schemagate {

struct Migration {
  int64_t version = 0;
  std::string name;
  // Lower-case hex SHA-256 of the up file (of a single-file format: the
  // file up to its down section) with CRLF folded to LF.
  std::string checksum;
  MigrationScript up;
  std::optional<MigrationScript> down;

  bool transactional() const { return up.transactional(); }
  bool breaking() const { return up.directives.breaking; }
  // The up file, or the down file (nullptr when there is none).
  const MigrationScript* script(bool up_file) const {
    return up_file ? &up : down ? &*down : nullptr;
  }
  // "0003_add_index" style label for messages.
  std::string Label() const;
};

// A repeatable migration (Flyway's R__<name>.sql, repeatable/<name>.sql in
// the other formats): applied after the versioned migrations, again
// whenever its checksum changes, always in one transaction.
struct Repeatable {
  std::string name;
  // As a Migration's: SHA-256 of the file with CRLF folded to LF.
  std::string checksum;
  MigrationScript script;

  // "repeatable views" for messages.
  std::string Label() const { return "repeatable " + name; }
};

// Splits a file's SQL into statements (SplitSql, coordinator/sql/sql_split.h).
using SqlSplitter = absl::StatusOr<std::vector<SqlStatement>> (*)(absl::string_view sql);

class MigrationSet {
 public:
  MigrationSet() = default;

  // Loads every migration in `dir`, written in `format` (kAuto: the one its
  // files are in; a directory mixing formats is refused). Fails with
  // INVALID_ARGUMENT listing every problem as "path:line: what is wrong
  // (hint)". Files that are not migrations of the format are skipped; a line
  // for each is appended to `warnings`.
  static absl::StatusOr<MigrationSet> LoadDirectory(const std::string& dir,
                                                    std::vector<std::string>* warnings,
                                                    SetFormat format = SetFormat::kAuto);

  // Loads a set held in memory, as LoadDirectory loads a directory holding
  // exactly `files` (file name -> content): same checks, same messages, with
  // paths "dir/name". Reads no file; the fuzz targets and tests use it.
  static absl::StatusOr<MigrationSet> LoadFiles(const std::string& dir,
                                                const std::map<std::string, std::string>& files,
                                                std::vector<std::string>* warnings,
                                                SetFormat format = SetFormat::kAuto);

  // The loaders above with the SQL splitter given (LoadDirectory and
  // LoadFiles pass SplitSql). With `split` null every file is read, named,
  // checked (UTF-8, directives) and checksummed, but its SQL is not parsed:
  // `statements` stay empty. The agent loads its app's set this way (it needs
  // versions, breaking flags and checksums) and so links no SQL parser.
  static absl::StatusOr<MigrationSet> LoadDirectoryWith(const std::string& dir,
                                                        const SqlSplitter& split,
                                                        std::vector<std::string>* warnings,
                                                        SetFormat format = SetFormat::kAuto);
  static absl::StatusOr<MigrationSet> LoadFilesWith(
      const std::string& dir, const std::map<std::string, std::string>& files,
      const SqlSplitter& split, std::vector<std::string>* warnings,
      SetFormat format = SetFormat::kAuto);

  // Migrations ordered by version.
  const std::vector<Migration>& migrations() const { return migrations_; }
  // Repeatable migrations ordered by name (the order they are applied in).
  const std::vector<Repeatable>& repeatables() const { return repeatables_; }
  const std::string& directory() const { return directory_; }
  // The format the files were read in (never kAuto).
  SetFormat format() const { return format_; }

  // nullptr if the set has no such version.
  const Migration* Find(int64_t version) const;
  // nullptr if the set has no repeatable of that name.
  const Repeatable* FindRepeatable(absl::string_view name) const;
  // Highest version (0 for an empty set).
  int64_t Head() const;
  // Highest version that is not breaking (0 if none).
  int64_t HighestNonBreaking() const;

 private:
  // The loader behind LoadDirectory and LoadFiles: `names` are the set's
  // regular files, sorted; only those that fit a migration file pattern are read.
  static absl::StatusOr<MigrationSet> Load(const std::string& dir,
                                           const std::vector<std::string>& names,
                                           const SetFileReader& read, const SqlSplitter& split,
                                           std::vector<std::string>* warnings, SetFormat format);

  std::string directory_;
  SetFormat format_ = SetFormat::kGolangMigrate;
  std::vector<Migration> migrations_;
  std::vector<Repeatable> repeatables_;
};

// A cheap fingerprint of the migration files in `dir` (names, sizes and
// modification times; no content read): it changes when a file is added,
// removed or edited, so a coordinator knows when to re-read the set.
absl::StatusOr<std::string> DirectoryFingerprint(const std::string& dir);

// Parses the leading comment lines of `content` (a file at `path`).
// Unknown or malformed directives fail with "path:line: ...".
absl::StatusOr<Directives> ParseDirectives(absl::string_view path,
                                           absl::string_view content);

// Lower-case hex SHA-256 of `content` with every CRLF folded to LF.
std::string MigrationChecksum(absl::string_view content);

// Parses a migration file name. Returns false if it matches neither pattern.
bool ParseMigrationFileName(absl::string_view file_name, std::string* version_digits,
                            std::string* name, bool* is_up);

// Parses a VERSION: digits only, leading zeros allowed, 1..INT64_MAX.
absl::StatusOr<int64_t> ParseVersion(absl::string_view digits);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_MIGRATION_SET_H_
