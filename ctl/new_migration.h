// `schemagatectl new`: writes an empty up/down pair named with a UTC
// timestamp version, in the file format of DESIGN.md.
#ifndef SCHEMAGATE_CTL_NEW_MIGRATION_H_
#define SCHEMAGATE_CTL_NEW_MIGRATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace schemagate {

struct NewMigrationOptions {
  std::string directory = "migrations";
  // Free text; reduced to [a-z0-9_].
  std::string name;
  bool no_transaction = false;
  bool breaking = false;
  absl::Time now = absl::Now();
};

struct NewMigrationFiles {
  std::string up_path;
  std::string down_path;
  int64_t version = 0;
  // Set when the new version is not above the directory's head.
  std::string warning;
  // The directory did not exist and was created.
  bool created_directory = false;
};

// Writes a file that must not exist yet (O_EXCL), synced; ALREADY_EXISTS if it
// does.
absl::Status WriteNewFile(const std::string& path, const std::string& content);

// Lower-case, every run of other characters folded to '_', trimmed.
std::string SanitizeMigrationName(const std::string& name);

// Creates both files (never overwrites), and the directory (with its
// parents) if it does not exist. The version is the UTC timestamp of
// `options.now`; when the directory already has that version (two `new` in
// one second) the next free second. INVALID_ARGUMENT for an empty name, a
// path that is not a directory, or one that cannot be created;
// ALREADY_EXISTS if a file of that name appeared meanwhile.
absl::StatusOr<NewMigrationFiles> CreateMigrationFiles(const NewMigrationOptions& options);

}  // namespace schemagate

#endif  // SCHEMAGATE_CTL_NEW_MIGRATION_H_
