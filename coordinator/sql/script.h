// One migration file as the SQL layer sees it: the directives of its leading
// comment lines and its statements. The migration set (engine) reads files
// into these; lint reads them back. No I/O here.
#ifndef SCHEMAGATE_COORDINATOR_SQL_SCRIPT_H_
#define SCHEMAGATE_COORDINATOR_SQL_SCRIPT_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "coordinator/sql/sql_split.h"

namespace schemagate {

// What the leading comment lines of a file say.
struct Directives {
  bool no_transaction = false;
  bool breaking = false;
  std::optional<absl::Duration> lock_timeout;
  std::optional<absl::Duration> statement_timeout;
  // Lint rules whose findings in this file are not refused (lint rule id ->
  // the reason the file gives). Only the up file's count.
  std::map<std::string, std::string> lint_ignore;
};

// One direction (up or down) of a migration.
struct MigrationScript {
  std::string path;
  Directives directives;
  std::vector<SqlStatement> statements;
  bool transactional() const { return !directives.no_transaction; }
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SQL_SCRIPT_H_
