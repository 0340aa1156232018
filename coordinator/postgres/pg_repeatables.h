// The `repeatables` table of the bookkeeping: one row per repeatable
// migration, the text last applied (name, checksum, when, how long, by
// whom, in which run). Internal to coordinator/postgres/.
#ifndef SCHEMAGATE_COORDINATOR_POSTGRES_PG_REPEATABLES_H_
#define SCHEMAGATE_COORDINATOR_POSTGRES_PG_REPEATABLES_H_

#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "coordinator/engine/store.h"
#include "coordinator/postgres/pg_support.h"

namespace schemagate {

// The run session's prepared bookkeeping of a repeatable step.
inline constexpr char kStepBookRepeatable[] = "schemagate_step_book_repeatable";

// Layout 6: creates the table unless it exists (idempotent).
void CreateRepeatablesTable(pqxx::transaction_base& tx, const Names& names);

// Fills state->repeatables (ordered by name) and state->repeatable_texts;
// nothing on a layout older than 6.
void ReadRepeatables(pqxx::transaction_base& tx, const Names& names, DatabaseState* state);

// PREPARE of kStepBookRepeatable: upserts the row and inserts the
// "repeatable" event and the NOTIFY, in one statement.
std::string PrepareRepeatableSql(const Names& names);

// "EXECUTE book_repeatable(…); COMMIT" for `record` (record.repeatable).
std::string RepeatableClosingSql(pqxx::connection_base& conn, const StepRecord& record,
                                 absl::string_view duration_ms, absl::string_view channel,
                                 const std::string& schema);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_POSTGRES_PG_REPEATABLES_H_
