#include "coordinator/postgres/pg_repeatables.h"

#include "absl/strings/str_cat.h"

namespace schemagate {

void CreateRepeatablesTable(pqxx::transaction_base& tx, const Names& names) {
  tx.exec(absl::StrCat("CREATE TABLE IF NOT EXISTS ", names.repeatables,
                       " ("
                       " name text PRIMARY KEY,"
                       " checksum text NOT NULL,"
                       " applied_at timestamptz NOT NULL DEFAULT now(),"
                       " duration_ms bigint NOT NULL DEFAULT 0,"
                       " applied_by text NOT NULL,"
                       " run_id text)"));
  // ReadState reads the texts applied on every read.
  tx.exec(absl::StrCat("CREATE INDEX IF NOT EXISTS events_repeatables ON ", names.events,
                       " (name) WHERE kind = 'repeatable'"));
}

void ReadRepeatables(pqxx::transaction_base& tx, const Names& names, DatabaseState* state) {
  if (!TableExists(tx, names.repeatables)) return;
  const pqxx::result texts =
      tx.exec(absl::StrCat("SELECT DISTINCT name, checksum FROM ", names.events,
                           " WHERE kind = 'repeatable' AND checksum IS NOT NULL ORDER BY 1, 2"));
  for (const pqxx::row& row : texts) {
    state->repeatable_texts[row[0].as<std::string>()].push_back(row[1].as<std::string>());
  }
  std::vector<AppliedRepeatable>& out = state->repeatables;
  const pqxx::result rows = tx.exec(absl::StrCat(
      "SELECT name, checksum, (extract(epoch FROM applied_at) * 1000000)::bigint, duration_ms,"
      " applied_by, run_id FROM ",
      names.repeatables, " ORDER BY name COLLATE \"C\""));
  out.reserve(rows.size());
  for (const pqxx::row& row : rows) {
    AppliedRepeatable r;
    r.name = row[0].as<std::string>();
    r.checksum = row[1].as<std::string>();
    r.applied_at = FromMicros(row[2]);
    r.duration = absl::Milliseconds(row[3].as<int64_t>());
    r.applied_by = row[4].as<std::string>();
    r.run_id = row[5].as<std::string>("");
    out.push_back(std::move(r));
  }
}

std::string PrepareRepeatableSql(const Names& names) {
  return absl::StrCat(
      "PREPARE ", kStepBookRepeatable,
      " (text, text, text, text, bigint, text, text, text) AS "
      "WITH book AS (INSERT INTO ",
      names.repeatables,
      " (name, checksum, applied_at, duration_ms, applied_by, run_id) VALUES"
      " ($1, $8, clock_timestamp(), $5, $3, $2) ON CONFLICT (name) DO UPDATE SET"
      " checksum = $8, applied_at = clock_timestamp(), duration_ms = $5, applied_by = $3,"
      " run_id = $2 RETURNING 1), ev AS (INSERT INTO ",
      names.events,
      " (kind, name, run_id, actor, duration_ms, message, checksum) VALUES"
      " ('repeatable', $1, $2, $3, $5, $4, $8) RETURNING id)"
      " SELECT pg_notify($6, $7), (SELECT count(*) FROM book), (SELECT count(*) FROM ev)");
}

std::string RepeatableClosingSql(pqxx::connection_base& conn, const StepRecord& record,
                                 absl::string_view duration_ms, absl::string_view channel,
                                 const std::string& schema) {
  return absl::StrCat("EXECUTE ", kStepBookRepeatable, "(", conn.quote(record.name), ", ",
                      conn.quote(record.run_id), ", ", conn.quote(record.actor), ", ",
                      conn.quote(record.message), ", ", duration_ms, ", ",
                      conn.quote(std::string(channel)), ", ", conn.quote(schema), ", ",
                      conn.quote(record.checksum), "); COMMIT");
}

}  // namespace schemagate
