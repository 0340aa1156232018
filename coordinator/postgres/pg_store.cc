#include "coordinator/postgres/pg_store.h"

#include <pqxx/pqxx>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/base/sha256.h"
#include "coordinator/base/status_macros.h"
#include "coordinator/postgres/pg_run_session.h"
#include "coordinator/postgres/pg_support.h"

namespace schemagate {

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
  // Errors as every read reports them: an SQL error on a working connection
  // is not an unreachable database.
  absl::StatusOr<DatabaseState> state;
  RETURN_IF_ERROR(WithConnection([&](pqxx::connection& conn) {
    state = ReadStateOn(conn, options_.schema, *lock_key_);
    return absl::OkStatus();
  }));
  return state;
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

template <typename... Params>
absl::StatusOr<std::vector<EventRecord>> PgStore::SelectEvents(absl::string_view where,
                                                               const Params&... params) {
  std::vector<EventRecord> events;
  RETURN_IF_ERROR(WithConnection([&](pqxx::connection& conn) {
    Names names(conn, options_.schema);
    pqxx::nontransaction tx(conn);
    if (!TableExists(tx, names.events)) return absl::OkStatus();
    events = EventsFromRows(tx.exec_params(
        absl::StrCat("SELECT ", kEventColumns, " FROM ", names.events, " ", where), params...));
    return absl::OkStatus();
  }));
  return events;
}

absl::StatusOr<std::vector<EventRecord>> PgStore::ReadHistory(int limit, int64_t version) {
  return SelectEvents("WHERE ($2::bigint = 0 OR version = $2::bigint) ORDER BY id DESC LIMIT $1",
                      limit, version);
}

absl::StatusOr<std::optional<SchemaRecord>> PgStore::ReadSchemaRecord() {
  std::optional<SchemaRecord> record;
  RETURN_IF_ERROR(WithConnection([&](pqxx::connection& conn) {
    Names names(conn, options_.schema);
    pqxx::nontransaction tx(conn);
    if (!TableExists(tx, names.schema_record)) return absl::OkStatus();
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
  return SelectEvents("WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit);
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
  RETURN_IF_ERROR(WaitForRunLock(options, RealClock::Get(), [&]() -> absl::StatusOr<bool> {
    try {
      pqxx::nontransaction tx(*conn);
      return tx.exec_params1("SELECT pg_try_advisory_lock($1)", key)[0].as<bool>();
    } catch (const std::exception& e) {
      return Unavailable(e);
    }
  }));
  return MakePgRunSession(std::move(conn), options_, key);
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
