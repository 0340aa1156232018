// What the PostgreSQL store's pieces (pg_store.cc, pg_run_session.cc) share:
// connections, the bookkeeping names, the layout version, reading the state
// and the history, and how libpqxx errors become statuses. Internal to
// coordinator/postgres/.
#ifndef SCHEMAGATE_COORDINATOR_POSTGRES_PG_SUPPORT_H_
#define SCHEMAGATE_COORDINATOR_POSTGRES_PG_SUPPORT_H_

#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "coordinator/engine/store.h"
#include "coordinator/postgres/pg_store.h"

namespace schemagate {

// SQLSTATE lock_not_available: lock_timeout tripped.
inline constexpr char kLockNotAvailable[] = "55P03";

// Bookkeeping layout version, stored in meta.meta_version.
// 2: meta.hold_above (rollback holds).
// 3: table schema_record (the schema recorded after each run).
// 4: instances.attach_token (one instance id per agent process).
// 5: events.checksum (the up file a failure event is about).
// 6: table repeatables (the text of each repeatable migration last applied).
inline constexpr int kMetaVersion = 6;

// Layout 4's column of `instances`; idempotent. Also run by UpsertInstances
// on a layout made by an older coordinator when no run has upgraded it yet
// (a constant default: no table rewrite).
// Adds `column` to `table` (quoted) unless it has it, without the ACCESS
// EXCLUSIVE lock ALTER TABLE takes when it is already there.
void AddColumnIfMissing(pqxx::transaction_base& tx, const std::string& table,
                        const std::string& column, const std::string& definition);
void AddAttachTokenColumn(pqxx::transaction_base& tx, const std::string& instances);

// libpq's message for a server error, without "ERROR:  " and the
// LINE/caret context (kept in the event as the statement index instead).
// Whether the table `quoted_name` (schema-qualified, quoted) exists.
bool TableExists(pqxx::transaction_base& tx, const std::string& quoted_name);

std::string CleanMessage(const char* what);

// SQLSTATE class 08 (connection exception) and 57P0x (operator
// intervention: shutdown) mean the connection is gone.
bool IsConnectionLoss(const std::string& sqlstate);

absl::Status ConnectionLost(const std::exception& e);

absl::Status Unavailable(const std::exception& e);

std::string Interval(absl::Duration d);

absl::Time FromMicros(const pqxx::field& f);

std::unique_ptr<pqxx::connection> Connect(const std::string& conninfo,
                                          const char* application_name);

// Names of the bookkeeping objects, quoted once.
struct Names {
  explicit Names(pqxx::connection& conn, const std::string& schema)
      : schema(conn.quote_name(schema)),
        meta(schema_dot(conn, schema, "meta")),
        migrations(schema_dot(conn, schema, "migrations")),
        events(schema_dot(conn, schema, "events")),
        instances(schema_dot(conn, schema, "instances")),
        schema_record(schema_dot(conn, schema, "schema_record")),
        repeatables(schema_dot(conn, schema, "repeatables")) {}
  static std::string schema_dot(pqxx::connection& conn, const std::string& schema,
                                const char* table) {
    return absl::StrCat(conn.quote_name(schema), ".", conn.quote_name(table));
  }
  std::string schema, meta, migrations, events, instances, schema_record, repeatables;
};

// Creates or upgrades the bookkeeping schema in `tx` (idempotent).
void CreateBookkeeping(pqxx::transaction_base& tx, const Names& names);

// The run lock is a session lock, so the run connection must be a session
// of its own. PgBouncer (in any pool mode) answers the client's startup
// itself and sends a cancel key of its own making, so the backend pid libpq
// reports (PQbackendPID, from that key) is not the pid of the server session
// that runs the queries. On a direct connection, or through a proxy that only
// forwards bytes, the two are always the same. This needs no query that
// could fail on PostgreSQL (`SHOW pool_mode` is an error there) and no luck
// with which pooled backend serves a transaction (comparing pg_backend_pid()
// across transactions passes whenever the pool hands back the same one).
absl::Status RequireDirectSession(pqxx::connection& conn);

absl::StatusOr<int64_t> ComputeLockKey(pqxx::connection& conn, const PgStoreOptions& options);

// Reads the whole state in one repeatable-read snapshot.
DatabaseState ReadStateOn(pqxx::connection& conn, const std::string& schema, int64_t lock_key);

inline constexpr char kEventColumns[] =
    "id, (extract(epoch FROM at) * 1000000)::bigint, kind, version, name, run_id, actor, "
    "duration_ms, sqlstate, message, statement_index, line";

// The history rows of a SELECT of kEventColumns, in their order.
std::vector<EventRecord> EventsFromRows(const pqxx::result& rows);

std::optional<int64_t> OptionalVersion(int64_t v);

std::optional<std::string> OptionalText(const std::string& s);

std::optional<int64_t> OptionalMillis(const std::optional<absl::Duration>& d);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_POSTGRES_PG_SUPPORT_H_
