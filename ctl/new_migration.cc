#include "ctl/new_migration.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "coordinator/engine/migration_set.h"

namespace schemagate {
namespace {

// The versions of every migration file in `directory` (by file name only:
// a set that does not load still has its versions taken).
absl::StatusOr<std::set<int64_t>> VersionsIn(const std::string& directory) {
  std::set<int64_t> versions;
  std::error_code error;
  for (std::filesystem::directory_iterator it(directory, error), end; !error && it != end;
       it.increment(error)) {
    std::string digits, name;
    bool is_up = false;
    if (!ParseMigrationFileName(it->path().filename().string(), &digits, &name, &is_up)) {
      continue;
    }
    absl::StatusOr<int64_t> version = ParseVersion(digits);
    if (version.ok()) versions.insert(*version);
  }
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot list ", directory, ": ", error.message()));
  }
  return versions;
}

}  // namespace

absl::Status WriteNewFile(const std::string& path, const std::string& content) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(path, " already exists"));
    }
    return absl::InvalidArgumentError(absl::StrCat("cannot create ", path, ": ",
                                                   std::strerror(errno)));
  }
  const ssize_t written = write(fd, content.data(), content.size());
  const bool ok = written == static_cast<ssize_t>(content.size()) && fsync(fd) == 0;
  close(fd);
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::string SanitizeMigrationName(const std::string& name) {
  std::string out;
  for (char c : name) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      out += c;
    } else if (c >= 'A' && c <= 'Z') {
      out += static_cast<char>(c - 'A' + 'a');
    } else if (!out.empty() && out.back() != '_') {
      out += '_';
    }
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out;
}

absl::StatusOr<NewMigrationFiles> CreateMigrationFiles(const NewMigrationOptions& options) {
  const std::string name = SanitizeMigrationName(options.name);
  if (name.empty()) {
    return absl::InvalidArgumentError(
        "give the migration a name made of letters or digits, e.g. 'add_users_email_index'");
  }
  NewMigrationFiles files;
  struct stat st;
  if (stat(options.directory.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read ", options.directory, ": ", std::strerror(errno)));
    }
    std::error_code error;
    std::filesystem::create_directories(options.directory, error);
    if (error) {
      return absl::InvalidArgumentError(absl::StrCat("cannot create the directory ",
                                                     options.directory, ": ", error.message()));
    }
    files.created_directory = true;
  } else if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.directory, " is not a directory; pass --migrations-dir"));
  }
  // `new` writes golang-migrate's pair: in a goose, dbmate or Flyway set
  // that would make a directory of two formats, which no loader accepts.
  std::vector<std::string> ignored;
  if (absl::StatusOr<MigrationSet> set =
          MigrationSet::LoadDirectoryWith(options.directory, /*split=*/nullptr, &ignored);
      set.ok() && set->format() != SetFormat::kGolangMigrate) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.directory, " holds a ", SetFormatName(set->format()),
        " set and new writes golang-migrate's VERSION_name.up.sql/.down.sql: write the "
        "migration in ", SetFormatName(set->format()), "'s own layout (docs/formats.md)"));
  }
  absl::StatusOr<std::set<int64_t>> taken = VersionsIn(options.directory);
  if (!taken.ok()) return taken.status();
  // Two `new` in one second: the next free second, so the version stays a
  // timestamp and the files sort in the order they were made.
  absl::Time at = options.now;
  std::string stamp;
  do {
    stamp = absl::FormatTime("%Y%m%d%H%M%S", at, absl::UTCTimeZone());
    (void)absl::SimpleAtoi(stamp, &files.version);
    at += absl::Seconds(1);
  } while (taken->count(files.version) > 0);
  if (!taken->empty() && *taken->rbegin() > files.version) {
    files.warning = absl::StrCat("the directory's head ", *taken->rbegin(),
                                 " is above the new version ", stamp,
                                 ": the new migration sorts before it (check clocks)");
  }
  files.up_path = absl::StrCat(options.directory, "/", stamp, "_", name, ".up.sql");
  files.down_path = absl::StrCat(options.directory, "/", stamp, "_", name, ".down.sql");
  std::string header;
  if (options.no_transaction) header += "-- schemagate:no-transaction\n";
  if (options.breaking) header += "-- schemagate:breaking\n";
  const std::string up = absl::StrCat(
      header, "-- ", name, ": write the change here. Each migration runs in its own transaction",
      options.no_transaction ? " (not this one: statement by statement)" : "",
      ".\n-- Directives: -- schemagate:lock-timeout=5s, -- schemagate:statement-timeout=10m\n");
  const std::string down = absl::StrCat(options.no_transaction ? "-- schemagate:no-transaction\n" : "",
                                        "-- Undo ", name, " here.\n");
  if (absl::Status s = WriteNewFile(files.up_path, up); !s.ok()) return s;
  if (absl::Status s = WriteNewFile(files.down_path, down); !s.ok()) {
    unlink(files.up_path.c_str());
    return s;
  }
  return files;
}

}  // namespace schemagate
