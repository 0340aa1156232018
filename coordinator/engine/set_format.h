// The file formats a migration set can be written in (docs/formats.md):
// golang-migrate's up/down pairs (schemagate's own), goose's and dbmate's
// single files with up and down sections, Flyway's V/U files. Each format's
// reader turns a directory's files into MigrationSources: which bytes of
// which file are each migration's up and down, and what the format's own
// markers say (no transaction, statement blocks). MigrationSet then checks,
// parses and checksums them the same way whatever the format.
//
// No I/O here but through the FileReader given; thread-safe.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_SET_FORMAT_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_SET_FORMAT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace schemagate {

enum class SetFormat { kAuto, kGolangMigrate, kGoose, kDbmate, kFlyway };

// What --format takes, for help texts.
inline constexpr char kSetFormatChoices[] = "auto|golang-migrate|goose|dbmate|flyway";

// Every name --format takes, for the flag's check.
std::vector<std::string> SetFormatNames();

// "auto", "golang-migrate", "goose", "dbmate" or "flyway"; INVALID_ARGUMENT
// for anything else.
absl::StatusOr<SetFormat> ParseSetFormat(absl::string_view text);
const char* SetFormatName(SetFormat format);

// One direction of one migration, as its format lays it out.
struct ScriptSource {
  // File name within the set's directory.
  std::string file;
  // The bytes schemagate runs; an up's are its checksum's.
  std::string content;
  // Where `content` starts in the file: line (1-based) and byte offset.
  int first_line = 1;
  size_t first_byte = 0;
  // The format's own marker asks for no transaction (goose NO TRANSACTION,
  // dbmate transaction:false, morph:nontransactional, Flyway's .conf).
  bool no_transaction = false;
  // Flyway: run outside a transaction when a statement cannot run inside one.
  bool no_transaction_if_needed = false;
  // goose StatementBegin/StatementEnd lines: the statements between each
  // pair are run as one.
  std::vector<std::pair<int, int>> blocks;
};

struct MigrationSource {
  int64_t version = 0;
  std::string name;
  ScriptSource up;
  std::optional<ScriptSource> down;
};

// Reads the file `name` of the set (the content, or why it cannot be read).
using SetFileReader = std::function<absl::StatusOr<std::string>(const std::string& name)>;

// What every reader is given: the set's directory, its regular files
// (sorted names), how to read one, and where to put problems ("path:line:
// what is wrong (hint)") and warnings (files ignored).
struct SetFiles {
  const std::string& dir;
  const std::vector<std::string>& names;
  const SetFileReader& read;
  std::vector<std::string>* errors;
  std::vector<std::string>* warnings;  // may be null

  std::string Path(const std::string& file) const { return dir + "/" + file; }
  void Warn(const std::string& text) const {
    if (warnings != nullptr) warnings->push_back(text);
  }
};

// The format of the files in `files.names`, from their names and (for
// NNN_name.sql) their goose or dbmate markers. golang-migrate for a set with
// no migration file. INVALID_ARGUMENT naming files of each format when they
// are mixed, or when NNN_name.sql files have neither marker.
absl::StatusOr<SetFormat> DetectSetFormat(const SetFiles& files);

// The readers, one per format: sources in version order. Problems go to
// files.errors (the sources returned are then incomplete).
std::vector<MigrationSource> ReadGolangMigrateSet(const SetFiles& files);
std::vector<MigrationSource> ReadGooseSet(const SetFiles& files);
std::vector<MigrationSource> ReadDbmateSet(const SetFiles& files);
std::vector<MigrationSource> ReadFlywaySet(const SetFiles& files);

// A repeatable migration's file: run again whenever its checksum changes.
struct RepeatableSource {
  std::string name;
  ScriptSource script;
};

// The sub-folder holding the repeatables of a golang-migrate, goose or
// dbmate set (names in SetFiles carry it: "repeatable/views.sql").
inline constexpr char kRepeatableDir[] = "repeatable/";

// The set's repeatables in name order: Flyway's R__<name>.sql among
// `files.names`, or, for the other formats, the repeatable/<name>.sql files
// among `in_folder` (names with kRepeatableDir in front). Files of the other
// scheme are refused naming the file; other files of the folder ignored
// with a warning.
std::vector<RepeatableSource> ReadRepeatables(const SetFiles& files,
                                              const std::vector<std::string>& in_folder,
                                              SetFormat format);

// Adds `source` to `by_version`, or reports a duplicate version (the
// single-file formats' check; golang-migrate has its own).
void AddMigrationSource(const SetFiles& files, MigrationSource source,
                        std::map<int64_t, MigrationSource>* by_version);
std::vector<MigrationSource> SourcesInOrder(std::map<int64_t, MigrationSource> by_version);

// Splits one VERSION_name.sql file's content into its up and down (version
// and name are filled in by the caller); nullopt after reporting problems.
using SingleFileReader = std::function<std::optional<MigrationSource>(const std::string& file,
                                                                      const std::string& content)>;

// goose's and dbmate's reader: every VERSION_name.sql of `files` through
// `read_file`; other files ignored with a warning naming `tool`.
std::vector<MigrationSource> ReadSingleFileSet(const SetFiles& files, absl::string_view tool,
                                               const SingleFileReader& read_file);

// Parses NNN_name.EXT (goose, dbmate): false if `file` does not end in
// `ext` or has no digits, '_' and name before it.
bool ParseNumberedFileName(absl::string_view file, absl::string_view ext, std::string* digits,
                           std::string* name);

// The byte offset at which line `line` (1-based) of `content` starts.
size_t OffsetOfLine(absl::string_view content, int line);

// Flyway's version of `V1.2.3__x.sql` ("1.2.3" or "1_2_3"): its numeric
// parts with trailing zeros dropped ("1.0" is "1", as Flyway compares
// them); INVALID_ARGUMENT for a part that is not digits.
absl::StatusOr<std::vector<uint64_t>> ParseFlywayVersion(absl::string_view text);

// The 64-bit version schemagate stores for a Flyway version. When every
// version of the set has one part (`dotted` false) it is that number.
// Otherwise each version is written as six groups of three digits, the
// first part in front: 1.2.3 is 1002003000000000, which orders as Flyway
// orders; INVALID_ARGUMENT (with why) for a version that does not fit.
absl::StatusOr<int64_t> FlywayVersionNumber(const std::vector<uint64_t>& parts, bool dotted);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_SET_FORMAT_H_
