#include "coordinator/postgres/step_sql.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"

#include "absl/strings/str_cat.h"
#include "coordinator/postgres/pg_repeatables.h"
#include "coordinator/postgres/pg_support.h"

namespace schemagate {

std::string StepOpeningSql(const StatementLimits& limits, int64_t epoch) {
  return absl::StrCat("BEGIN; SET LOCAL lock_timeout = '", Interval(limits.lock_timeout),
                      "'; SET LOCAL statement_timeout = '", Interval(limits.statement_timeout),
                      "'; EXECUTE ", kStepFence, "(", epoch, "); ");
}

std::string StepClosingSql(pqxx::connection_base& conn, const StepRecord& record,
                           absl::string_view duration_ms, size_t statement_count,
                           absl::string_view channel, const std::string& schema) {
  if (record.repeatable) return RepeatableClosingSql(conn, record, duration_ms, channel, schema);
  return absl::StrCat(
      "EXECUTE ", record.up ? kStepBookUp : kStepBookDown, "(", record.version, ", ",
      conn.quote(record.name), ", ", conn.quote(record.run_id), ", ", conn.quote(record.actor),
      ", ", conn.quote(std::string(record.up ? "apply" : "rollback")), ", ", duration_ms, ", ",
      conn.quote(std::string(channel)), ", ", conn.quote(schema),
      record.up ? absl::StrCat(", ", conn.quote(record.checksum), ", ", statement_count)
                : std::string(),
      "); COMMIT");
}

namespace {

// The part of a step's bookkeeping statement after its `book` CTE.
std::string EventAndNotifySql(const Names& names) {
  return absl::StrCat(
      ", ev AS (INSERT INTO ", names.events,
      " (kind, version, name, run_id, actor, duration_ms) VALUES ($5, $1, $2, $3, $4, $6)"
      " RETURNING id) SELECT pg_notify($7, $8), (SELECT count(*) FROM book),"
      " (SELECT count(*) FROM ev)");
}

}  // namespace

std::string PrepareStepsSql(const Names& names, absl::string_view lock_held) {
  return absl::StrCat(
      "PREPARE ", kStepFence, " (bigint) AS SELECT CASE WHEN run_epoch = $1 AND ", lock_held,
      " THEN 0 ELSE ('", kFenceMarker, "' || CASE WHEN ", lock_held,
      " THEN 'epoch ' ELSE 'lock ' END || run_epoch)::int END,",
      " set_config('schemagate.step_start', clock_timestamp()::text, true) FROM ", names.meta,
      "; ",
      "PREPARE ", kStepBookUp,
      " (bigint, text, text, text, text, bigint, text, text, text, int) AS "
      "WITH book AS (INSERT INTO ", names.migrations,
      " (version, name, checksum, state, applied_at, duration_ms, applied_by,"
      " statements_done, run_id) VALUES ($1, $2, $9, 'applied', clock_timestamp(), $6, $4,"
      " $10, $3) ON CONFLICT (version) DO UPDATE SET name = $2, checksum = $9,"
      " state = 'applied', applied_at = clock_timestamp(), duration_ms = $6,"
      " applied_by = $4, statements_done = $10, run_id = $3 RETURNING 1)",
      EventAndNotifySql(names), "; ", "PREPARE ", kStepBookDown,
      " (bigint, text, text, text, text, bigint, text, text) AS "
      "WITH book AS (DELETE FROM ", names.migrations, " WHERE version = $1 RETURNING 1)",
      EventAndNotifySql(names), "; ", PrepareRepeatableSql(names));
}

std::string StepNoteFunction(const Names& names) {
  return absl::StrCat(names.schema, ".step_note");
}

bool CreateStepNote(pqxx::transaction_base& tx, const Names& names) {
  const std::string signature = absl::StrCat(StepNoteFunction(names), "(bigint)");
  const pqxx::row found = tx.exec1(absl::StrCat(
      "SELECT to_regprocedure(", tx.quote(signature), ") IS NOT NULL, EXISTS (SELECT 1 FROM "
      "pg_language WHERE lanname = 'plpgsql')"));
  if (found[0].as<bool>()) return true;
  if (!found[1].as<bool>()) return false;
  tx.exec(absl::StrCat("CREATE FUNCTION ", signature,
                       " RETURNS void LANGUAGE plpgsql AS "
                       "$$BEGIN RAISE NOTICE 'schemagate-step %', $1; END$$"));
  return true;
}

std::string BatchSql(pqxx::connection_base& conn, const Names& names,
                     const std::vector<RunSession::BatchStep>& steps, int64_t epoch,
                     absl::string_view channel, const std::string& schema) {
  // Notices must reach the session whatever the role's client_min_messages.
  std::string sql = "SET client_min_messages = notice;\n";
  for (size_t i = 0; i < steps.size(); ++i) {
    const RunSession::BatchStep& step = steps[i];
    absl::StrAppend(&sql, StepOpeningSql(step.limits, epoch), "SELECT ",
                    StepNoteFunction(names), "(", i, "); ");
    // A newline first: a statement may end in a -- comment.
    for (const SqlStatement& s : *step.statements) absl::StrAppend(&sql, s.text, "\n; ");
    absl::StrAppend(&sql,
                    StepClosingSql(conn, step.record,
                                   "(extract(epoch FROM clock_timestamp() - current_setting("
                                   "'schemagate.step_start')::timestamptz) * 1000)::bigint",
                                   step.statements->size(), channel, schema),
                    ";\n");
  }
  return sql;
}

bool StepNoteHandler::operator()(const char message[]) noexcept {
  absl::string_view text(message);
  const size_t at = text.find("schemagate-step ");
  if (at == absl::string_view::npos) return true;
  size_t index = 0;
  absl::string_view digits = text.substr(at + std::strlen("schemagate-step "));
  digits = digits.substr(0, digits.find_first_not_of("0123456789"));
  if (!absl::SimpleAtoi(digits, &index)) return true;
  on_step_(index);
  return false;
}

size_t CountBatchCommits(pqxx::transaction_base& tx, const Names& names,
                         const std::vector<RunSession::BatchStep>& steps) {
  std::string versions;
  for (const RunSession::BatchStep& step : steps) {
    absl::StrAppend(&versions, versions.empty() ? "" : ",", step.record.version);
  }
  const pqxx::result rows = tx.exec_params(
      absl::StrCat("SELECT version FROM ", names.migrations,
                   " WHERE run_id = $1 AND state = 'applied' AND version = ANY($2::bigint[])"),
      steps.front().record.run_id, absl::StrCat("{", versions, "}"));
  size_t committed = 0;
  for (const RunSession::BatchStep& step : steps) {
    const bool found = std::any_of(rows.begin(), rows.end(), [&](const pqxx::row& row) {
      return row[0].as<int64_t>() == step.record.version;
    });
    if (!found) break;
    ++committed;
  }
  return committed;
}

}  // namespace schemagate
