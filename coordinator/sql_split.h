// Splits a migration file into statements with the real PostgreSQL 15
// parser (libpg_query), so dollar-quoted bodies, comments and string
// literals containing ';' are handled as PostgreSQL handles them.
//
// Thread-safe (libpg_query keeps its memory per thread).
#ifndef SCHEMAGATE_COORDINATOR_SQL_SPLIT_H_
#define SCHEMAGATE_COORDINATOR_SQL_SPLIT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

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

// Byte offset of the first invalid UTF-8 sequence in `s` (overlong forms and
// surrogates included), or absl::string_view::npos if there is none.
size_t FindInvalidUtf8(absl::string_view s);

// 1-based line number of byte `offset` in `text`.
int LineOfOffset(absl::string_view text, size_t offset);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SQL_SPLIT_H_
