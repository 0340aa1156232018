// The SQL text of a transactional step as the run session sends it: an
// opening (BEGIN, limits, fence) before the migration's statements and a
// closing (bookkeeping row, event, NOTIFY, COMMIT) after them.
#ifndef SCHEMAGATE_COORDINATOR_POSTGRES_STEP_SQL_H_
#define SCHEMAGATE_COORDINATOR_POSTGRES_STEP_SQL_H_

#include <cstdint>
#include <pqxx/pqxx>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "coordinator/engine/store.h"
#include "coordinator/postgres/pg_support.h"

namespace schemagate {

// The run session's SQL-level prepared statements (PREPAREd once per run).
inline constexpr char kStepFence[] = "schemagate_step_fence";
inline constexpr char kStepBookUp[] = "schemagate_step_book_up";
inline constexpr char kStepBookDown[] = "schemagate_step_book_down";
// Starts the error text of a failed fence: "schemagate-fence: epoch N|lock N".
inline constexpr char kFenceMarker[] = "schemagate-fence: ";

// "BEGIN; SET LOCAL lock_timeout …; SET LOCAL statement_timeout …; EXECUTE
// fence(epoch); " — the statements follow it in the same query.
std::string StepOpeningSql(const StatementLimits& limits, int64_t epoch);

// "EXECUTE book(…); COMMIT". `duration_ms` is an SQL expression.
std::string StepClosingSql(pqxx::connection_base& conn, const StepRecord& record,
                           absl::string_view duration_ms, size_t statement_count,
                           absl::string_view channel, const std::string& schema);

// PREPARE of the fence and of the bookkeeping of an up and a down step. The
// fence fails its statement with a text starting with kFenceMarker when the
// session lost the lock (`lock_held`: an SQL test of it) or another
// coordinator moved the epoch. The bookkeeping writes the row, the event and
// the NOTIFY in one statement.
std::string PrepareStepsSql(const Names& names, absl::string_view lock_held);

// The function a batch calls as each of its steps begins; it raises the
// notice "schemagate-step N". Created with the bookkeeping (when PL/pgSQL
// is there: CreateStepNote says whether it is).
std::string StepNoteFunction(const Names& names);
bool CreateStepNote(pqxx::transaction_base& tx, const Names& names);

// The steps as one simple query: each opened, noted (StepNoteFunction with
// its index), run and closed. Every step's duration is the server's.
std::string BatchSql(pqxx::connection_base& conn, const Names& names,
                     const std::vector<RunSession::BatchStep>& steps, int64_t epoch,
                     absl::string_view channel, const std::string& schema);

// Calls `on_step(N)` for each notice "schemagate-step N" that arrives on
// `conn` while it exists; passes other notices on.
class StepNoteHandler : public pqxx::errorhandler {
 public:
  StepNoteHandler(pqxx::connection_base& conn, std::function<void(size_t)> on_step)
      : pqxx::errorhandler(conn), on_step_(std::move(on_step)) {}
  bool operator()(const char message[]) noexcept override;

 private:
  std::function<void(size_t)> on_step_;
};

// How many of `steps`, sent in one batch by run steps.front().record.run_id,
// committed: the leading ones whose rows that run wrote.
size_t CountBatchCommits(pqxx::transaction_base& tx, const Names& names,
                         const std::vector<RunSession::BatchStep>& steps);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_POSTGRES_STEP_SQL_H_
