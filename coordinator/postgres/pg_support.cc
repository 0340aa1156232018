#include "coordinator/postgres/pg_support.h"

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/postgres/foreign_tables.h"
#include "coordinator/postgres/pg_repeatables.h"

namespace schemagate {

void AddAttachTokenColumn(pqxx::transaction_base& tx, const std::string& instances) {
  AddColumnIfMissing(tx, instances, "attach_token", "text NOT NULL DEFAULT ''");
}

bool TableExists(pqxx::transaction_base& tx, const std::string& quoted_name) {
  return !tx.exec_params1("SELECT to_regclass($1)", quoted_name)[0].is_null();
}

std::string CleanMessage(const char* what) {
  absl::string_view text(what);
  absl::ConsumePrefix(&text, "ERROR:  ");
  absl::ConsumePrefix(&text, "FATAL:  ");
  size_t newline = text.find('\n');
  if (newline != absl::string_view::npos) text = text.substr(0, newline);
  return RedactSecrets(absl::StripAsciiWhitespace(text));
}

bool IsConnectionLoss(const std::string& sqlstate) {
  return absl::StartsWith(sqlstate, "08") || absl::StartsWith(sqlstate, "57P0");
}

absl::Status ConnectionLost(const std::exception& e) {
  return absl::AbortedError(absl::StrCat(
      "lost the run connection (", CleanMessage(e.what()),
      "); PostgreSQL rolled back the open transaction and released the lock; retry the run"));
}

absl::Status Unavailable(const std::exception& e) {
  return absl::UnavailableError(
      absl::StrCat("database unavailable: ", CleanMessage(e.what())));
}

std::string Interval(absl::Duration d) {
  return absl::StrCat(absl::ToInt64Milliseconds(d), "ms");
}

absl::Time FromMicros(const pqxx::field& f) {
  return f.is_null() ? absl::InfinitePast() : absl::FromUnixMicros(f.as<int64_t>());
}

std::unique_ptr<pqxx::connection> Connect(const std::string& conninfo,
                                          const char* application_name) {
  auto conn = std::make_unique<pqxx::connection>(WithKeepalives(conninfo));
  pqxx::nontransaction tx(*conn);
  tx.exec(absl::StrCat("SET application_name = ", tx.quote(application_name), "; ",
                       ServerKeepaliveSql()));
  return conn;
}

absl::Status RequireDirectSession(pqxx::connection& conn) {
  pqxx::nontransaction tx(conn);
  const int server_pid = tx.exec1("SELECT pg_backend_pid()")[0].as<int>();
  if (server_pid == conn.backendpid()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "--database-url goes through a connection pooler such as PgBouncer "
      "(the session's backend pid ", server_pid, " is not the ", conn.backendpid(),
      " the connection announced); the run lock is a session advisory lock, which PgBouncer "
      "pool_mode=transaction hands to whichever pooled server connection took it, so it "
      "neither protects the run nor is released when the run ends. Point schemagated's "
      "--database-url at PostgreSQL directly (apps may keep using PgBouncer)"));
}

absl::StatusOr<int64_t> ComputeLockKey(pqxx::connection& conn, const PgStoreOptions& options) {
  if (options.lock_key) return *options.lock_key;
  pqxx::nontransaction tx(conn);
  const std::string database = tx.exec1("SELECT current_database()")[0].as<std::string>();
  return DeriveLockKey(database, options.schema);
}

DatabaseState ReadStateOn(pqxx::connection& conn, const std::string& schema, int64_t lock_key) {
  Names names(conn, schema);
  pqxx::transaction<pqxx::isolation_level::repeatable_read, pqxx::read_only> tx(conn);
  DatabaseState state;
  const uint64_t key = static_cast<uint64_t>(lock_key);
  state.run_in_progress =
      tx.exec_params1(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1)",
            static_cast<int64_t>(key >> 32), static_cast<int64_t>(key & 0xFFFFFFFFu))[0]
          .as<bool>();
  const bool exists =
      TableExists(tx, names.meta) && TableExists(tx, names.events);
  const bool any_recorded =
      exists && TableExists(tx, names.migrations) &&
      tx.exec1(absl::StrCat("SELECT EXISTS (SELECT 1 FROM ", names.migrations, ")"))[0].as<bool>();
  if (!any_recorded) {
    // Tables that no migration of schemagate's made: another tool's schema
    // (DatabaseState::unrecorded_tables). Partitions count with their parent.
    pqxx::result tables = tx.exec_params(
        "SELECT count(*) OVER (), format('%I.%I', n.nspname, c.relname) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
        "AND NOT c.relispartition AND n.nspname <> $1 AND n.nspname NOT LIKE 'pg\\_%' "
        "AND n.nspname <> 'information_schema' AND NOT EXISTS (SELECT 1 FROM pg_depend d "
        "WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') "
        "ORDER BY format('%I.%I', n.nspname, c.relname) COLLATE \"C\" LIMIT $2",
        schema, static_cast<int>(kUnrecordedTablesNamed));
    for (const pqxx::row& row : tables) {
      state.unrecorded_table_count = row[0].as<int64_t>();
      state.unrecorded_tables.push_back(row[1].as<std::string>());
    }
    if (state.unrecorded_table_count > 0) state.foreign = ReadForeignTables(tx);
  }
  if (!exists) return state;
  state.initialized = true;
  pqxx::row meta = tx.exec1(absl::StrCat(
      "SELECT run_epoch, failed_version, failed_name, failed_checksum, failed_sqlstate, "
      "failed_message, failed_statement, failed_line, "
      "(extract(epoch FROM failed_at) * 1000000)::bigint, failed_by, "
      "(SELECT coalesce(max(id), 0) FROM ", names.events, "), "
      // Read through jsonb so that a layout older than the column still reads.
      "(to_jsonb(m) ->> 'hold_above')::bigint FROM ", names.meta, " m"));
  state.run_epoch = meta[0].as<int64_t>();
  if (!meta[1].is_null()) {
    SqlFailure failure;
    failure.version = meta[1].as<int64_t>();
    failure.name = meta[2].as<std::string>("");
    failure.checksum = meta[3].as<std::string>("");
    failure.sqlstate = meta[4].as<std::string>("");
    failure.message = meta[5].as<std::string>("");
    failure.statement_index = meta[6].as<int>(0);
    failure.line = meta[7].as<int>(0);
    failure.at = FromMicros(meta[8]);
    failure.coordinator_id = meta[9].as<std::string>("");
    state.failure = failure;
  }
  state.last_event_id = meta[10].as<int64_t>();
  if (!meta[11].is_null()) state.hold_above = meta[11].as<int64_t>();
  pqxx::result rows = tx.exec(absl::StrCat(
      "SELECT version, name, checksum, state, (extract(epoch FROM applied_at) * 1000000)::bigint, "
      "duration_ms, applied_by, statements_done, "
      // Through jsonb, and only for dirty rows: a layout before the column has none.
      "CASE WHEN state = 'dirty' THEN to_jsonb(m) ->> 'direction' END FROM ",
      names.migrations, " m ORDER BY version"));
  state.applied.reserve(rows.size());
  for (const pqxx::row& row : rows) {
    AppliedMigration m;
    m.version = row[0].as<int64_t>();
    m.name = row[1].as<std::string>();
    m.checksum = row[2].as<std::string>();
    m.dirty = row[3].as<std::string>() == "dirty";
    m.applied_at = FromMicros(row[4]);
    m.duration = absl::Milliseconds(row[5].as<int64_t>());
    m.applied_by = row[6].as<std::string>();
    m.statements_done = row[7].as<int>();
    m.rolling_back = m.dirty && row[8].as<std::string>("") == "down";
    state.applied.push_back(std::move(m));
  }
  ReadRepeatables(tx, names, &state);
  // Through jsonb: a layout before 5 has no checksum column.
  pqxx::result failed = tx.exec(absl::StrCat(
      "SELECT DISTINCT version, to_jsonb(e) ->> 'checksum' FROM ", names.events,
      " e WHERE kind = 'failure' AND version IS NOT NULL AND to_jsonb(e) ->> 'checksum' <> '' "
      "ORDER BY 1, 2"));
  for (const pqxx::row& row : failed) {
    state.failed_texts[row[0].as<int64_t>()].push_back(row[1].as<std::string>());
  }
  pqxx::result instances = tx.exec(absl::StrCat(
      "SELECT instance_id, app, app_version, known_version, required_version, coordinator_id, "
      "(extract(epoch FROM first_seen) * 1000000)::bigint, "
      "(extract(epoch FROM last_seen) * 1000000)::bigint, "
      "(extract(epoch FROM lease_expires) * 1000000)::bigint, lease_expires > now(), "
      // Through jsonb: a layout before 4 has no such column.
      "coalesce(to_jsonb(i) ->> 'attach_token', '') FROM ",
      names.instances, " i WHERE lease_expires > now() - interval '1 hour' ORDER BY instance_id"));
  state.live_instances.reserve(instances.size());
  for (const pqxx::row& row : instances) {
    InstanceRecord i;
    i.instance_id = row[0].as<std::string>();
    i.app = row[1].as<std::string>();
    i.app_version = row[2].as<std::string>();
    i.known_version = row[3].as<int64_t>();
    i.required_version = row[4].as<int64_t>();
    i.coordinator_id = row[5].as<std::string>();
    i.first_seen = FromMicros(row[6]);
    i.last_seen = FromMicros(row[7]);
    i.lease_expires = FromMicros(row[8]);
    i.attach_token = row[10].as<std::string>();
    (row[9].as<bool>() ? state.live_instances : state.lapsed_instances).push_back(std::move(i));
  }
  tx.commit();
  return state;
}

std::optional<int64_t> OptionalVersion(int64_t v) {
  return v == 0 ? std::nullopt : std::optional<int64_t>(v);
}

std::optional<std::string> OptionalText(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional<std::string>(s);
}

std::optional<int64_t> OptionalMillis(const std::optional<absl::Duration>& d) {
  return d ? std::optional<int64_t>(absl::ToInt64Milliseconds(*d)) : std::nullopt;
}

std::vector<EventRecord> EventsFromRows(const pqxx::result& rows) {
  std::vector<EventRecord> events;
  events.reserve(rows.size());
  for (const pqxx::row& row : rows) {
    EventRecord e;
    e.id = row[0].as<int64_t>();
    e.at = FromMicros(row[1]);
    e.kind = row[2].as<std::string>();
    e.version = row[3].as<int64_t>(0);
    e.name = row[4].as<std::string>("");
    e.run_id = row[5].as<std::string>("");
    e.actor = row[6].as<std::string>("");
    if (!row[7].is_null()) e.duration = absl::Milliseconds(row[7].as<int64_t>());
    e.sqlstate = row[8].as<std::string>("");
    e.message = row[9].as<std::string>("");
    e.statement_index = row[10].as<int>(0);
    e.line = row[11].as<int>(0);
    events.push_back(std::move(e));
  }
  return events;
}

}  // namespace schemagate
