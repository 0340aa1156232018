// The migration set's loaders that parse SQL: kept apart from
// migration_set.cc so that a program loading a set without statements (the
// agent) links no SQL parser.
#include "coordinator/engine/migration_set.h"
#include "coordinator/sql/sql_split.h"

namespace schemagate {

absl::StatusOr<MigrationSet> MigrationSet::LoadDirectory(const std::string& dir,
                                                         std::vector<std::string>* warnings,
                                                         SetFormat format) {
  return LoadDirectoryWith(dir, &SplitSql, warnings, format);
}

absl::StatusOr<MigrationSet> MigrationSet::LoadFiles(
    const std::string& dir, const std::map<std::string, std::string>& files,
    std::vector<std::string>* warnings, SetFormat format) {
  return LoadFilesWith(dir, files, &SplitSql, warnings, format);
}

}  // namespace schemagate
