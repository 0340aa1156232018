// Reads another migration tool's bookkeeping tables (read-only): the
// tables of engine/foreign_bookkeeping.h, each looked up by its default name
// as the session's search_path resolves it (as the tool itself creates and
// finds it). Internal to coordinator/postgres/ but for the offline commands.
#ifndef SCHEMAGATE_COORDINATOR_POSTGRES_FOREIGN_TABLES_H_
#define SCHEMAGATE_COORDINATOR_POSTGRES_FOREIGN_TABLES_H_

#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/engine/foreign_bookkeeping.h"
#include "coordinator/engine/store.h"

namespace schemagate {

// Every foreign bookkeeping table found, read in `tx`. A schema_migrations
// with a `dirty` column is golang-migrate's, one with a text `version` only
// dbmate's; a table of one of these names with other columns is skipped.
std::vector<ForeignBookkeeping> ReadForeignTables(pqxx::transaction_base& tx);

// The same on a connection of its own (the offline commands).
absl::StatusOr<std::vector<ForeignBookkeeping>> ReadForeignTables(const std::string& conninfo);

// Writes an adoption's rows and its one event in `tx` (RunSession::RecordAdoption).
void WriteAdoptionRows(pqxx::transaction_base& tx, const std::string& migrations_table,
                       const std::vector<AdoptedRow>& rows);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_POSTGRES_FOREIGN_TABLES_H_
