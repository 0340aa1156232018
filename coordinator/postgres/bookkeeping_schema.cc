// The bookkeeping schema of a database schemagate runs on, created (and
// upgraded) idempotently by every run before it reads or writes anything.
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "coordinator/postgres/pg_repeatables.h"
#include "coordinator/postgres/pg_support.h"

namespace schemagate {

// ALTER TABLE … ADD COLUMN IF NOT EXISTS takes an ACCESS EXCLUSIVE lock even
// when the column exists; held to the end of the run's schema transaction it
// deadlocks with a reader that holds a share lock on another bookkeeping
// table (seen as "deadlock detected" in a concurrent ReadState). Alter only
// a layout that lacks the column.
void AddColumnIfMissing(pqxx::transaction_base& tx, const std::string& table,
                        const std::string& column, const std::string& definition) {
  const bool present = tx.exec_params1("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid"
                                       " = to_regclass($1) AND attname = $2 AND NOT attisdropped)",
                                       table, column)[0]
                           .as<bool>();
  if (!present) {
    tx.exec(absl::StrCat("ALTER TABLE ", table, " ADD COLUMN IF NOT EXISTS ", column, " ",
                         definition));
  }
}

void CreateBookkeeping(pqxx::transaction_base& tx, const Names& names) {
  tx.exec(absl::StrCat("CREATE SCHEMA IF NOT EXISTS ", names.schema));
  tx.exec(absl::StrCat(
      "CREATE TABLE IF NOT EXISTS ", names.meta, " ("
      " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
      " meta_version integer NOT NULL,"
      " run_epoch bigint NOT NULL DEFAULT 0,"
      " failed_version bigint, failed_name text, failed_checksum text,"
      " failed_sqlstate text, failed_message text, failed_statement integer,"
      " failed_line integer, failed_at timestamptz, failed_by text)"));
  tx.exec_params(absl::StrCat("INSERT INTO ", names.meta,
                              " (singleton, meta_version) VALUES (true, $1) "
                              "ON CONFLICT (singleton) DO NOTHING"),
                 kMetaVersion);
  // Upgrades of the bookkeeping layout, in order; each is idempotent.
  AddColumnIfMissing(tx, names.meta, "hold_above", "bigint");
  tx.exec(absl::StrCat(
      "CREATE TABLE IF NOT EXISTS ", names.schema_record, " ("
      " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
      " fingerprint text, description text,"
      " recorded_at timestamptz NOT NULL DEFAULT now(), run_id text)"));
  tx.exec_params(absl::StrCat("UPDATE ", names.meta,
                              " SET meta_version = $1 WHERE meta_version < $1"),
                 kMetaVersion);
  tx.exec(absl::StrCat(
      "CREATE TABLE IF NOT EXISTS ", names.migrations, " ("
      " version bigint PRIMARY KEY CHECK (version > 0),"
      " name text NOT NULL,"
      " checksum text NOT NULL,"
      " state text NOT NULL CHECK (state IN ('applied', 'dirty')),"
      " applied_at timestamptz NOT NULL DEFAULT now(),"
      " duration_ms bigint NOT NULL DEFAULT 0,"
      " applied_by text NOT NULL,"
      " statements_done integer NOT NULL DEFAULT 0,"
      " run_id text)"));
  tx.exec(absl::StrCat(
      "CREATE TABLE IF NOT EXISTS ", names.events, " ("
      " id bigserial PRIMARY KEY,"
      " at timestamptz NOT NULL DEFAULT clock_timestamp(),"
      " kind text NOT NULL,"
      " version bigint, name text, run_id text,"
      " actor text NOT NULL,"
      " duration_ms bigint, sqlstate text, message text,"
      " statement_index integer, line integer)"));
  AddColumnIfMissing(tx, names.events, "checksum", "text");
  // ReadState looks up failures on every read.
  tx.exec(absl::StrCat("CREATE INDEX IF NOT EXISTS events_failures ON ", names.events,
                       " (version) WHERE kind = 'failure'"));
  tx.exec(absl::StrCat(
      "CREATE TABLE IF NOT EXISTS ", names.instances, " ("
      " instance_id text PRIMARY KEY,"
      " app text NOT NULL DEFAULT '', app_version text NOT NULL DEFAULT '',"
      " known_version bigint NOT NULL DEFAULT 0, required_version bigint NOT NULL DEFAULT 0,"
      " state text NOT NULL DEFAULT '', coordinator_id text NOT NULL DEFAULT '',"
      " first_seen timestamptz NOT NULL DEFAULT now(),"
      " last_seen timestamptz NOT NULL DEFAULT now(),"
      " lease_expires timestamptz NOT NULL DEFAULT now())"));
  AddAttachTokenColumn(tx, names.instances);
  // Which file a dirty row's statements_done counts: 'down' while a
  // no-transaction rollback runs (AppliedMigration::rolling_back).
  AddColumnIfMissing(tx, names.migrations, "direction", "text NOT NULL DEFAULT 'up'");
  CreateRepeatablesTable(tx, names);
}

}  // namespace schemagate
