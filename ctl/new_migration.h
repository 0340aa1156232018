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
};

// Lower-case, every run of other characters folded to '_', trimmed.
std::string SanitizeMigrationName(const std::string& name);

// Creates both files (never overwrites). INVALID_ARGUMENT for an empty name
// or a missing directory; ALREADY_EXISTS if the version is taken.
absl::StatusOr<NewMigrationFiles> CreateMigrationFiles(const NewMigrationOptions& options);

}  // namespace schemagate

#endif  // SCHEMAGATE_CTL_NEW_MIGRATION_H_
