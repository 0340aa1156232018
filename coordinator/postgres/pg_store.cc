#include "coordinator/postgres/pg_store.h"


#include <chrono>
#include <cstring>
#include <pqxx/pqxx>
#include <random>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/base/sha256.h"
#include "coordinator/base/status_macros.h"

namespace schemagate {
namespace {

// SQLSTATE lock_not_available: lock_timeout tripped.
constexpr char kLockNotAvailable[] = "55P03";


// Bookkeeping layout version, stored in meta.meta_version.
// 2: meta.hold_above (rollback holds).
// 3: table schema_record (the schema recorded after each run).
// 4: instances.attach_token (one instance id per agent process).
constexpr int kMetaVersion = 4;

// Layout 4's column of `instances`; idempotent. Also run by UpsertInstances
// on a layout made by an older coordinator when no run has upgraded it yet
// (a constant default: no table rewrite).
void AddAttachTokenColumn(pqxx::transaction_base& tx, const std::string& instances) {
  tx.exec(absl::StrCat("ALTER TABLE ", instances,
                       " ADD COLUMN IF NOT EXISTS attach_token text NOT NULL DEFAULT ''"));
}

// libpq's message for a server error, without "ERROR:  " and the
// LINE/caret context (kept in the event as the statement index instead).
std::string CleanMessage(const char* what) {
  absl::string_view text(what);
  absl::ConsumePrefix(&text, "ERROR:  ");
  absl::ConsumePrefix(&text, "FATAL:  ");
  size_t newline = text.find('\n');
  if (newline != absl::string_view::npos) text = text.substr(0, newline);
  return RedactSecrets(absl::StripAsciiWhitespace(text));
}

// SQLSTATE class 08 (connection exception) and 57P0x (operator
// intervention: shutdown) mean the connection is gone.
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

// Names of the bookkeeping objects, quoted once.
struct Names {
  explicit Names(pqxx::connection& conn, const std::string& schema)
      : schema(conn.quote_name(schema)),
        meta(schema_dot(conn, schema, "meta")),
        migrations(schema_dot(conn, schema, "migrations")),
        events(schema_dot(conn, schema, "events")),
        instances(schema_dot(conn, schema, "instances")),
        schema_record(schema_dot(conn, schema, "schema_record")) {}
  static std::string schema_dot(pqxx::connection& conn, const std::string& schema,
                                const char* table) {
    return absl::StrCat(conn.quote_name(schema), ".", conn.quote_name(table));
  }
  std::string schema, meta, migrations, events, instances, schema_record;
};

// The run lock is a session lock, so the run connection must be a session
// of its own. PgBouncer (in any pool mode) answers the client's startup
// itself and sends a cancel key of its own making, so the backend pid libpq
// reports (PQbackendPID, from that key) is not the pid of the server session
// that runs the queries. On a direct connection, or through a proxy that only
// forwards bytes, the two are always the same. This needs no query that
// could fail on PostgreSQL (`SHOW pool_mode` is an error there) and no luck
// with which pooled backend serves a transaction (comparing pg_backend_pid()
// across transactions passes whenever the pool hands back the same one).
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

// Reads the whole state in one repeatable-read snapshot.
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
      !tx.exec_params1("SELECT to_regclass($1)", names.meta)[0].is_null() &&
      !tx.exec_params1("SELECT to_regclass($1)", names.events)[0].is_null();
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
      "duration_ms, applied_by, statements_done FROM ",
      names.migrations, " ORDER BY version"));
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
    state.applied.push_back(std::move(m));
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

constexpr char kEventColumns[] =
    "id, (extract(epoch FROM at) * 1000000)::bigint, kind, version, name, run_id, actor, "
    "duration_ms, sqlstate, message, statement_index, line";

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

std::optional<int64_t> OptionalVersion(int64_t v) {
  return v == 0 ? std::nullopt : std::optional<int64_t>(v);
}

std::optional<std::string> OptionalText(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional<std::string>(s);
}

std::optional<int64_t> OptionalMillis(const std::optional<absl::Duration>& d) {
  return d ? std::optional<int64_t>(absl::ToInt64Milliseconds(*d)) : std::nullopt;
}

class PgRunSession : public RunSession {
 public:
  PgRunSession(std::unique_ptr<pqxx::connection> conn, PgStoreOptions options, int64_t lock_key)
      : conn_(std::move(conn)),
        options_(std::move(options)),
        lock_key_(lock_key),
        names_(*conn_, options_.schema) {}

  ~PgRunSession() override {
    try {
      if (conn_ && conn_->is_open()) {
        pqxx::nontransaction tx(*conn_);
        tx.exec_params("SELECT pg_advisory_unlock($1)", lock_key_);
      }
    } catch (const std::exception&) {
      // Closing the connection releases the lock all the same.
    }
  }

  absl::Status EnsureSchema() override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      tx.exec(absl::StrCat("CREATE SCHEMA IF NOT EXISTS ", names_.schema));
      tx.exec(absl::StrCat(
          "CREATE TABLE IF NOT EXISTS ", names_.meta, " ("
          " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
          " meta_version integer NOT NULL,"
          " run_epoch bigint NOT NULL DEFAULT 0,"
          " failed_version bigint, failed_name text, failed_checksum text,"
          " failed_sqlstate text, failed_message text, failed_statement integer,"
          " failed_line integer, failed_at timestamptz, failed_by text)"));
      tx.exec_params(absl::StrCat("INSERT INTO ", names_.meta,
                                  " (singleton, meta_version) VALUES (true, $1) "
                                  "ON CONFLICT (singleton) DO NOTHING"),
                     kMetaVersion);
      // Upgrades of the bookkeeping layout, in order; each is idempotent.
      tx.exec(absl::StrCat("ALTER TABLE ", names_.meta,
                           " ADD COLUMN IF NOT EXISTS hold_above bigint"));
      tx.exec(absl::StrCat(
          "CREATE TABLE IF NOT EXISTS ", names_.schema_record, " ("
          " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
          " fingerprint text, description text,"
          " recorded_at timestamptz NOT NULL DEFAULT now(), run_id text)"));
      tx.exec_params(absl::StrCat("UPDATE ", names_.meta,
                                  " SET meta_version = $1 WHERE meta_version < $1"),
                     kMetaVersion);
      tx.exec(absl::StrCat(
          "CREATE TABLE IF NOT EXISTS ", names_.migrations, " ("
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
          "CREATE TABLE IF NOT EXISTS ", names_.events, " ("
          " id bigserial PRIMARY KEY,"
          " at timestamptz NOT NULL DEFAULT clock_timestamp(),"
          " kind text NOT NULL,"
          " version bigint, name text, run_id text,"
          " actor text NOT NULL,"
          " duration_ms bigint, sqlstate text, message text,"
          " statement_index integer, line integer)"));
      tx.exec(absl::StrCat(
          "CREATE TABLE IF NOT EXISTS ", names_.instances, " ("
          " instance_id text PRIMARY KEY,"
          " app text NOT NULL DEFAULT '', app_version text NOT NULL DEFAULT '',"
          " known_version bigint NOT NULL DEFAULT 0, required_version bigint NOT NULL DEFAULT 0,"
          " state text NOT NULL DEFAULT '', coordinator_id text NOT NULL DEFAULT '',"
          " first_seen timestamptz NOT NULL DEFAULT now(),"
          " last_seen timestamptz NOT NULL DEFAULT now(),"
          " lease_expires timestamptz NOT NULL DEFAULT now())"));
      AddAttachTokenColumn(tx, names_.instances);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<DatabaseState> ReadState() override {
    absl::StatusOr<DatabaseState> out;
    absl::Status status = Guard([&] {
      out = ReadStateOn(*conn_, options_.schema, lock_key_);
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    return out;
  }

  absl::StatusOr<int64_t> BumpEpoch() override {
    int64_t epoch = 0;
    RETURN_IF_ERROR(Guard([&] {
      pqxx::work tx(*conn_);
      epoch = tx.exec1(absl::StrCat("UPDATE ", names_.meta,
                                    " SET run_epoch = run_epoch + 1 RETURNING run_epoch"))[0]
                  .as<int64_t>();
      tx.commit();
      return absl::OkStatus();
    }));
    epoch_ = epoch;
    return epoch;
  }

  absl::Status RunTransactional(const std::vector<SqlStatement>& statements,
                                const StatementLimits& limits, const StepRecord& record,
                                const StatementObserver& observer,
                                SqlFailure* failure) override {
    const absl::Time start = absl::Now();
    int current = -1;
    RETURN_IF_ERROR(CheckConnection());
    try {
      PrepareStepStatements();
      pqxx::work tx(*conn_);
      const pqxx::row fence = tx.exec_prepared1(kStepFence, Interval(limits.lock_timeout),
                                                Interval(limits.statement_timeout));
      RETURN_IF_ERROR(CheckFence(fence[2].as<int64_t>(), fence[3].as<bool>()));
      for (size_t i = 0; i < statements.size(); ++i) {
        current = static_cast<int>(i);
        if (observer) observer(current);
        tx.exec(statements[i].text);
      }
      current = -1;
      const int64_t duration_ms = absl::ToInt64Milliseconds(absl::Now() - start);
      const std::string event_and_notify = EventAndNotifySql();
      if (record.up) {
        tx.exec_prepared(
            kStepBookUp,
            record.version, record.name, record.run_id, record.actor, std::string("apply"),
            duration_ms, std::string(kEventsChannel), options_.schema, record.checksum,
            static_cast<int>(statements.size()));
      } else {
        tx.exec_params(
            absl::StrCat("WITH book AS (DELETE FROM ", names_.migrations,
                         " WHERE version = $1 RETURNING 1)", event_and_notify),
            record.version, record.name, record.run_id, record.actor, std::string("rollback"),
            duration_ms, std::string(kEventsChannel), options_.schema);
      }
      tx.commit();
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      return ConnectionLost(e);
    } catch (const pqxx::in_doubt_error& e) {
      return absl::AbortedError(absl::StrCat(
          "the commit of ", record.version, " is in doubt (", CleanMessage(e.what()),
          "); the next run re-reads the state"));
    } catch (const pqxx::sql_error& e) {
      if (IsConnectionLoss(e.sqlstate()) || !conn_->is_open()) return ConnectionLost(e);
      FillFailure(e, statements, current, record, failure);
      return absl::FailedPreconditionError(failure->message);
    } catch (const std::exception& e) {
      if (!conn_->is_open()) return ConnectionLost(e);
      return Unavailable(e);
    }
  }

  absl::Status RunNonTransactional(const std::vector<SqlStatement>& statements, int first,
                                   const StatementLimits& limits, const StepRecord& record,
                                   const StatementObserver& observer,
                                   SqlFailure* failure) override {
    int current = -1;
    RETURN_IF_ERROR(CheckConnection());
    try {
      {
        pqxx::nontransaction tx(*conn_);
        const pqxx::row fence = tx.exec1(absl::StrCat(
            "SET lock_timeout = '", Interval(limits.lock_timeout),
            "'; SET statement_timeout = '", Interval(limits.statement_timeout),
            "'; SELECT run_epoch, ", LockHeldSql(), " FROM ", names_.meta));
        RETURN_IF_ERROR(CheckFence(fence[0].as<int64_t>(), fence[1].as<bool>()));
      }
      for (size_t i = static_cast<size_t>(first); i < statements.size(); ++i) {
        current = static_cast<int>(i);
        if (observer) observer(current);
        pqxx::nontransaction tx(*conn_);
        if (i > static_cast<size_t>(first)) {
          RETURN_IF_ERROR(CheckFence(
              epoch_, tx.exec1(absl::StrCat("SELECT ", LockHeldSql()))[0].as<bool>()));
        }
        tx.exec(statements[i].text);
        tx.exec_params(absl::StrCat("UPDATE ", names_.migrations,
                                    " SET statements_done = $2 WHERE version = $1"),
                       record.version, current + 1);
      }
      current = -1;
      pqxx::nontransaction tx(*conn_);
      tx.exec("RESET lock_timeout; RESET statement_timeout");
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      return ConnectionLost(e);
    } catch (const pqxx::sql_error& e) {
      if (IsConnectionLoss(e.sqlstate()) || !conn_->is_open()) return ConnectionLost(e);
      FillFailure(e, statements, current, record, failure);
      ResetTimeouts();
      return absl::FailedPreconditionError(failure->message);
    } catch (const std::exception& e) {
      if (!conn_->is_open()) return ConnectionLost(e);
      return Unavailable(e);
    }
  }

  absl::Status MarkDirty(const StepRecord& record) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      if (record.up) {
        tx.exec_params(absl::StrCat(
                           "INSERT INTO ", names_.migrations,
                           " (version, name, checksum, state, applied_by, statements_done, run_id)"
                           " VALUES ($1, $2, $3, 'dirty', $4, 0, $5) ON CONFLICT (version) DO "
                           "UPDATE SET state = 'dirty', run_id = $5, applied_by = $4"),
                       record.version, record.name, record.checksum, record.actor, record.run_id);
      } else {
        tx.exec_params(absl::StrCat("UPDATE ", names_.migrations,
                                    " SET state = 'dirty', statements_done = 0, run_id = $2"
                                    " WHERE version = $1"),
                       record.version, record.run_id);
      }
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status FinishDirty(const StepRecord& record, absl::Duration duration) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      const int64_t ms = absl::ToInt64Milliseconds(duration);
      if (record.up) {
        tx.exec_params(absl::StrCat("UPDATE ", names_.migrations,
                                    " SET state = 'applied', applied_at = now(), duration_ms = $2"
                                    " WHERE version = $1"),
                       record.version, ms);
      } else {
        tx.exec_params(absl::StrCat("DELETE FROM ", names_.migrations, " WHERE version = $1"),
                       record.version);
      }
      tx.exec_params(absl::StrCat("INSERT INTO ", names_.events,
                                  " (kind, version, name, run_id, actor, duration_ms)"
                                  " VALUES ($1, $2, $3, $4, $5, $6)"),
                     std::string(record.up ? "apply" : "rollback"), record.version, record.name,
                     record.run_id, record.actor, ms);
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status SetFailure(const std::optional<SqlFailure>& failure) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      if (failure) {
        tx.exec_params(
            absl::StrCat("UPDATE ", names_.meta,
                         " SET failed_version = $1, failed_name = $2, failed_checksum = $3,"
                         " failed_sqlstate = $4, failed_message = $5, failed_statement = $6,"
                         " failed_line = $7, failed_at = now(), failed_by = $8"),
            failure->version, failure->name, failure->checksum, failure->sqlstate,
            failure->message, failure->statement_index, failure->line, failure->coordinator_id);
      } else {
        tx.exec(absl::StrCat("UPDATE ", names_.meta,
                             " SET failed_version = NULL, failed_name = NULL,"
                             " failed_checksum = NULL, failed_sqlstate = NULL,"
                             " failed_message = NULL, failed_statement = NULL,"
                             " failed_line = NULL, failed_at = NULL, failed_by = NULL"));
      }
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status RecordSchema(const SchemaRecord& record) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params(absl::StrCat("INSERT INTO ", names_.schema_record,
                                  " (singleton, fingerprint, description, recorded_at, run_id)"
                                  " VALUES (true, $1, $2, now(), $3) ON CONFLICT (singleton) DO"
                                  " UPDATE SET fingerprint = $1, description = $2,"
                                  " recorded_at = now(), run_id = $3"),
                     OptionalText(record.fingerprint), OptionalText(record.description),
                     OptionalText(record.run_id));
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status SetHold(std::optional<int64_t> hold_above) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params(absl::StrCat("UPDATE ", names_.meta, " SET hold_above = $1"), hold_above);
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status MarkApplied(const StepRecord& record, const EventRecord& event) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params(absl::StrCat(
                         "INSERT INTO ", names_.migrations,
                         " (version, name, checksum, state, applied_by, run_id) VALUES"
                         " ($1, $2, $3, 'applied', $4, $5) ON CONFLICT (version) DO UPDATE SET"
                         " name = $2, checksum = $3, state = 'applied', applied_by = $4,"
                         " run_id = $5"),
                     record.version, record.name, record.checksum, record.actor, record.run_id);
      InsertEvent(tx, event);
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status DeleteRow(int64_t version, const EventRecord& event) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params(absl::StrCat("DELETE FROM ", names_.migrations, " WHERE version = $1"),
                     version);
      InsertEvent(tx, event);
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<IndexLookup> LookUpIndex(const std::string& schema, const std::string& table,
                                          const std::string& index) override {
    IndexLookup found;
    RETURN_IF_ERROR(Guard([&] {
      pqxx::nontransaction tx(*conn_);
      // to_regclass resolves the names as the statement would, with this
      // session's search_path; quote_ident keeps their case.
      pqxx::result r = tx.exec_params(
          "WITH q AS (SELECT CASE WHEN $1 = '' THEN '' ELSE quote_ident($1) || '.' END AS s)"
          " SELECT i.indisvalid AND i.indisready, quote_ident(n.nspname) || '.' ||"
          " quote_ident(c.relname) FROM q, pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
          " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE CASE WHEN $2 = '' THEN"
          " i.indexrelid = to_regclass(q.s || quote_ident($3)) ELSE"
          " i.indrelid = to_regclass(q.s || quote_ident($2)) AND c.relname = $3 END",
          schema, table, index);
      if (r.empty()) return absl::OkStatus();
      found.state =
          r[0][0].as<bool>() ? IndexLookup::State::kValid : IndexLookup::State::kInvalid;
      found.qualified_name = r[0][1].as<std::string>();
      return absl::OkStatus();
    }));
    return found;
  }

  absl::Status DropIndexConcurrently(const IndexLookup& found) override {
    return Guard([&] {
      pqxx::nontransaction tx(*conn_);
      tx.exec(absl::StrCat("DROP INDEX CONCURRENTLY IF EXISTS ", found.qualified_name));
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::string> FindAlembicRevision() override {
    std::string revision;
    RETURN_IF_ERROR(Guard([&] {
      pqxx::nontransaction tx(*conn_);
      pqxx::result table = tx.exec(
          "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM "
          "information_schema.tables WHERE table_name = 'alembic_version' ORDER BY "
          "table_schema = 'public' DESC LIMIT 1");
      if (table.empty()) return absl::OkStatus();
      pqxx::result rows = tx.exec(absl::StrCat("SELECT string_agg(version_num, ', ') FROM ",
                                               table[0][0].as<std::string>()));
      revision = rows.empty() || rows[0][0].is_null() ? "(empty)" : rows[0][0].as<std::string>();
      return absl::OkStatus();
    }));
    return revision;
  }

  absl::Status Rehearse(const std::vector<RehearsalStep>& steps,
                        std::vector<RehearsalResult>* results) override {
    RETURN_IF_ERROR(CheckConnection());
    try {
      pqxx::work tx(*conn_);
      for (const RehearsalStep& step : steps) {
        RehearsalResult result;
        result.version = step.version;
        const absl::Time start = absl::Now();
        int current = -1;
        try {
          pqxx::subtransaction sub(tx, "rehearse");
          sub.exec(absl::StrCat("SET LOCAL lock_timeout = '", Interval(step.limits.lock_timeout),
                                "'; SET LOCAL statement_timeout = '",
                                Interval(step.limits.statement_timeout), "'"));
          for (size_t i = 0; i < step.statements->size(); ++i) {
            current = static_cast<int>(i);
            sub.exec((*step.statements)[i].text);
          }
          sub.commit();  // Released into the outer transaction, rolled back below.
          result.ok = true;
        } catch (const pqxx::sql_error& e) {
          if (IsConnectionLoss(e.sqlstate()) || !conn_->is_open()) throw;
          StepRecord record;
          record.version = step.version;
          record.name = step.name;
          FillFailure(e, *step.statements, current, record, &result.failure);
        }
        result.duration = absl::Now() - start;
        results->push_back(result);
        if (!result.ok) break;
      }
      tx.abort();
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      return ConnectionLost(e);
    } catch (const std::exception& e) {
      if (!conn_->is_open()) return ConnectionLost(e);
      return Unavailable(e);
    }
  }

  absl::Status RecordEvent(const EventRecord& event) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params(
          absl::StrCat("INSERT INTO ", names_.events,
                       " (kind, version, name, run_id, actor, duration_ms, sqlstate, message,"
                       " statement_index, line) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
          event.kind, OptionalVersion(event.version), OptionalText(event.name),
          OptionalText(event.run_id), event.actor, OptionalMillis(event.duration),
          OptionalText(event.sqlstate), OptionalText(RedactSecrets(event.message)),
          event.statement_index == 0 ? std::nullopt : std::optional<int>(event.statement_index),
          event.line == 0 ? std::nullopt : std::optional<int>(event.line));
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

 private:
  // Runs `fn`, turning libpqxx exceptions into statuses.
  // libpqxx 6 reopens a closed connection on its next use: a new session
  // without the run lock. Once the connection was lost, every call fails.
  absl::Status CheckConnection() {
    if (conn_ != nullptr && conn_->is_open() && !lost_) return absl::OkStatus();
    lost_ = true;
    return absl::AbortedError(
        "the run connection was lost earlier in this run; PostgreSQL released the lock; "
        "retry the run");
  }

  template <typename Fn>
  absl::Status Guard(Fn fn) {
    RETURN_IF_ERROR(CheckConnection());
    try {
      return fn();
    } catch (const pqxx::broken_connection& e) {
      return ConnectionLost(e);
    } catch (const pqxx::sql_error& e) {
      if (IsConnectionLoss(e.sqlstate()) || !conn_->is_open()) return ConnectionLost(e);
      return absl::UnavailableError(
          absl::StrCat("bookkeeping query failed: ", CleanMessage(e.what()), " (SQLSTATE ",
                       e.sqlstate(), ")"));
    } catch (const std::exception& e) {
      if (!conn_->is_open()) return ConnectionLost(e);
      return Unavailable(e);
    }
  }

  // Whether this very backend holds the run lock. Through a transaction
  // pooler (PgBouncer pool_mode=transaction) a transaction may land on a
  // backend that does not: the run must stop before any statement runs.
  // The part of a step's bookkeeping statement after its `book` CTE.
  std::string EventAndNotifySql() const {
    return absl::StrCat(
        ", ev AS (INSERT INTO ", names_.events,
        " (kind, version, name, run_id, actor, duration_ms) VALUES ($5, $1, $2, $3, $4, $6)"
        " RETURNING id) SELECT pg_notify($7, $8), (SELECT count(*) FROM book),"
        " (SELECT count(*) FROM ev)");
  }

  // The fence and the bookkeeping of every transactional up step, parsed
  // and planned once per run instead of once per migration. set_config(…,
  // true) is SET LOCAL.
  void PrepareStepStatements() {
    if (step_statements_prepared_) return;
    conn_->prepare(kStepFence,
                   absl::StrCat("SELECT set_config('lock_timeout', $1, true),"
                                " set_config('statement_timeout', $2, true), run_epoch, ",
                                LockHeldSql(), " FROM ", names_.meta));
    conn_->prepare(
        kStepBookUp,
        absl::StrCat("WITH book AS (INSERT INTO ", names_.migrations,
                     " (version, name, checksum, state, applied_at, duration_ms, applied_by,"
                     " statements_done, run_id) VALUES ($1, $2, $9, 'applied', now(), $6, $4,"
                     " $10, $3) ON CONFLICT (version) DO UPDATE SET name = $2, checksum = $9,"
                     " state = 'applied', applied_at = now(), duration_ms = $6,"
                     " applied_by = $4, statements_done = $10, run_id = $3 RETURNING 1)",
                     EventAndNotifySql()));
    step_statements_prepared_ = true;
  }

  static constexpr char kStepFence[] = "schemagate_step_fence";
  static constexpr char kStepBookUp[] = "schemagate_step_book_up";

  std::string LockHeldSql() const {
    const uint64_t key = static_cast<uint64_t>(lock_key_);
    return absl::StrCat(
        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND pid = pg_backend_pid() AND classid = ", key >> 32, "::oid AND objid = ",
        key & 0xFFFFFFFFu, "::oid AND objsubid = 1)");
  }

  absl::Status CheckFence(int64_t epoch, bool lock_held) {
    if (!lock_held) {
      return absl::AbortedError(
          "the run lock is not held by this database session: the connection goes through a "
          "transaction pooler (e.g. PgBouncer pool_mode=transaction) or the session was "
          "replaced; point --database-url at PostgreSQL directly (session locks need a "
          "dedicated session)");
    }
    if (epoch != epoch_) {
      return absl::AbortedError(absl::StrCat(
          "run epoch moved from ", epoch_, " to ", epoch,
          ": another coordinator took over the run (the lock was lost, e.g. on a failover)"));
    }
    return absl::OkStatus();
  }

  void InsertEvent(pqxx::transaction_base& tx, const EventRecord& event) {
    tx.exec_params(
        absl::StrCat("INSERT INTO ", names_.events,
                     " (kind, version, name, run_id, actor, duration_ms, sqlstate, message,"
                     " statement_index, line) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        event.kind, OptionalVersion(event.version), OptionalText(event.name),
        OptionalText(event.run_id), event.actor, OptionalMillis(event.duration),
        OptionalText(event.sqlstate), OptionalText(RedactSecrets(event.message)),
        event.statement_index == 0 ? std::nullopt : std::optional<int>(event.statement_index),
        event.line == 0 ? std::nullopt : std::optional<int>(event.line));
  }

  void Notify(pqxx::transaction_base& tx) {
    tx.exec_params("SELECT pg_notify($1, $2)", std::string(kEventsChannel), options_.schema);
  }

  void ResetTimeouts() {
    try {
      pqxx::nontransaction tx(*conn_);
      tx.exec("RESET lock_timeout; RESET statement_timeout");
    } catch (const std::exception&) {
    }
  }

  void FillFailure(const pqxx::sql_error& e, const std::vector<SqlStatement>& statements,
                   int current, const StepRecord& record, SqlFailure* failure) {
    failure->version = record.version;
    failure->name = record.name;
    failure->checksum = record.checksum;
    failure->sqlstate = e.sqlstate();
    failure->lock_timeout = failure->sqlstate == kLockNotAvailable;
    failure->message = CleanMessage(e.what());
    failure->statement_index = current >= 0 ? current + 1 : 0;
    failure->line = current >= 0 ? statements[current].line : 0;
    failure->at = absl::Now();
    failure->coordinator_id = options_.coordinator_id;
  }

  std::unique_ptr<pqxx::connection> conn_;
  const PgStoreOptions options_;
  const int64_t lock_key_;
  const Names names_;
  int64_t epoch_ = -1;
  bool lost_ = false;
  bool step_statements_prepared_ = false;
};

}  // namespace

int64_t DeriveLockKey(const std::string& database, const std::string& schema) {
  const std::string text = absl::StrCat("schemagate:", database, ":", schema);
  const Sha256Digest digest = Sha256(text);
  uint64_t key = 0;
  for (int i = 0; i < 8; ++i) key = (key << 8) | digest[i];
  return static_cast<int64_t>(key);
}

absl::StatusOr<int64_t> ParseLockKey(const std::string& text) {
  if (text.empty()) return absl::InvalidArgumentError("--lock-key is empty");
  int64_t key = 0;
  if (absl::SimpleAtoi(text, &key)) return key;
  return DeriveLockKey(text, "");
}

absl::Status CheckDirectSession(const std::string& conninfo) {
  try {
    std::unique_ptr<pqxx::connection> conn = Connect(conninfo, "schemagate-check");
    return RequireDirectSession(*conn);
  } catch (const std::exception& e) {
    return Unavailable(e);
  }
}

PgStore::PgStore(PgStoreOptions options) : options_(std::move(options)) {}
PgStore::~PgStore() = default;

absl::StatusOr<pqxx::connection*> PgStore::ReadConnection() {
  if (read_conn_ && read_conn_->is_open()) return read_conn_.get();
  read_conn_.reset();
  try {
    read_conn_ = Connect(options_.conninfo, "schemagate-read");
    if (!lock_key_) {
      ASSIGN_OR_RETURN(lock_key_, ComputeLockKey(*read_conn_, options_));
    }
  } catch (const std::exception& e) {
    read_conn_.reset();
    return Unavailable(e);
  }
  return read_conn_.get();
}

absl::StatusOr<DatabaseState> PgStore::ReadState() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(pqxx::connection * conn, ReadConnection());
  try {
    return ReadStateOn(*conn, options_.schema, *lock_key_);
  } catch (const std::exception& e) {
    if (!conn->is_open()) read_conn_.reset();
    return Unavailable(e);
  }
}

absl::Status PgStore::WithConnection(
    const std::function<absl::Status(pqxx::connection&)>& fn) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(pqxx::connection * conn, ReadConnection());
  try {
    return fn(*conn);
  } catch (const pqxx::sql_error& e) {
    // An SQL error on a connection that still works is a bug or a damaged
    // bookkeeping schema, not an unreachable database: say so (not "retry").
    const std::string sqlstate = e.sqlstate();
    const bool connection_trouble = !conn->is_open() || absl::StartsWith(sqlstate, "08") ||
                                    absl::StartsWith(sqlstate, "57P");
    if (!conn->is_open()) read_conn_.reset();
    if (connection_trouble) return Unavailable(e);
    return absl::InternalError(absl::StrCat("reading the bookkeeping failed [SQLSTATE ",
                                            sqlstate, "]: ", CleanMessage(e.what())));
  } catch (const std::exception& e) {
    if (!conn->is_open()) read_conn_.reset();
    return Unavailable(e);
  }
}

absl::StatusOr<std::vector<EventRecord>> PgStore::ReadHistory(int limit, int64_t version) {
  std::vector<EventRecord> events;
  RETURN_IF_ERROR(WithConnection([&](pqxx::connection& conn) {
    Names names(conn, options_.schema);
    pqxx::nontransaction tx(conn);
    if (tx.exec_params1("SELECT to_regclass($1)", names.events)[0].is_null()) {
      return absl::OkStatus();
    }
    events = EventsFromRows(tx.exec_params(
        absl::StrCat("SELECT ", kEventColumns, " FROM ", names.events,
                     " WHERE ($2::bigint = 0 OR version = $2::bigint) ORDER BY id DESC LIMIT $1"),
        limit, version));
    return absl::OkStatus();
  }));
  return events;
}

absl::StatusOr<std::optional<SchemaRecord>> PgStore::ReadSchemaRecord() {
  std::optional<SchemaRecord> record;
  RETURN_IF_ERROR(WithConnection([&](pqxx::connection& conn) {
    Names names(conn, options_.schema);
    pqxx::nontransaction tx(conn);
    if (tx.exec_params1("SELECT to_regclass($1)", names.schema_record)[0].is_null()) {
      return absl::OkStatus();
    }
    pqxx::result rows = tx.exec(absl::StrCat(
        "SELECT coalesce(fingerprint, ''), coalesce(description, ''), "
        "(extract(epoch FROM recorded_at) * 1000000)::bigint, coalesce(run_id, '') FROM ",
        names.schema_record));
    if (rows.empty()) return absl::OkStatus();
    record.emplace();
    record->fingerprint = rows[0][0].as<std::string>();
    record->description = rows[0][1].as<std::string>();
    record->recorded_at = FromMicros(rows[0][2]);
    record->run_id = rows[0][3].as<std::string>();
    return absl::OkStatus();
  }));
  return record;
}

absl::StatusOr<std::vector<EventRecord>> PgStore::ReadEventsAfter(int64_t after_id, int limit) {
  std::vector<EventRecord> events;
  RETURN_IF_ERROR(WithConnection([&](pqxx::connection& conn) {
    Names names(conn, options_.schema);
    pqxx::nontransaction tx(conn);
    if (tx.exec_params1("SELECT to_regclass($1)", names.events)[0].is_null()) {
      return absl::OkStatus();
    }
    events = EventsFromRows(tx.exec_params(
        absl::StrCat("SELECT ", kEventColumns, " FROM ", names.events,
                     " WHERE id > $1 ORDER BY id LIMIT $2"),
        after_id, limit));
    return absl::OkStatus();
  }));
  return events;
}

absl::StatusOr<std::vector<InstanceRecord>> PgStore::UpsertInstances(
    const std::vector<InstanceRecord>& instances, absl::Duration ttl) {
  std::vector<InstanceRecord> refused;
  if (instances.empty()) return refused;
  auto upsert = [&](pqxx::connection& conn, const Names& names) {
    refused.clear();
    pqxx::work tx(conn);
    const int64_t ttl_ms = absl::ToInt64Milliseconds(ttl);
    for (const InstanceRecord& i : instances) {
      // xmax = 0 tells an insert (or a revived expired lease) from an update.
      // The update's WHERE keeps a live lease of another agent process: no
      // row comes back and the instance is refused. Concurrent joins of one
      // id serialise on the row, so of two processes only one gets it.
      const pqxx::result row = tx.exec_params(
          absl::StrCat(
              "WITH old AS (SELECT lease_expires > now() AS live FROM ", names.instances,
              " WHERE instance_id = $1) INSERT INTO ", names.instances, " AS cur",
              " (instance_id, app, app_version, known_version, required_version,"
              " coordinator_id, attach_token, first_seen, last_seen, lease_expires)"
              " VALUES ($1, $2, $3, $4, $5, $6, $8, now(), now(),"
              " now() + $7 * interval '1 millisecond')"
              " ON CONFLICT (instance_id) DO UPDATE SET app = $2, app_version = $3,"
              " known_version = $4, required_version = $5, coordinator_id = $6,"
              " attach_token = $8,"
              " last_seen = now(), lease_expires = now() + $7 * interval '1 millisecond'"
              " WHERE cur.lease_expires <= now() OR $8 = '' OR cur.attach_token = ''"
              " OR cur.attach_token = $8"
              " RETURNING NOT coalesce((SELECT live FROM old), false)"),
          i.instance_id, i.app, i.app_version, i.known_version, i.required_version,
          i.coordinator_id, ttl_ms, i.attach_token);
      if (row.empty()) {
        refused.push_back(i);
        continue;
      }
      if (row[0][0].as<bool>()) {
        tx.exec_params(absl::StrCat("INSERT INTO ", names.events,
                                    " (kind, actor, message) VALUES ('instance_join', $1, $2)"),
                       options_.coordinator_id,
                       absl::StrCat(i.instance_id, " ", i.app, " ", i.app_version, " (K=",
                                    i.known_version, ", R=", i.required_version, ")"));
      }
    }
    tx.exec_params("SELECT pg_notify($1, $2)", std::string(kEventsChannel), options_.schema);
    tx.commit();
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(WithConnection([&](pqxx::connection& conn) {
    Names names(conn, options_.schema);
    try {
      return upsert(conn, names);
    } catch (const pqxx::undefined_column&) {
      // A layout before 4 that no run has upgraded yet.
      pqxx::work tx(conn);
      AddAttachTokenColumn(tx, names.instances);
      tx.commit();
    }
    return upsert(conn, names);
  }));
  return refused;
}

absl::Status PgStore::RefreshLeases(const std::vector<std::string>& ids, absl::Duration ttl) {
  return WithConnection([&](pqxx::connection& conn) {
    Names names(conn, options_.schema);
    pqxx::work tx(conn);
    const int64_t ttl_ms = absl::ToInt64Milliseconds(ttl);
    for (const std::string& id : ids) {
      tx.exec_params(absl::StrCat("UPDATE ", names.instances,
                                  " SET last_seen = now(),"
                                  " lease_expires = now() + $2 * interval '1 millisecond'"
                                  " WHERE instance_id = $1"),
                     id, ttl_ms);
    }
    // Rows of instances long gone are history, not fleet.
    tx.exec(absl::StrCat("DELETE FROM ", names.instances,
                         " WHERE lease_expires < now() - interval '1 day'"));
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status PgStore::RemoveInstances(const std::vector<std::string>& ids,
                                      const std::string& actor) {
  if (ids.empty()) return absl::OkStatus();
  return WithConnection([&](pqxx::connection& conn) {
    Names names(conn, options_.schema);
    pqxx::work tx(conn);
    for (const std::string& id : ids) {
      pqxx::result gone = tx.exec_params(
          // The row stays (lapsed) for an hour: the breaking gate's grace
          // period counts from the last old instance seen.
          absl::StrCat("UPDATE ", names.instances,
                       " SET lease_expires = now() WHERE instance_id = $1"
                       " AND lease_expires > now() RETURNING app, app_version"),
          id);
      if (gone.empty()) continue;
      tx.exec_params(absl::StrCat("INSERT INTO ", names.events,
                                  " (kind, actor, message) VALUES ('instance_leave', $1, $2)"),
                     actor,
                     absl::StrCat(id, " ", gone[0][0].as<std::string>(), " ",
                                  gone[0][1].as<std::string>(), " exited"));
    }
    tx.exec_params("SELECT pg_notify($1, $2)", std::string(kEventsChannel), options_.schema);
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::unique_ptr<RunSession>> PgStore::BeginRun(const LockWaitOptions& options) {
  std::unique_ptr<pqxx::connection> conn;
  int64_t key = 0;
  try {
    conn = Connect(options_.conninfo, "schemagate-run");
    if (absl::Status direct = RequireDirectSession(*conn); !direct.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("refusing to run: ", direct.message()));
    }
    ASSIGN_OR_RETURN(key, ComputeLockKey(*conn, options_));
  } catch (const std::exception& e) {
    return Unavailable(e);
  }
  const absl::Time start = absl::Now();
  absl::Duration backoff = absl::Milliseconds(20);
  absl::Time next_report = start + absl::Seconds(1);
  std::mt19937_64 rng(std::random_device{}());
  while (true) {
    try {
      pqxx::nontransaction tx(*conn);
      if (tx.exec_params1("SELECT pg_try_advisory_lock($1)", key)[0].as<bool>()) {
        return std::unique_ptr<RunSession>(
            std::make_unique<PgRunSession>(std::move(conn), options_, key));
      }
    } catch (const std::exception& e) {
      return Unavailable(e);
    }
    if (options.cancelled != nullptr && options.cancelled->load()) {
      return absl::CancelledError("stopped while waiting for the run lock");
    }
    const absl::Time now = absl::Now();
    if (now - start >= options.max_wait) {
      return absl::DeadlineExceededError(absl::StrCat(
          "another run held the lock for ", absl::FormatDuration(now - start),
          "; try again later (schemagatectl status shows the running coordinator)"));
    }
    if (options.on_wait && now >= next_report) {
      options.on_wait(now - start);
      next_report = now + absl::Seconds(5);
    }
    // Full jitter on an exponential backoff, capped at 500 ms.
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    absl::SleepFor(backoff * jitter(rng));
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
}

class PgListener::Receiver : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& conn) : pqxx::notification_receiver(conn, kEventsChannel) {}
  void operator()(const std::string&, int) override { ++count; }
  int count = 0;
};

PgListener::PgListener(std::string conninfo) : conninfo_(std::move(conninfo)) {}

PgListener::~PgListener() {
  receiver_.reset();
  conn_.reset();
}

absl::Status PgListener::Connect() {
  receiver_.reset();
  conn_.reset();
  try {
    conn_ = schemagate::Connect(conninfo_, "schemagate-listen");
    receiver_ = std::make_unique<Receiver>(*conn_);
    // Make sure the LISTEN is in place before the caller reads the state.
    pqxx::nontransaction tx(*conn_);
    tx.exec("SELECT 1");
  } catch (const std::exception& e) {
    receiver_.reset();
    conn_.reset();
    return Unavailable(e);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> PgListener::Wait(absl::Duration timeout) {
  if (!conn_) return absl::UnavailableError("not connected");
  try {
    receiver_->count = 0;
    const int64_t micros = absl::ToInt64Microseconds(timeout);
    conn_->await_notification(micros / 1000000, micros % 1000000);
    conn_->get_notifs();
    if (!conn_->is_open()) throw pqxx::broken_connection("connection closed");
    return receiver_->count;
  } catch (const std::exception& e) {
    receiver_.reset();
    conn_.reset();
    return Unavailable(e);
  }
}

}  // namespace schemagate
