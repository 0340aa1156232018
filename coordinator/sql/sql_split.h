// Splits a migration file into statements with the real PostgreSQL 15
// parser (libpg_query), so dollar-quoted bodies, comments and string
// literals containing ';' are handled as PostgreSQL handles them.
//
// Thread-safe (libpg_query keeps its memory per thread).
#ifndef SCHEMAGATE_COORDINATOR_SQL_SQL_SPLIT_H_
#define SCHEMAGATE_COORDINATOR_SQL_SQL_SPLIT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "coordinator/base/text.h"

namespace schemagate {

struct SqlStatement {
  // The statement text without its terminating ';' and surrounding blanks.
  std::string text;
  // 1-based line of the file on which the statement starts.
  int line = 0;
  // Why the statement cannot run inside a transaction block (CREATE INDEX
  // CONCURRENTLY, VACUUM, …); empty if it can.
  std::string needs_no_transaction;
  // BEGIN, COMMIT, ROLLBACK, SAVEPOINT…: schemagate manages transactions.
  bool is_transaction_control = false;
};

// Parses `sql` and returns its statements in order. A parse error, a NUL
// byte or invalid UTF-8 returns INVALID_ARGUMENT with "line N: <what>" (line
// within `sql`).
absl::StatusOr<std::vector<SqlStatement>> SplitSql(absl::string_view sql);


// What a CREATE INDEX / DROP INDEX statement does to which index: what a
// resume needs to tell whether a cut statement had in fact completed.
struct IndexStatement {
  enum class Kind {
    kOther,   // not a CREATE INDEX or a DROP INDEX of one index
    kCreate,  // CREATE INDEX (CONCURRENTLY or not) with a name
    kDrop,    // DROP INDEX (CONCURRENTLY or not) of one index
  };
  Kind kind = Kind::kOther;
  // As written; "" when the statement leaves it to search_path. For kCreate
  // the schema of the table (an index lives in its table's schema).
  std::string schema;
  // kCreate: the table the index is built on; "" for kDrop.
  std::string table;
  std::string index;
  // IF NOT EXISTS / IF EXISTS: running it again is harmless as it stands.
  bool if_exists = false;
  bool concurrently = false;
};

// Describes the single statement `sql`; kOther if it does not parse, holds
// more than one statement, or is no such statement.
IndexStatement DescribeIndexStatement(absl::string_view sql);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SQL_SQL_SPLIT_H_
